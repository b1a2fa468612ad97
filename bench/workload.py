"""The benchmark's source data, generated inside PostgreSQL and MariaDB by SQL (seconds, not minutes).

Everything lives in its own database ``bench`` on both servers (PostgreSQL schema ``bench``), so
`make seed` / the tests, which drop and recreate their own databases, never touch it and the
bench never touches theirs. A table is only (re)generated when it is missing or its row count is
wrong, so a second `make bench` starts measuring at once.

One table shape for every case (the PK plus ten columns):
    id bigint PK, account_id int, name text, email text, city text, amount numeric(12,2),
    qty int, status text, created_at timestamp(6), updated_at timestamp(6), note text (1/3 NULL)
"""

from __future__ import annotations

import json
import os
import sys
import time

from local import stack

DATABASE = "bench"          # PostgreSQL database and MariaDB database
SCHEMA = "bench"            # PostgreSQL schema (the job's "namespace")
SSM_POSTGRES = "/etl/bench/postgres"
SSM_MYSQL = "/etl/bench/mysql"
SSM_SNOWFLAKE = "/etl/bench/snowflake"
# fakesnow answers a query request only when the statement has finished (Snowflake within ~45 s, then the
# connector polls), so a COPY of 5M rows on a busy machine outlasts the job's default socket_timeout
# (120 s, README "Snowflake connection"): the bench's Snowflake secret raises it with the job's own key.
BENCH_SOCKET_TIMEOUT = 900

# BENCH_SIZES=small is the smoke profile; the default is the workload.
PROFILES = {
    "full": {"small": 1_000_000, "large": 5_000_000, "many_tables": 30, "many_rows": 10_000},
    "small": {"small": 100_000, "large": 200_000, "many_tables": 5, "many_rows": 10_000},
}


def profile() -> dict:
    name = os.environ.get("BENCH_SIZES", "full")
    if name not in PROFILES:
        raise SystemExit(f"BENCH_SIZES={name!r}: use one of {', '.join(PROFILES)}")
    return {"name": name, **PROFILES[name]}


def label(rows: int) -> str:
    """1_000_000 -> '1m', 100_000 -> '100k'."""
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else f"{rows // 1000}k"


def table_name(rows: int) -> str:
    return f"t_{label(rows)}"


def many_names(count: int) -> list[str]:
    return [f"many_{i:02d}" for i in range(1, count + 1)]


CITIES = ["Berlin", "Paris", "London", "New York", "São Paulo", "Tokyo", "Mumbai", "Warszawa", "Madrid", "Lagos"]
STATUSES = ["new", "paid", "shipped", "cancelled", "refunded"]

PG_DDL = """CREATE TABLE {t} (id bigint, account_id int, name text, email text, city text,
    amount numeric(12,2), qty int, status text, created_at timestamp(6), updated_at timestamp(6), note text)"""
PG_FILL = """INSERT INTO {t}
SELECT g, (g * 7919) % 100000, 'customer ' || g, 'user' || g || '@example.com',
       (ARRAY[{cities}])[1 + g % 10], ((g * 104729) % 10000000) / 100.0 - 20000, 1 + g % 50,
       (ARRAY[{statuses}])[1 + g % 5],
       TIMESTAMP '2024-01-01' + g * INTERVAL '1 second' + (g % 999983) * INTERVAL '1 microsecond',
       TIMESTAMP '2024-01-02' + g * INTERVAL '1 second' + (g % 999979) * INTERVAL '1 microsecond',
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || md5(g::text) END
FROM generate_series(1::bigint, {n}) g"""

MY_DDL = """CREATE TABLE {t} (id bigint PRIMARY KEY, account_id int, name text, email text, city text,
    amount decimal(12,2), qty int, status text, created_at datetime(6), updated_at datetime(6), note text,
    KEY (updated_at)) ENGINE=InnoDB"""
MY_FILL = """INSERT INTO {t}
SELECT seq, (seq * 7919) % 100000, CONCAT('customer ', seq), CONCAT('user', seq, '@example.com'),
       ELT(1 + seq % 10, {cities}), ((seq * 104729) % 10000000) / 100.0 - 20000, 1 + seq % 50,
       ELT(1 + seq % 5, {statuses}),
       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 999983) MICROSECOND,
       TIMESTAMP '2024-01-02 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 999979) MICROSECOND,
       IF(seq % 3 = 0, NULL, CONCAT('note ', MD5(seq)))
FROM seq_1_to_{n}"""


def _quoted(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----- PostgreSQL -------------------------------------------------------------------------------


def _pg_database() -> None:
    conn = stack.pg_connect("postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if not cur.fetchone():
                cur.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        conn.close()


def _generate(cur, label: str, t: str, rows: int, ddl: str, fill: str, after: list[str]) -> None:
    """(Re)create table ``t`` from its DDL and fill SQL, then run ``after`` (keys, indexes, statistics)."""
    started = time.monotonic()
    cur.execute(f"DROP TABLE IF EXISTS {t}")
    cur.execute(ddl.format(t=t))
    cur.execute(fill.format(t=t, n=rows, cities=_quoted(CITIES), statuses=_quoted(STATUSES)))
    for sql in after:
        cur.execute(sql)
        if cur.description:             # MariaDB's ANALYZE TABLE answers with a result set
            cur.fetchall()
    _log(f"{label}: generated {rows} rows in {time.monotonic() - started:.1f}s")


def _pg_rows(cur, table: str) -> int | None:
    cur.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{table}",))
    if cur.fetchone()[0] is None:
        return None
    cur.execute(f"SELECT count(*) FROM {SCHEMA}.{table}")
    return cur.fetchone()[0]


def ensure_pg_table(table: str, rows: int, *, index_updated_at: bool = True) -> bool:
    """Create ``bench.<table>`` with ``rows`` rows unless it is already there; True if generated."""
    conn = stack.pg_connect(DATABASE)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            if _pg_rows(cur, table) == rows:
                return False
            t = f"{SCHEMA}.{table}"
            # an incremental source normally has an index on its timestamp column
            _generate(cur, f"postgres {DATABASE}.{t}", t, rows, PG_DDL, PG_FILL,
                      [f"ALTER TABLE {t} ADD PRIMARY KEY (id)",
                       *([f"CREATE INDEX ON {t} (updated_at)"] if index_updated_at else []),
                       f"VACUUM ANALYZE {t}"])
            return True
    finally:
        conn.close()


def update_delta(table: str, rows: int, slot: int, share: int = 100) -> int:
    """Touch 1/share of the rows (``mod(id, share) = slot``): new amount, updated_at = now. Returns rows."""
    conn = stack.pg_connect(DATABASE)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"UPDATE {SCHEMA}.{table} SET amount = amount + 1, updated_at = clock_timestamp() "
                        f"WHERE mod(id, %s) = %s", (share, slot % share))
            changed = cur.rowcount
            cur.execute(f"VACUUM ANALYZE {SCHEMA}.{table}")
    finally:
        conn.close()
    assert changed == rows // share, f"expected {rows // share} updated rows, got {changed}"
    return changed


def held_name(table: str) -> str:
    return f"{SCHEMA}.{table}_held"


def restore_held(table: str) -> bool:
    """Put back the rows the VERIFY case moved aside (bench/verify.py ``Drifts``), also after an interrupted
    bench; True if there were any."""
    conn = stack.pg_connect(DATABASE)
    try:
        with conn, conn.cursor() as cur:        # one transaction
            cur.execute("SELECT to_regclass(%s)", (held_name(table),))
            if cur.fetchone()[0] is None:
                return False
            cur.execute(f"INSERT INTO {SCHEMA}.{table} SELECT * FROM {held_name(table)}")
            cur.execute(f"DROP TABLE {held_name(table)}")
            return True
    finally:
        conn.close()


# ----- MariaDB ---------------------------------------------------------------------------------


def ensure_mysql_table(table: str, rows: int) -> bool:
    conn = stack.mariadb_connect(None, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4")
            cur.execute(f"USE {DATABASE}")      # the seq_1_to_N tables need a current database
            cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                        (DATABASE, table))
            if cur.fetchone()[0]:
                cur.execute(f"SELECT COUNT(*) FROM {DATABASE}.{table}")
                if cur.fetchone()[0] == rows:
                    return False
            t = f"{DATABASE}.{table}"
            _generate(cur, f"mariadb {t}", t, rows, MY_DDL, MY_FILL, [f"ANALYZE TABLE {t}"])
            return True
    finally:
        conn.close()


# ----- SSM parameters for the bench databases ----------------------------------------------------


def put_ssm_parameters() -> None:
    """/etl/bench/{postgres,mysql}: the seeded connection secrets, pointed at database ``bench``;
    /etl/bench/snowflake: the seeded Snowflake secret with ``socket_timeout`` BENCH_SOCKET_TIMEOUT."""
    from local import seed

    params = seed.ssm_parameters()
    ssm = stack.boto3_client("ssm")
    values = {path: {**params[f"{seed.SSM_PREFIX}/{source}"], "database": DATABASE}
              for path, source in ((SSM_POSTGRES, "affiliate"), (SSM_MYSQL, "program360"))}
    values[SSM_SNOWFLAKE] = {**params[f"{seed.SSM_PREFIX}/snowflake"], "socket_timeout": BENCH_SOCKET_TIMEOUT}
    for path, value in values.items():
        ssm.put_parameter(Name=path, Value=json.dumps(value), Type="SecureString", Overwrite=True)


def prepare(prof: dict) -> dict:
    """Generate whatever is missing; returns the table names by role."""
    started = time.monotonic()
    _pg_database()
    small, large = table_name(prof["small"]), table_name(prof["large"])
    if restore_held(large):
        _log(f"postgres {SCHEMA}.{large}: put back the rows an interrupted VERIFY case had moved aside")
    ensure_pg_table(small, prof["small"])
    ensure_pg_table(large, prof["large"])
    many = many_names(prof["many_tables"])
    for name in many:
        ensure_pg_table(name, prof["many_rows"], index_updated_at=False)
    ensure_mysql_table(small, prof["small"])
    put_ssm_parameters()
    _log(f"workload ready in {time.monotonic() - started:.1f}s")
    return {"small": small, "large": large, "many": many}
