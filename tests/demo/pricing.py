"""pricing: owns table prices.  Every 5th price lookup checks the order
history first (a call back into orders: the cycle orders -> inventory ->
pricing -> orders)."""
import itertools
import threading

from common import DB, call, serve

db = DB()
counter = itertools.count(1)
lock = threading.Lock()


def price(p):
    sku = p.get("sku", "sku-1")
    with lock:
        n = next(counter)
    cents = db.one("SELECT cents FROM prices WHERE sku = %s", (sku,))
    if cents is None:
        raise ValueError("unknown sku " + sku)
    discount = 0
    if n % 5 == 0:
        if call("orders", "/history", sku=sku)["orders"] > 10:
            discount = cents // 10
    return {"sku": sku, "cents": cents - discount}


serve("pricing", {"/price": price})
