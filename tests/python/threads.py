# Two threads running Python functions until killed; prints "ready PID"
# once both run.
import os
import sys
import threading


def spin(n):
    s = 0
    for i in range(n):
        s += i
    return s


def alpha():
    while True:
        spin(5000)


def beta():
    while True:
        spin(5000)


for target in (alpha, beta):
    threading.Thread(target=target, daemon=True).start()
print("ready %d" % os.getpid())
sys.stdout.flush()
threading.Event().wait()
