/*
 * Fixture for stoke-unwind's tests on real CFI.
 *
 * At two points of interest (the bottom of a 100-deep recursion, and inside a
 * qsort comparator called by libc) it captures its own registers and dumps,
 * into the folder given as argv[1]:
 *   TAG.stack: 8 registers (rip rsp rbp rbx r12 r13 r14 r15, little-endian
 *              u64) then the stack bytes from rsp to the end of [stack];
 *   TAG.maps:  a copy of /proc/self/maps.
 * The test then unwinds the copy offline and checks the frames it finds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_regs[8];
static const char *g_dir;
static volatile int g_sink;
static int g_compares;

/* rip, rsp and the callee-saved registers, all read at the same instruction. */
#define CAPTURE_REGS()                                                        \
    __asm__ volatile("lea 0(%%rip), %%rax\n\t"                               \
                     "mov %%rax, 0(%0)\n\t"                                   \
                     "mov %%rsp, 8(%0)\n\t"                                   \
                     "mov %%rbp, 16(%0)\n\t"                                  \
                     "mov %%rbx, 24(%0)\n\t"                                  \
                     "mov %%r12, 32(%0)\n\t"                                  \
                     "mov %%r13, 40(%0)\n\t"                                  \
                     "mov %%r14, 48(%0)\n\t"                                  \
                     "mov %%r15, 56(%0)\n\t"                                  \
                     :                                                        \
                     : "r"(g_regs)                                            \
                     : "rax", "memory")

/* Runs below the captured rsp, so the copied frames are not disturbed. */
static __attribute__((noinline)) void dump_state(const char *tag) {
    char path[4096];
    char line[4096];
    unsigned long stack_end = 0;

    snprintf(path, sizeof path, "%s/%s.maps", g_dir, tag);
    FILE *maps = fopen("/proc/self/maps", "r");
    FILE *maps_out = fopen(path, "w");
    if (!maps || !maps_out) {
        perror("maps");
        exit(2);
    }
    while (fgets(line, sizeof line, maps)) {
        fputs(line, maps_out);
        if (strstr(line, "[stack]")) {
            unsigned long start;
            sscanf(line, "%lx-%lx", &start, &stack_end);
        }
    }
    fclose(maps);
    fclose(maps_out);

    snprintf(path, sizeof path, "%s/%s.stack", g_dir, tag);
    FILE *out = fopen(path, "w");
    if (!out || stack_end == 0) {
        perror("stack");
        exit(2);
    }
    uint64_t sp = g_regs[1];
    fwrite(g_regs, sizeof g_regs[0], 8, out);
    fwrite((const void *)(uintptr_t)sp, 1, stack_end - sp, out);
    fclose(out);
}

__attribute__((noinline, noclone)) int recurse(int depth) {
    volatile char pad[24];
    pad[depth % 24] = (char)depth;
    if (depth == 0) {
        CAPTURE_REGS();
        dump_state("recursion");
        return pad[0];
    }
    int r = recurse(depth - 1);
    g_sink = r; /* keeps the call out of tail position */
    return r + pad[depth % 24];
}

static int compare_ints(const void *a, const void *b) {
    int x = *(const int *)a;
    int y = *(const int *)b;
    if (++g_compares == 10) {
        CAPTURE_REGS();
        dump_state("qsort");
    }
    return (x > y) - (x < y);
}

__attribute__((noinline, noclone)) void sort_numbers(int n) {
    int values[64];
    for (int i = 0; i < n && i < 64; i++)
        values[i] = (i * 7919) % 101;
    qsort(values, n, sizeof values[0], compare_ints);
    g_sink = values[0];
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUT_DIR [DEPTH]\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    int depth = argc > 2 ? atoi(argv[2]) : 100;
    g_sink = recurse(depth);
    sort_numbers(64);
    return 0;
}
