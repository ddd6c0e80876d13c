"""inventory: nominally owns table stock (but orders writes it too: a shared
table).  Reserving stock asks pricing for the current price (hop 3 of the
gateway -> orders -> inventory -> pricing chain)."""
from common import DB, call, serve

db = DB()


def reserve(p):
    sku, qty = p.get("sku", "sku-1"), int(p.get("qty", 1))
    quote = call("pricing", "/price", sku=sku)
    left = db.one("UPDATE stock SET qty = qty - %s WHERE sku = %s AND qty >= %s RETURNING qty",
                  (qty, sku, qty))
    if left is None:  # restock and try again
        db.query("UPDATE stock SET qty = qty + 1000 WHERE sku = %s", (sku,))
        left = db.one("UPDATE stock SET qty = qty - %s WHERE sku = %s RETURNING qty", (qty, sku))
    return {"sku": sku, "left": left, "cents": quote["cents"] * qty}


def level(p):
    sku = p.get("sku", "sku-1")
    return {"sku": sku, "qty": db.one("SELECT qty FROM stock WHERE sku = %s", (sku,))}


serve("inventory", {"/reserve": reserve, "/stock": level})
