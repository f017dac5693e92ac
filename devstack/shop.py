"""A realistic generated shop in the SOURCE database: customers, products, orders, payments.

Everything is deterministic from a seed and the calendar days generated, so two runs of the demo
hold the same data for the same days. The shop "advances time" one day at a time
(:meth:`Shop.generate_day`): new customers sign up, some change their e-mail or country, prices
change, orders are placed and move through ``placed -> paid -> shipped -> delivered`` (or
``cancelled`` / ``returned``), each payment is recorded when an order is paid.

Late rows: a few events near the end of a day (orders synced late from a point-of-sale, status
updates from a slow warehouse system) are committed with the NEXT day's batch while keeping their
real (older) ``updated_at``. An incremental extract that runs right after its interval misses them;
the extract's ``lag`` (its window starts ``lag`` before the interval) picks them up on the next run,
and the dbt staging model keeps the latest row per key.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

UTC = timezone.utc
STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
OPEN_STATUSES = ("placed", "paid", "shipped", "delivered")
PAYMENT_METHODS = ("card", "paypal", "bank_transfer", "voucher")
TABLES = ("customers", "products", "orders", "payments")
# Events in the last LATE_WINDOW of a day may be committed with the next day's batch (a point-of-sale
# that syncs late, a slow warehouse system): an extract whose lag covers LATE_WINDOW still gets them.
LATE_WINDOW = timedelta(minutes=10)
LATE_FRACTION = 0.3
RETURN_WINDOW = timedelta(days=8)

SCHEMA_SQL = """
create table if not exists customers (
  id bigint primary key,
  name text not null,
  email text,
  country text,
  created_at timestamptz not null,
  updated_at timestamptz not null
);
create table if not exists products (
  id bigint primary key,
  name text not null,
  category text not null,
  price numeric(10,2) not null,
  updated_at timestamptz not null
);
create table if not exists orders (
  id bigint primary key,
  customer_id bigint not null,
  status text not null check (status in ('placed','paid','shipped','delivered','cancelled','returned')),
  amount numeric(12,2) not null,
  created_at timestamptz not null,
  updated_at timestamptz not null,
  note text
);
create table if not exists payments (
  id bigint primary key,
  order_id bigint not null,
  amount numeric(12,2) not null,
  method text not null check (method in ('card','paypal','bank_transfer','voucher')),
  paid_at timestamptz not null,
  updated_at timestamptz not null
);
create index if not exists customers_updated_at on customers (updated_at);
create index if not exists products_updated_at on products (updated_at);
create index if not exists orders_updated_at on orders (updated_at);
create index if not exists payments_updated_at on payments (updated_at);
"""

FIRST_NAMES = (
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
    "Radia", "Tim", "Hedy", "John", "Sophie", "Anita", "Guido", "Katherine", "Donald", "Shafi",
    "Zoë", "Björn", "Ngozi", "Mateo", "Aiko", "Chen", "Priya", "Olúwaseun", "Søren", "Inès",
)
LAST_NAMES = (
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen",
    "Dijkstra", "Perlman", "Berners-Lee", "Lamarr", "McCarthy", "Wilson", "Borg", "van Rossum",
    "Johnson", "Knuth", "Goldwasser", "O'Brien", "Müller", "Okafor", "García", "Tanaka", "Wang",
)
COUNTRIES = (("DE", 30), ("FR", 15), ("NL", 10), ("GB", 12), ("US", 18), ("ES", 6), ("PL", 5), ("JP", 4))
CATEGORIES = {
    "books": ("Data Pipelines Pocket Reference", "Designing Data-Intensive Applications", "SQL Antipatterns",
              "The Art of PostgreSQL", "Fundamentals of Data Engineering"),
    "coffee": ("Espresso beans 1kg", "Filter roast 500g", "Decaf 250g", "Cold brew kit"),
    "hardware": ("Mechanical keyboard", "USB-C dock", "27\" monitor", "Noise-cancelling headset"),
    "stickers": ("Elephant sticker", "Airflow pinwheel sticker", "dbt sticker pack"),
    "apparel": ("Hoodie", "T-shirt", "Socks (3 pairs)", "Cap"),
}
PRICE_RANGES = {"books": (25, 60), "coffee": (8, 45), "hardware": (40, 450), "stickers": (2, 9),
                "apparel": (12, 70)}
# Order notes exercise the data path: tabs, newlines, backslashes, unicode, empty string vs NULL.
NOTES = (
    "please ring twice", "gift wrap, no invoice in the parcel", "leave at the back door",
    "Bitte klingeln — 2. OG links", "配達は午前中にお願いします", "tab\tseparated\tnote",
    "line one\nline two", "path C:\\temp\\invoice.pdf", "", "café au lait ☕", "call +49 30 1234567",
)


@dataclass
class DayStats:
    """What one day's batch committed."""

    day: date
    new_customers: int = 0
    updated_customers: int = 0
    updated_products: int = 0
    new_orders: int = 0
    status_changes: int = 0
    payments: int = 0
    late_committed: int = 0  # rows committed in this batch whose updated_at lies in an earlier day
    late_deferred: int = 0  # events of this day held back for the next batch

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in self.__dict__.items()}


@dataclass
class _Order:
    id: int | None
    customer_id: int
    status: str
    amount: Decimal
    created_at: datetime
    updated_at: datetime
    note: str | None
    changed: bool = False


@dataclass
class Shop:
    """The shop in database ``dsn`` (a libpq connection string), generated from ``seed``."""

    dsn: str
    seed: int = 42
    orders_per_day: int = 1500
    initial_customers: int = 2000
    _pending_orders: list[_Order] = field(default_factory=list, repr=False)

    # -- set-up ----------------------------------------------------------------------------------
    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=False)

    def create_schema(self) -> None:
        """Create the four tables (and their ``updated_at`` indexes) when missing."""
        with self.connect() as conn:
            conn.execute(SCHEMA_SQL)

    def seed_catalog(self, first_day: date) -> None:
        """Products and the existing customer base, all dated before ``first_day``."""
        rng = self._rng("catalog")
        origin = _midnight(first_day) - timedelta(days=365)
        products = []
        pid = 0
        for category, names in CATEGORIES.items():
            low, high = PRICE_RANGES[category]
            for name in names:
                for edition in ("", " (gift edition)", " (refurbished)"):
                    pid += 1
                    price = Decimal(rng.randrange(low * 100, high * 100)) / 100
                    products.append((pid, name + edition, category, price,
                                     origin + timedelta(seconds=rng.randrange(300 * 86400))))
        customers = []
        for cid in range(1, self.initial_customers + 1):
            created = origin + timedelta(seconds=rng.randrange(364 * 86400))
            customers.append((cid, *self._person(rng, cid), created, created))
        with self.connect() as conn:
            _copy(conn, "products", ("id", "name", "category", "price", "updated_at"), products)
            _copy(conn, "customers", ("id", "name", "email", "country", "created_at", "updated_at"), customers)

    def build(self, days: Sequence[date], until: datetime | None = None) -> list[DayStats]:
        """Fresh shop: schema, catalog, then each day in order (the last one up to ``until``)."""
        self.create_schema()
        self.seed_catalog(days[0])
        return [self.generate_day(d, until=until if i == len(days) - 1 else None) for i, d in enumerate(days)]

    # -- one day ---------------------------------------------------------------------------------
    def generate_day(self, day: date, until: datetime | None = None) -> DayStats:
        """Commit ``day``'s activity (up to ``until`` when given) in one transaction.

        Also commits the late rows held back from the previous day, with their original timestamps.
        """
        stats = DayStats(day)
        start = _midnight(day)
        end = min(start + timedelta(days=1), until) if until else start + timedelta(days=1)
        rng = self._rng(f"day:{day.isoformat()}")
        with self.connect() as conn:
            max_customer = _scalar(conn, "select coalesce(max(id), 0) from customers")
            next_order = _scalar(conn, "select coalesce(max(id), 0) from orders") + 1
            next_payment = _scalar(conn, "select coalesce(max(id), 0) from payments") + 1
            fraction = (end - start) / timedelta(days=1)

            # Customers: sign-ups and profile changes.
            new_customers = []
            for i in range(int(rng.randint(25, 45) * fraction)):
                cid = max_customer + i + 1
                at = start + _seconds(rng, end - start)
                new_customers.append((cid, *self._person(rng, cid), at, at))
            _copy(conn, "customers", ("id", "name", "email", "country", "created_at", "updated_at"),
                  new_customers)
            stats.new_customers = len(new_customers)
            changed = sorted(rng.sample(range(1, max_customer + 1), k=int(max_customer * 0.01 * fraction)))
            rows = []
            for cid in changed:
                at = start + _seconds(rng, end - start)
                if rng.random() < 0.6:
                    rows.append((cid, None, f"customer{cid}.{rng.randrange(100)}@example.org", None, at))
                else:
                    rows.append((cid, None, None, _weighted(rng, COUNTRIES), at))
            self._update(conn, "customers", rows, ("id", "name", "email", "country", "updated_at"))
            stats.updated_customers = len(rows)

            # Prices move.
            product_ids = [r[0] for r in conn.execute("select id from products order by id").fetchall()]
            rows = []
            for pid in sorted(rng.sample(product_ids, k=max(1, int(len(product_ids) * 0.05 * fraction)))):
                factor = Decimal(rng.choice((90, 95, 105, 110, 120))) / 100
                rows.append((pid, factor, start + _seconds(rng, end - start)))
            if rows:
                _copy_temp(conn, "price_changes", ("id bigint", "factor numeric", "at timestamptz"), rows)
                conn.execute("update products p set price = round(p.price * c.factor, 2), updated_at = c.at "
                             "from price_changes c where p.id = c.id")
            stats.updated_products = len(rows)

            # New orders (a busier evening), minus the late ones, plus yesterday's late ones.
            placed = []
            for _ in range(int(self.orders_per_day * fraction * rng.uniform(0.85, 1.15))):
                at = start + timedelta(seconds=int(_diurnal(rng) * 86400))
                if at >= end:
                    continue
                amount = Decimal(rng.randrange(500, 40000)) / 100
                note = rng.choice(NOTES) if rng.random() < 0.3 else None
                placed.append(_Order(None, rng.randint(1, max_customer), "placed", amount, at, at, note))
            placed.sort(key=lambda o: o.created_at)
            held = [o for o in placed if self._is_late("order", o.created_at, o.customer_id, end)]
            stats.late_deferred += len(held)
            batch_new = self._pending_orders + [o for o in placed if o not in held]
            stats.late_committed += len(self._pending_orders)
            self._pending_orders = held
            for order in batch_new:
                order.id = next_order
                next_order += 1

            # Existing open orders move on (returns are possible for a while after delivery).
            open_rows = conn.execute(
                "select id, customer_id, status, amount, created_at, updated_at, note from orders "
                "where status in ('placed','paid','shipped') or (status = 'delivered' and updated_at > %s) "
                "order by id",
                (start - RETURN_WINDOW,),
            ).fetchall()
            existing = [_Order(*r) for r in open_rows]
            payments = []
            for order in existing + batch_new:
                for status, at in self._events(order, end):
                    order.status, order.updated_at, order.changed = status, at, True
                    stats.status_changes += 1
                    if at < start:  # held back from the previous batch
                        stats.late_committed += 1
                    if status == "paid":
                        method = self._order_rng(order, "method").choices(
                            PAYMENT_METHODS, weights=(60, 25, 10, 5))[0]
                        payments.append((next_payment, order.id, order.amount, method, at, at))
                        next_payment += 1
                if self._deferred_event(order, end):
                    stats.late_deferred += 1

            _copy(conn, "orders", ("id", "customer_id", "status", "amount", "created_at", "updated_at", "note"),
                  [(o.id, o.customer_id, o.status, o.amount, o.created_at, o.updated_at, o.note)
                   for o in batch_new])
            stats.new_orders = len(batch_new)
            moved = [(o.id, o.status, o.updated_at) for o in existing if o.changed]
            if moved:
                _copy_temp(conn, "order_moves", ("id bigint", "status text", "at timestamptz"), moved)
                conn.execute("update orders o set status = m.status, updated_at = m.at "
                             "from order_moves m where o.id = m.id")
            _copy(conn, "payments", ("id", "order_id", "amount", "method", "paid_at", "updated_at"), payments)
            stats.payments = len(payments)
        return stats

    # -- the order life cycle --------------------------------------------------------------------
    def _events(self, order: _Order, end: datetime) -> Iterable[tuple[str, datetime]]:
        """The status changes of ``order`` that happen (and are committed) before ``end``."""
        status, at = order.status, order.updated_at
        while True:
            nxt = self._next_event(order, status, at)
            if nxt is None or nxt[1] >= end:
                return
            if self._is_late(status, nxt[1], order.id or 0, end):
                return  # committed with the next batch, keeping its timestamp
            status, at = nxt
            yield nxt

    def _deferred_event(self, order: _Order, end: datetime) -> bool:
        nxt = self._next_event(order, order.status, order.updated_at)
        return nxt is not None and nxt[1] < end

    def _next_event(self, order: _Order, status: str, since: datetime) -> tuple[str, datetime] | None:
        """Deterministic next status (from the seed, the order and its current status)."""
        rng = self._order_rng(order, f"{status}:{since.astimezone(UTC).isoformat()}")
        step: tuple[str, float] | None = None  # (next status, hours later)
        if status == "placed":
            step = ("cancelled", rng.uniform(1, 30)) if rng.random() < 0.1 else ("paid", rng.uniform(0.1, 15))
        elif status == "paid":
            step = ("cancelled", rng.uniform(1, 10)) if rng.random() < 0.03 else ("shipped", rng.uniform(10, 40))
        elif status == "shipped":
            step = ("delivered", rng.uniform(20, 70))
        elif status == "delivered" and rng.random() < 0.06:
            step = ("returned", rng.uniform(24, 150))
        if step is None:
            return None
        return step[0], since + timedelta(seconds=int(step[1] * 3600))

    def _is_late(self, kind: str, at: datetime, key: int, end: datetime) -> bool:
        """True when an event at ``at`` (near ``end``) is committed with the next batch."""
        if at < end - LATE_WINDOW or at >= end:
            return False
        key_text = f"{self.seed}:late:{kind}:{key}:{at.astimezone(UTC).isoformat()}"
        return random.Random(key_text).random() < LATE_FRACTION

    # -- helpers ---------------------------------------------------------------------------------
    def _rng(self, key: str) -> random.Random:
        return random.Random(f"{self.seed}:{key}")

    def _order_rng(self, order: _Order, key: str) -> random.Random:
        return random.Random(f"{self.seed}:order:{order.id}:{key}")

    @staticmethod
    def _person(rng: random.Random, cid: int) -> tuple[str, str | None, str]:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = None if rng.random() < 0.01 else f"{first}.{last}.{cid}@example.com".lower().replace(" ", "")
        return f"{first} {last}", email, _weighted(rng, COUNTRIES)

    @staticmethod
    def _update(conn: psycopg.Connection, table: str, rows: list[tuple], columns: Sequence[str]) -> None:
        """Set the non-null values of ``rows`` (id first, updated_at last) on ``table``."""
        if not rows:
            return
        _copy_temp(conn, f"{table}_changes",
                   ("id bigint", "name text", "email text", "country text", "updated_at timestamptz"), rows)
        sets = sql.SQL(", ").join(
            sql.SQL("{c} = coalesce(ch.{c}, t.{c})").format(c=sql.Identifier(c)) for c in columns[1:]
        )
        conn.execute(sql.SQL("update {t} t set {sets} from {ch} ch where t.id = ch.id").format(
            t=sql.Identifier(table), sets=sets, ch=sql.Identifier(f"{table}_changes")))


def source_checksums(dsn: str) -> dict[str, tuple[int, str]]:
    """``{table: (rows, md5)}`` of the whole source (md5 over the rows ordered by id)."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            row = conn.execute(sql.SQL("select count(*), coalesce(md5(string_agg(t::text, '|' order by id)), '') "
                                       "from {} t").format(sql.Identifier(table))).fetchone()
            out[table] = (row[0], row[1])
    return out


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _seconds(rng: random.Random, span: timedelta) -> timedelta:
    return timedelta(seconds=rng.randrange(max(1, int(span.total_seconds()))))


def _diurnal(rng: random.Random) -> float:
    """A time of day in [0, 1): quiet nights, a busy evening."""
    return min(0.9999, max(0.0, rng.triangular(0.25, 1.0, 0.8)))


def _weighted(rng: random.Random, pairs: Sequence[tuple[str, int]]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _scalar(conn: psycopg.Connection, query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def _copy(conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    stmt = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor().copy(stmt) as copy:
        for row in rows:
            copy.write_row(row)


def _copy_temp(conn: psycopg.Connection, name: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """A temp table ``name`` (dropped at commit) filled with ``rows``; ``columns`` are 'name type'."""
    defs = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.split()[0]), sql.SQL(c.split()[1])) for c in columns
    )
    conn.execute(sql.SQL("create temp table {} ({}) on commit drop").format(sql.Identifier(name), defs))
    _copy(conn, name, [c.split()[0] for c in columns], rows)


def describe(stats: Sequence[DayStats]) -> str:
    """One line per day for the demo's log."""
    lines = []
    for s in stats:
        lines.append(
            f"  {s.day}: +{s.new_orders} orders, {s.status_changes} status changes, +{s.payments} payments, "
            f"+{s.new_customers} customers ({s.updated_customers} updated), {s.updated_products} price changes, "
            f"{s.late_committed} late rows committed, {s.late_deferred} held for the next batch"
        )
    return "\n".join(lines)


def demo_days(days: int, today: date | None = None, warmup: int = 2) -> list[date]:
    """The shop's calendar: ``warmup`` days of history, then the ``days`` intervals before ``today``."""
    today = today or datetime.now(UTC).date()
    return [today - timedelta(days=n) for n in range(days + warmup, 0, -1)]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m devstack.shop [--dsn DSN] [--days 3] [--seed 42]``: a fresh shop up to now."""
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="python -m devstack.shop", description=main.__doc__)
    parser.add_argument("--dsn", default=os.environ.get("SHOP_DSN", "dbname=shop"),
                        help="libpq connection string of the source database (default: $SHOP_DSN)")
    parser.add_argument("--days", type=int, default=3, help="complete days before today (default 3)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    shop = Shop(args.dsn, seed=args.seed)
    with shop.connect() as conn:
        if conn.execute("select to_regclass('public.orders') is not null").fetchone()[0]:
            print("the shop already exists; nothing to do")
            return
    now = datetime.now(UTC)
    stats = shop.build([*demo_days(args.days), now.date()], until=now)
    print(describe(stats))


__all__ = ["Shop", "DayStats", "SCHEMA_SQL", "TABLES", "source_checksums", "describe", "demo_days"]

if __name__ == "__main__":
    main()
