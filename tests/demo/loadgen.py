"""loadgen: drives the gateway with THREADS workers (checkouts and browses)
until SIGTERM; keeps a count in STATS_FILE and prints totals at exit."""
import os
import random
import signal
import sys
import threading
import time

from common import call

THREADS = int(os.environ.get("LOADGEN_THREADS", "3"))
PAUSE = float(os.environ.get("LOADGEN_PAUSE", "0.02"))
STATS = os.environ.get("STATS_FILE")
ok = errors = 0
lock = threading.Lock()
stop = threading.Event()


def worker():
    global ok, errors
    while not stop.is_set():
        sku = "sku-%d" % random.randint(1, 5)
        try:
            if random.random() < 0.6:
                call("gateway", "/checkout", sku=sku, qty=random.randint(1, 3))
            else:
                call("gateway", "/browse", sku=sku)
            with lock:
                ok += 1
        except Exception as e:
            with lock:
                errors += 1
                if errors <= 5:
                    sys.stderr.write("loadgen: %s\n" % e)
        stop.wait(PAUSE)


signal.signal(signal.SIGTERM, lambda *a: stop.set())
threads = [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]
for t in threads:
    t.start()
while not stop.is_set():
    stop.wait(0.25)
    if STATS:
        with open(STATS + ".tmp", "w") as f:
            f.write("%d %d\n" % (ok, errors))
        os.replace(STATS + ".tmp", STATS)
for t in threads:
    t.join(12)
print("loadgen: %d requests, %d errors" % (ok, errors))
