"""billing: owns table payments, reads orders' table orders directly, and
connects to PostgreSQL over the Unix socket.  Charging asks orders for the
order's status (billing -> orders, while orders -> billing: a cycle)."""
from common import DB, call, serve

db = DB(unix_socket=True)


def charge(p):
    oid = int(p["order"])
    cents = db.one("SELECT cents FROM orders WHERE id = %s", (oid,))
    if cents is None:
        raise ValueError("no order %d" % oid)
    st = call("orders", "/status", id=oid)["status"]
    pid = db.one("INSERT INTO payments (order_id, cents) VALUES (%s, %s) RETURNING id", (oid, cents))
    return {"payment": pid, "order_status": st}


def balance(p):
    return {"cents": db.one("SELECT coalesce(sum(cents), 0) FROM payments")}


serve("billing", {"/charge": charge, "/balance": balance})
