"""gateway: the edge.  /checkout starts the synchronous chain through orders;
/browse fans out to pricing, inventory, orders and billing."""
import random

from common import call, serve


def checkout(p):
    return call("orders", "/order", sku=p.get("sku", "sku-1"), qty=p.get("qty", 1))


def browse(p):
    sku = p.get("sku", "sku-1")
    return {
        "price": call("pricing", "/price", sku=sku)["cents"],
        "stock": call("inventory", "/stock", sku=sku)["qty"],
        "popular": call("orders", "/history", sku=sku)["orders"],
        "revenue": call("billing", "/balance")["cents"] if random.random() < 0.5 else None,
    }


serve("gateway", {"/checkout": checkout, "/browse": browse})
