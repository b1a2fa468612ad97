"""Seed the local stack with deterministic demo data: `python -m local.seed` or `seed()`.

Idempotent: the source databases are dropped and recreated on every run.

    PostgreSQL  affiliate: sales.orders, sales.order_lines, sales.customers
                ops:       ops.tickets
    MariaDB     program360: members, events (no primary key, a few exact duplicate rows)
    moto        SSM SecureString parameters /etl/local/{affiliate,ops,program360,program360-mariadb,snowflake},
                S3 bucket etl-staging
    fakesnow    database ETL_DB with schemas RAW and ETL_META

Values come from a seeded random generator. Some text values are deliberately nasty (quotes,
doubled quotes, commas, LF/CRLF, backslashes incl. trailing ones, tabs, non-ASCII, emoji, empty
strings next to NULLs); timestamps carry non-zero microseconds; money includes negative values
and the largest values each column type can hold.
"""

from __future__ import annotations

import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from local import stack
from local.stack import MARIADB_SUFFIX, SSM_PREFIX, ssm_parameters  # noqa: F401 - seeded here, used by bench

SEED = 20241126
BASE_TS = datetime(2024, 1, 1, 0, 0, 0)
STAGING_BUCKET = "etl-staging"

NASTY_TEXT = [
    'He said "hello"',
    'doubled ""quotes"" inside',
    '"fully quoted"',
    "comma, separated, values",
    "line one\nline two",
    "windows\r\nline break",
    "back\\slash in the middle",
    "trailing backslash\\",
    "\\",
    "tab\tseparated\tvalue",
    "café crème brûlée",
    "Grüße aus München",
    "中文字符测试",
    "emoji 🚀🎉 party",
    "",
    "  padded with spaces  ",
    "it's O'Brien's",
    'all at once: "q", ""dq"", a,b \\ \t tab\r\nCRLF é 中 🙂\\',
]
FIRST_NAMES = [
    "Anna",
    "Ben",
    "Chloé",
    "Dmitri",
    "Eva",
    "Felix",
    "Günther",
    "Hana",
    "Ivan",
    "José",
    "Li",
    "Zoë",
]
LAST_NAMES = ["Smith", "Müller", "O'Brien", "García", "Nguyen", "Kowalski", "王", "Dubois", "Rossi", "Ng"]
COUNTRIES = ["US", "DE", "FR", "GB", "CN", "JP", "BR", "IN", "ES", "PL"]


# --------------------------------------------------------------------------------------------------
# Value helpers
# --------------------------------------------------------------------------------------------------


def _ts(rng: random.Random, days: int = 365, days_before_base: int = 0) -> datetime:
    """A timestamp in the `days` days from `days_before_base` days before BASE_TS (non-zero microseconds)."""
    start = BASE_TS - timedelta(days=days_before_base)
    return start + timedelta(seconds=rng.randrange(days * 86400), microseconds=rng.randrange(1, 1_000_000))


def _money(rng: random.Random, low: float, high: float, places: int) -> Decimal:
    return Decimal(f"{rng.uniform(low, high):.{places}f}")


def _text(rng: random.Random, i: int, normal: str, null_every: int = 11, nasty_every: int = 5) -> str | None:
    """Mostly `normal`; every few rows a nasty string or NULL (the empty string is one of the nasty ones)."""
    if i % null_every == 0:
        return None
    if i % nasty_every == 0:
        return NASTY_TEXT[(i // nasty_every) % len(NASTY_TEXT)]
    return normal


def _tz(rng: random.Random) -> timezone:
    return timezone(timedelta(minutes=rng.choice([0, 60, 330, -300, -480, 545, 840, -720])))


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


# --------------------------------------------------------------------------------------------------
# Row generators (deterministic)
# --------------------------------------------------------------------------------------------------


def order_rows(rng: random.Random, n: int = 2000) -> list[tuple]:
    extremes = {1: "9999999999.99", 2: "-9999999999.99", 3: "0.00", 4: "0.01", 5: "-0.01"}
    rows = []
    for i in range(1, n + 1):
        created = _ts(rng)
        amount = Decimal(extremes[i]) if i in extremes else _money(rng, -500, 25000, 2)
        rows.append((
            i,
            rng.randint(1, 500),
            rng.choice(["new", "paid", "shipped", "cancelled", "refunded"]),
            amount,
            None if i % 13 == 0 else rng.random() < 0.7,
            (created + timedelta(days=rng.randint(0, 3))).date(),
            _text(rng, i, f"order note {i}", null_every=7),
            None if i % 17 == 0 else created,
            created + timedelta(hours=rng.randint(0, 2000), microseconds=rng.randrange(1, 1_000_000)),
        ))  # fmt: skip
    return rows


def order_line_rows(rng: random.Random, n_orders: int = 2000, n: int = 5000) -> list[tuple]:
    lines_per_order = [1] * n_orders
    for _ in range(n - n_orders):
        lines_per_order[rng.randrange(n_orders)] += 1
    rows = []
    for order_id, n_lines in enumerate(lines_per_order, start=1):
        for line_no in range(1, n_lines + 1):
            i = len(rows) + 1
            price = Decimal("9999999999.9999") if i == 1 else _money(rng, -50, 5000, 4)
            rows.append((
                order_id,
                line_no,
                _text(rng, i, f"SKU-{rng.randrange(100000):05d}", null_every=97, nasty_every=23),
                rng.randint(-3, 50),
                price,
                _ts(rng).replace(tzinfo=UTC).astimezone(_tz(rng)),
            ))  # fmt: skip
    return rows


def customer_rows(rng: random.Random, n: int = 500) -> list[tuple]:
    rows = []
    for i in range(1, n + 1):
        name = _name(rng)
        balance = {1: Decimal("999999999999.999999"), 2: Decimal("-999999999999.999999")}.get(
            i, _money(rng, -10000, 1_000_000, 6)
        )
        rows.append((
            i,
            _text(rng, i, name, null_every=50, nasty_every=9),
            None if i % 19 == 0 else f"{name.split()[0].lower()}.{i}@example.com",
            None if i % 23 == 0 else rng.choice(COUNTRIES),
            _ts(rng, 1000, 1000).replace(tzinfo=_tz(rng)),
            rng.random() < 0.1,
            balance,
        ))  # fmt: skip
    return rows


def ticket_rows(rng: random.Random, n: int = 300) -> list[tuple]:
    from psycopg2.extras import Json

    rows = []
    for i in range(1, n + 1):
        opened = _ts(rng)
        payload = None
        if i % 4:
            payload = Json({
                "source": rng.choice(["email", "phone", "web"]),
                "tags": rng.sample(["billing", "urgent", "vip", "bug", "refund"], 2),
                "comment": NASTY_TEXT[i % len(NASTY_TEXT)],
                "score": round(rng.uniform(0, 10), 3),
            })  # fmt: skip
        rows.append((
            i,
            _text(rng, i, f"Ticket #{i}: {rng.choice(['login', 'refund', 'crash', 'invoice'])} issue"),
            rng.randint(1, 5),
            opened,
            None if i % 3 == 0 else (opened + timedelta(days=rng.randint(0, 30))).date(),
            payload,
        ))  # fmt: skip
    return rows


def member_rows(rng: random.Random, n: int = 1500) -> list[tuple]:
    rows = []
    for i in range(1, n + 1):
        name = _name(rng)
        joined = _ts(rng, 1200, 1200)
        points = {1: 9223372036854775807, 2: -9223372036854775808, 3: 9007199254740993}.get(
            i, rng.randint(0, 250_000)
        )
        rows.append((
            i,
            _text(rng, i, name, null_every=40, nasty_every=7),
            None if i % 29 == 0 else f"member{i}@example.org",
            joined,
            points,
            1 if rng.random() < 0.8 else 0,
            rng.choice(["bronze", "silver", "gold", "platinum"]),
            joined + timedelta(days=rng.randint(0, 300), microseconds=rng.randrange(1, 1_000_000)),
        ))  # fmt: skip
    return rows


def event_rows(rng: random.Random, n_members: int = 1500, n: int = 3000) -> list[tuple]:
    extremes = {1: "99999999.99", 2: "-99999999.99", 3: "0.00"}
    rows = []
    for i in range(1, n - 10 + 1):
        amount = Decimal(extremes[i]) if i in extremes else _money(rng, -200, 2000, 2)
        rows.append((
            rng.randint(1, n_members),
            _text(rng, i, rng.choice(["login", "purchase", "refund", "points_earned"]), 61, 37),
            None if i % 31 == 0 else amount,
            _ts(rng),
        ))  # fmt: skip
    rows += [rows[i * 97] for i in range(10)]  # exact duplicates: tables without a key have them
    return rows


# --------------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------------

AFFILIATE_DDL = """
CREATE SCHEMA sales;
CREATE TABLE sales.orders (
    id          bigint PRIMARY KEY,
    customer_id int,
    status      text,
    amount      numeric(12,2),
    is_paid     boolean,
    order_date  date,
    note        text,
    created_at  timestamp(6),
    updated_at  timestamp(6) NOT NULL
);
CREATE TABLE sales.order_lines (
    order_id   bigint,
    line_no    int,
    sku        text,
    qty        int,
    unit_price numeric(14,4),
    updated_at timestamptz,
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE sales.customers (
    id        int PRIMARY KEY,
    name      text,
    email     text,
    country   char(2),
    signup_ts timestamptz,
    vip       boolean,
    balance   numeric(18,6)
);
"""

OPS_DDL = """
CREATE SCHEMA ops;
CREATE TABLE ops.tickets (
    id        int PRIMARY KEY,
    title     text,
    priority  smallint,
    opened_at timestamp(6),
    closed_on date,
    payload   jsonb
);
"""


def _recreate_pg_database(name: str) -> None:
    conn = stack.pg_connect("postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def _pg_load(dbname: str, ddl: str, tables: dict[str, list[tuple]]) -> None:
    from psycopg2.extras import execute_values

    _recreate_pg_database(dbname)
    conn = stack.pg_connect(dbname)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(ddl)
            for table, rows in tables.items():
                execute_values(cur, f"INSERT INTO {table} VALUES %s", rows, page_size=1000)
            cur.execute("ANALYZE")
    finally:
        conn.close()


def seed_postgres(rng: random.Random) -> dict[str, int]:
    affiliate = {
        "sales.orders": order_rows(rng),
        "sales.order_lines": order_line_rows(rng),
        "sales.customers": customer_rows(rng),
    }
    ops = {"ops.tickets": ticket_rows(rng)}
    _pg_load("affiliate", AFFILIATE_DDL, affiliate)
    _pg_load("ops", OPS_DDL, ops)
    return {f"postgres affiliate.{t}": len(r) for t, r in affiliate.items()} | {
        f"postgres ops.{t}": len(r) for t, r in ops.items()
    }


# --------------------------------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------------------------------

PROGRAM360_DDL = [
    """CREATE TABLE members (
        id        int PRIMARY KEY AUTO_INCREMENT,
        name      varchar(200),
        email     varchar(200),
        joined_at datetime(6),
        points    bigint,
        active    tinyint(1),
        tier      enum('bronze','silver','gold','platinum'),
        updated_at datetime(6)
    ) ENGINE=InnoDB""",
    """CREATE TABLE events (
        member_id   int,
        event_type  varchar(50),
        amount      decimal(10,2),
        occurred_at datetime(6)
    ) ENGINE=InnoDB""",
]


def seed_mariadb(rng: random.Random) -> dict[str, int]:
    members, events = member_rows(rng), event_rows(rng)
    conn = stack.mariadb_connect(None)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS program360")
            cur.execute("CREATE DATABASE program360 CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            cur.execute("USE program360")
            for ddl in PROGRAM360_DDL:
                cur.execute(ddl)
            # pymysql turns executemany of a plain INSERT ... VALUES into multi-row INSERTs.
            cur.executemany("INSERT INTO members VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", members)
            cur.executemany("INSERT INTO events VALUES (%s, %s, %s, %s)", events)
        conn.commit()
    finally:
        conn.close()
    return {"mariadb program360.members": len(members), "mariadb program360.events": len(events)}


# --------------------------------------------------------------------------------------------------
# AWS (moto) and Snowflake (fakesnow)
# --------------------------------------------------------------------------------------------------


def seed_aws() -> dict[str, int]:
    ssm = stack.boto3_client("ssm")
    params = ssm_parameters()
    for name, value in params.items():
        ssm.put_parameter(Name=name, Value=json.dumps(value), Type="SecureString", Overwrite=True)
    s3 = stack.boto3_client("s3")
    if STAGING_BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=STAGING_BUCKET)
    return {"ssm parameters": len(params), f"s3 bucket {STAGING_BUCKET}": 1}


def seed_snowflake() -> dict[str, int]:
    db = stack.SNOWFLAKE_DATABASE
    conn = stack.snowflake_connect(database=None)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        for schema in ("RAW", "ETL_META"):
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {db}.{schema}")
    finally:
        conn.close()
    return {f"fakesnow {db} schemas": 2}


def seed() -> dict[str, int]:
    """Seed everything; returns row/object counts by target."""
    rng = random.Random(SEED)
    counts = seed_postgres(rng)
    counts |= seed_mariadb(rng)
    counts |= seed_aws()
    counts |= seed_snowflake()
    return counts


def main() -> int:
    started = time.monotonic()
    try:
        counts = seed()
    except stack.StackError as exc:
        print(f"[seed] ERROR: {exc}", file=sys.stderr)
        return 1
    for target, count in counts.items():
        print(f"[seed] {target}: {count}")
    print(f"[seed] done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
