/* Fixture for stoke-symbolize: two static functions that a stripped build
 * names nowhere (no .symtab, not exported), so only .eh_frame bounds them. */
#include <stdio.h>
#include <stdlib.h>

static __attribute__((noinline)) unsigned long churn(unsigned long n)
{
    unsigned long h = 0x9e3779b97f4a7c15ul;
    for (unsigned long i = 0; i < n; i++) {
        h ^= h << 13;
        h ^= h >> 7;
        h += i * 3;
    }
    return h;
}

static __attribute__((noinline)) unsigned long fold(unsigned long x)
{
    unsigned long s = 0;
    while (x) {
        s += x & 0xff;
        x >>= 3;
    }
    return s * 31;
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    printf("%lu\n", fold(churn(n)) + fold(n));
    return 0;
}
