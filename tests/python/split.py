# A known split between two Python functions, measured by the script itself:
# hot() gets about 75 % of the CPU time and cold() 25 %. hot -> middle -> leaf;
# cold -> run_sort -> sorted (C) -> keyf -> leaf. Prints the measured split
# ("split hot=SECONDS cold=SECONDS") at the end.
import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.5


def leaf(n):
    s = 0
    for i in range(n):
        s += i
    return s


def keyf(x):
    return leaf(600)


def run_sort():
    return sorted(range(8), key=keyf)


def middle():
    return leaf(3000)


def hot():
    middle()


def cold():
    run_sort()


def outer():
    spent = {"hot": 0.0, "cold": 0.0}
    started = time.thread_time()
    while time.thread_time() - started < SECONDS:
        for name, fn, share in (("hot", hot, 0.03), ("cold", cold, 0.01)):
            t0 = time.thread_time()
            while time.thread_time() - t0 < share:
                for _ in range(4):
                    fn()
            spent[name] += time.thread_time() - t0
    print("split hot=%.4f cold=%.4f" % (spent["hot"], spent["cold"]))


outer()
