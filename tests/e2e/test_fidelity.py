"""Data fidelity: a torture table in each source engine, loaded in every mode, compared as typed values.

Each engine gets one copy of its torture table per mode. The job runs twice (the second time
after every row's timestamp moved, so INCREMENTAL and UPSERT go through their UPDATE path).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

import pytest

from local import stack
from tests.e2e import helpers as h

MODES = {"full": "FULL", "trunc": "TRUNCATE_INSERT", "upsert": "UPSERT", "incr": "INCREMENTAL", "append": "APPEND"}
TEXTS = ['"', '""', 'a "quoted" word', "comma, here", "\n", "\r\n", "cr\ronly", "back\\slash", "\\", "ends with \\",
         "\\N", "NULL", "\t", " leading and trailing ", "é ü ß 中文 日本語 🎉👍🏽", "", None, "x" * 100_000]
PG_ROWS = [
    # id, i16, i32, i64, dec38, dec_tiny, f8, f4, txt, d, ts, tstz, b, by, js
    (1, -32768, -2147483648, -9223372036854775808, Decimal("-9999999999999999999999999999.9999999999"),
     Decimal("-0.00001"), float("nan"), float("inf"), None, dt.date(1600, 2, 29),
     dt.datetime(1900, 1, 1, 0, 0, 0, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), True,
     b"\x00\xff\x10", '{"a": [1, 2, {"b": null}], "s": "q\\"uote \\\\ back"}'),
    (2, 32767, 2147483647, 9223372036854775807, Decimal("9999999999999999999999999999.9999999999"),
     Decimal("0.00001"), float("-inf"), -0.0, "", dt.date(2100, 12, 31),
     dt.datetime(2262, 4, 11, 23, 47, 16, 854776), dt.datetime(2500, 1, 1, 0, 0, 0, 999999, tzinfo=dt.UTC),
     False, b"", "[]"),
    (3, 0, 0, 0, Decimal("0E-10"), Decimal("0.00000"), -0.0, 3.4028235e38, "\\N", dt.date(1, 1, 1),
     dt.datetime(2026, 1, 1), dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
     None, None, None),
    (4, None, None, None, None, None, 1e308, 1e-38, None, None, None, None, None, b"\\", "{}"),
    (5, 1, 2, 3, Decimal("0.0000000001"), Decimal("0.12345"), 5e-324, None, None, dt.date(9999, 12, 31),
     dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None, True, b"'\"", '"just a string"'),
    # A day the Julian calendar skipped (Java's calendar would move it ten days on), and
    # timestamps before the Gregorian switch.
    (6, None, None, None, None, None, None, None, None, dt.date(1582, 10, 10), dt.datetime(1000, 1, 1, 0, 0, 0, 1),
     dt.datetime(1000, 1, 1, 12, 0, tzinfo=dt.UTC), None, None, None),
]
PG_DDL = """CREATE TABLE torture.{t} (id int PRIMARY KEY, i16 smallint, i32 int, i64 bigint, dec38 numeric(38,10),
  dec_tiny numeric(5,5), f8 double precision, f4 real, txt text, d date, ts timestamp(6), tstz timestamptz(6),
  b boolean, by bytea, js jsonb, updated_at timestamp(6) NOT NULL DEFAULT '2026-01-01')"""
MY_DDL = """CREATE TABLE torture.{t} (id int PRIMARY KEY, i8 tinyint, u64 bigint unsigned, i64 bigint,
  dec65 decimal(38,10), f8 double, f4 float, txt longtext, vc varchar(20), d date, dt6 datetime(6),
  ts6 timestamp(6) NULL, b tinyint(1), bin varbinary(16), bl longblob, js json, en enum('a','bb','ccc'),
  updated_at datetime(6) NOT NULL DEFAULT '2026-01-01')"""
MY_ROWS = [
    (1, -128, 18446744073709551615, -9223372036854775808, Decimal("-9999999999999999999999999999.9999999999"),
     # DATETIME's smallest value: before the Gregorian switch (1582-10-15), where the JDBC
     # driver's calendar would shift it by days (the server formats DATETIME as text instead).
     -1.7976931348623157e308, -3.4e38, None, "", dt.date(1000, 1, 1), dt.datetime(1000, 1, 1, 0, 0, 0, 1),
     dt.datetime(1970, 1, 1, 0, 0, 1, 1), 1, b"\x00\xff", b"", '{"k": ["v", 1.5, null]}', "a"),
    (2, 127, 0, 9223372036854775807, Decimal("0.0000000001"), -0.0, 1.5, "", None, dt.date(9999, 12, 31),
     dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(2038, 1, 19, 3, 14, 7, 999999), 0, None,
     bytes(range(256)), None, "ccc"),
    (3, None, None, None, None, None, None, None, None, None, None, None, None, b"", None, "[]", None),
    # The last Julian day, and the gap the switch skipped: MySQL's calendar is proleptic Gregorian.
    (4, None, None, None, None, None, None, None, None, dt.date(1582, 10, 4),
     dt.datetime(1582, 10, 4, 23, 59, 59, 999999), None, None, None, None, None, None),
    (5, None, None, None, None, None, None, None, None, dt.date(1582, 10, 10), dt.datetime(1582, 10, 10, 12, 0, 0),
     None, None, None, None, None, None),
    # Zero dates (allowed without NO_ZERO_DATE) load as NULL, as the driver reads them.
    (6, None, None, None, None, None, None, None, None, "0000-00-00", "0000-00-00 00:00:00", None, None, None, None,
     None, None),
]


def with_texts(rows: list[tuple], text_index: int) -> list[tuple]:
    """The rows, then one row per nasty text (other columns NULL), ids from 100."""
    width = len(rows[0])
    extra = [tuple(100 + i if c == 0 else (t if c == text_index else None) for c in range(width))
             for i, t in enumerate(TEXTS)]
    return rows + extra


@pytest.fixture(scope="module")
def loaded(stack_env, mysql_driver, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fidelity")
    h.reset_target_schema("TORTURE")
    pg_rows, my_rows = with_texts(PG_ROWS, 8), with_texts(MY_ROWS, 7)
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS torture CASCADE; CREATE SCHEMA torture")
        for t in MODES:
            cur.execute(PG_DDL.format(t=t))
            cur.executemany(f"INSERT INTO torture.{t} VALUES ({', '.join(['%s'] * 15)})", pg_rows)
    with h.mysql_cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS torture")
        cur.execute("CREATE DATABASE torture CHARACTER SET utf8mb4")
        cur.execute("SET time_zone = '+00:00'")
        for t in MODES:
            cur.execute(MY_DDL.format(t=t))
            cur.executemany(f"INSERT INTO torture.{t} VALUES ({', '.join(['%s'] * 17)}, DEFAULT)", my_rows)
    tables = {}
    for group, prefix in (("AFFILIATE", "PG"), ("PROGRAM360", "MY")):
        for t, mode in MODES.items():
            entry = {"ssmKey": group, "target_table": f"TORTURE.{prefix}_{t.upper()}", "operations": {"type": mode}}
            if mode != "APPEND":
                entry["primary_key"] = "ID"
            if mode == "INCREMENTAL":
                entry["timestamp_column"] = "UPDATED_AT"
            tables[(prefix, f"torture.{t}")] = entry
    runs = []
    engines = ("PG", "MY") if mysql_driver is None else ("MY",)   # PostgreSQL once; MySQL per driver
    for prefix in engines:
        registry = {k: v for (p, k), v in tables.items() if p == prefix}
        runs.append(h.run_job(tmp, registry, job_name=f"e2e-torture-{prefix}"))
    # Second run (not APPEND): every row's timestamp moves, so INCREMENTAL and UPSERT rewrite every row.
    rerun = [t for t in MODES if t != "append"]
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for t in rerun:
            cur.execute(f"UPDATE torture.{t} SET updated_at = '2026-02-01'")
    with h.mysql_cursor() as cur:
        for t in rerun:
            cur.execute(f"UPDATE torture.{t} SET updated_at = '2026-02-01'")
    for prefix in engines:
        registry = {k: v for (p, k), v in tables.items() if p == prefix and "append" not in k}
        runs.append(h.run_job(tmp, registry, job_name=f"e2e-torture-{prefix}-2"))
    return runs


def typed(value):
    """Exact comparison keys: the sign of zero and NaN are kept, JSON is parsed."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value, math.copysign(1.0, value))
    return h.norm(value)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("engine, mysql_driver", h.engines_and_drivers(), indirect=["mysql_driver"],
                         scope="module")
def test_every_value_survives(loaded, engine, mode):
    for run in loaded:
        assert run.returncode == 0, run.stdout[-3000:]
    prefix = "PG" if engine == "postgres" else "MY"
    read = h.pg_rows if engine == "postgres" else h.mysql_rows
    if engine == "mysql":
        with h.mysql_cursor("torture") as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(f"SELECT * FROM torture.{mode} ORDER BY id")
            cols, src = [d[0].upper() for d in cur.description], list(cur.fetchall())
    else:
        cols, src = read("affiliate", f"torture.{mode}", "id")
    tgt = h.sf_rows(f"ETL_DB.TORTURE.{prefix}_{mode.upper()}", cols, '"ID"')
    json_col = cols.index("JS")
    tgt = [tuple(json.loads(v) if i == json_col and v is not None else v for i, v in enumerate(r)) for r in tgt]
    if engine == "mysql":   # MySQL returns JSON as text; TIMESTAMP read in UTC above
        src = [tuple(json.loads(v) if i == json_col and v is not None else
                     (v.replace(tzinfo=dt.UTC) if cols[i] == "TS6" and v is not None else
                      None if cols[i] in ("D", "DT6") and isinstance(v, str) and v.startswith("0000-00-00") else v)
                     for i, v in enumerate(r)) for r in src]
    assert len(src) == len(tgt)
    for s, t in zip(src, tgt, strict=True):
        assert tuple(map(typed, s)) == tuple(map(typed, t)), f"row {s[0]} differs"
