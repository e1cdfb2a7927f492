/* Fixture for stoke-symbolize: an always-inlined function inside a
 * noinline one, a static (local) function and an exported one. */
#include <stdio.h>
#include <stdlib.h>

#ifdef OTHER
/* Another build of the same program, for stale debug file tests. */
volatile int other_build = 1;
#endif

static inline __attribute__((always_inline)) unsigned long mix(unsigned long x)
{
    unsigned long h = x * 0x9e3779b97f4a7c15ul;
    for (int i = 0; i < 5; i++) {
        h ^= h << 13; /* MIX_BODY */
        h ^= h >> 7;  /* MIX_BODY */
        h ^= h << 17; /* MIX_BODY */
    }
    return h;
}

__attribute__((noinline)) unsigned long hash_loop(unsigned long n)
{
    unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++)
        acc += mix(i) >> (i & 7); /* CALL_SITE */
    return acc;
}

__attribute__((noinline)) static unsigned long local_helper(unsigned long x)
{
    volatile unsigned long y = x;
    return y * 3 + 1;
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    printf("%lu\n", hash_loop(n) + local_helper(n));
    return 0;
}
