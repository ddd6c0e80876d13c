"""orders: owns table orders, and also writes inventory's table stock.
An order reserves stock (-> inventory -> pricing) and is charged by billing,
which calls back for the order's status (the cycle orders <-> billing)."""
from common import DB, call, serve

db = DB()


def order(p):
    sku, qty = p.get("sku", "sku-1"), int(p.get("qty", 1))
    res = call("inventory", "/reserve", sku=sku, qty=qty)
    oid = db.one("INSERT INTO orders (sku, qty, cents, status) VALUES (%s, %s, %s, 'new') RETURNING id",
                 (sku, qty, res["cents"]))
    db.query("UPDATE stock SET reserved = reserved + %s WHERE sku = %s", (qty, sku))
    bill = call("billing", "/charge", order=oid)
    db.query("UPDATE orders SET status = 'paid' WHERE id = %s", (oid,))
    return {"order": oid, "cents": res["cents"], "payment": bill["payment"]}


def status(p):
    return {"status": db.one("SELECT status FROM orders WHERE id = %s", (int(p["id"]),))}


def history(p):
    return {"orders": db.one("SELECT count(*) FROM orders WHERE sku = %s", (p.get("sku", "sku-1"),))}


serve("orders", {"/order": order, "/status": status, "/history": history})
