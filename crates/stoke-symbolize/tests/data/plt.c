/* Calls into libc through the PLT, for the symbolizer's PLT tests: several
 * functions called directly, and one (puts) whose address is also taken,
 * which the linker may route through .plt.got. Built, never run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int (*volatile taken)(const char *) = puts;

int main(int argc, char **argv) {
    size_t n = strlen(argv[0]);
    char *volatile copy = malloc(n + 1);
    memcpy(copy, argv[0], n + 1);
    printf("%s %zu %d\n", copy, n, argc);
    free(copy);
    taken("taken");
    puts("direct");
    return 0;
}
