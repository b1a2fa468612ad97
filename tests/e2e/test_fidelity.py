"""Data fidelity: a torture table in each source engine, loaded in every mode, compared as typed values.

Each engine gets one copy of its torture table per mode (MySQL through MariaDB Connector/J: the
FULL one). The job runs twice, every engine's tables in each run (the second time after every
row's timestamp moved, so INCREMENTAL and UPSERT go through their UPDATE path).
Beside each torture table, a "bad" table holds values Snowflake's types cannot hold: it must fail
before anything is written, naming each value.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
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


# More columns of the torture tables: (name, DDL type, values of the rows with ids 1..6).
PG_EXTRA = [
    ("t6", "time(6)", [dt.time(23, 59, 59, 999999), dt.time(0, 0), dt.time(12, 34, 56, 500000), None,
                       dt.time(0, 0, 0, 1), None]),
    ("ttz", "timetz(6)", ["12:00:00.123456+05:30", "23:59:59.999999-12", "00:00:00+00", None, "06:30:00-03:30",
                          None]),
    # numeric without precision: 38 digits, 18 of them decimals, fit NUMBER(38,18) exactly.
    ("nfree", "numeric", [Decimal("12345678901234567890.123456789012345678"), Decimal("-0.000000000000000001"),
                          Decimal("0"), None, Decimal("-99999999999999999999.999999999999999999"), Decimal("1.5")]),
    ("m", "money", ["1234.56", "-92233720368547758.08", "0", None, "92233720368547758.07", "0.01"]),
    ("c5", "char(5)", ["ab", "abcde", "", None, " a", "a b"]),
    ("u", "uuid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None, "00000000-0000-0000-0000-000000000000", None,
                   None, None]),
    ("ip", "inet", ["192.168.0.1/24", "::1", "10.0.0.1", None, "2001:db8::1/64", None]),
    ("iv", "interval", ["1 year 2 mons 3 days 04:05:06.789", "-00:00:01", "0", None, "100 years",
                        "-1 mons +2 days"]),
    ("ia", "int[]", [[1, 2, None], [], [[1, 2], [3, 4]], None, [-2147483648], None]),
    ("ta", "text[]", [["a", 'b "q"', None], ["", "comma, here"], None, None, ["é"], None]),
    ("x", "xml", ['<a b="1">t &amp; u</a>', None, "<empty/>", None, None, None]),
    ("vb", "bit varying(10)", ["10110", "", "1", None, "0000000000", None]),
    ("b5", "bit(5)", ["10110", "00000", None, None, None, None]),
    ("b1", "bit(1)", ["1", "0", None, None, None, None]),
    ("ss", "smallserial", None),                  # its default: 1, 2, 3, ...
]
# The ten days the Gregorian switch skipped, as timestamptz (the typed path moves them by ten days).
PG_GAP = [dt.datetime(1582, 10, day, 0, 0, 0, day, tzinfo=dt.UTC) for day in range(5, 15)]
MY_EXTRA = [
    # MySQL's BOOLEAN is TINYINT(1), which holds -128..127.
    ("flag", "tinyint(1)", [-1, 2, 127, -128, 0, None]),
    ("dur", "time(6)", ["838:59:59", "-838:59:59", "-12:30:00.5", "25:00:00.000001", "23:59:59.999999", None]),
    ("y", "year", [2024, 1901, 2155, 0, None, 1970]),
    ("bt1", "bit(1)", [b"\x01", b"\x00", None, None, None, None]),
    ("b64", "bit(64)", [b"\xff" * 8, b"\x00" * 8, b"\xa5", None, None, None]),
    ("tu", "tinyint unsigned", [255, 0, None, None, None, None]),
    ("su", "smallint unsigned", [65535, 0, None, None, None, None]),
    ("mi", "mediumint", [-8388608, 8388607, None, None, None, None]),
    ("mu", "mediumint unsigned", [16777215, 0, None, None, None, None]),
    ("iu", "int unsigned", [4294967295, 0, None, None, None, None]),
    ("st", "set('a','b','c')", ["a,c", "", "a,b,c", None, None, None]),
    ("d65", "decimal(65,30)", [Decimal("12345678.123456789012345678901234567890"),
                               Decimal("-0.000000000000000000000000000001"), Decimal("0"), None,
                               Decimal("-99999999.999999999999999999999999999999"), None]),
    ("l1", "varchar(20) CHARACTER SET latin1", ["é ü ß ÿ", "", None, None, None, None]),
    ("ch", "char(5)", ["ab", "abcde", "", None, " a", None]),
]
# Values Snowflake's types cannot hold; the table must fail naming each.
PG_BAD = ("CREATE TABLE torture.bad_{t} (id int PRIMARY KEY, n numeric, t time(6), "
          "updated_at timestamp(6) NOT NULL DEFAULT '2026-01-01')",
          "INSERT INTO torture.bad_{t} (id, n, t) VALUES (1, 1.5, '12:00'), (2, 1.1234567890123456789012, '24:00:00')",
          ["column n holds 1.1234567890123456789012, which does not fit NUMBER(38,18)",
           "column t holds 24:00:00, which is beyond Snowflake's TIME range"])
MY_BAD = ("CREATE TABLE torture.bad_{t} (id int PRIMARY KEY, d65 decimal(65,30), "
          "updated_at datetime(6) NOT NULL DEFAULT '2026-01-01')",
          "INSERT INTO torture.bad_{t} (id, d65) VALUES (1, 1.5), (2, 123456789.5)",
          ["column d65 holds 123456789.500000000000000000000000000000, which does not fit NUMBER(38,30)"])


def with_texts(rows: list[tuple], text_index: int) -> list[tuple]:
    """The rows, then one row per nasty text (other columns NULL), ids from 100."""
    width = len(rows[0])
    extra = [tuple(100 + i if c == 0 else (t if c == text_index else None) for c in range(width))
             for i, t in enumerate(TEXTS)]
    return rows + extra


def ddl(base: str, extra: list[tuple]) -> str:
    """The torture table's DDL with the extra columns before updated_at."""
    head, tail = re.split(r",\s*updated_at", base)
    return head + "".join(f", {name} {kind}" for name, kind, _ in extra) + ", updated_at" + tail


def insert(cur, table: str, columns: list[str], rows: list[tuple]) -> None:
    cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", rows)


def with_extra(rows: list[tuple], extra: list[tuple]) -> list[tuple]:
    """The rows with ids 1..6 get their extra values, the others NULL."""
    given = [values for _, _, values in extra if values is not None]
    return [r + tuple(v[r[0] - 1] if r[0] <= 6 else None for v in given) for r in rows]


PG_BASE = ["id", "i16", "i32", "i64", "dec38", "dec_tiny", "f8", "f4", "txt", "d", "ts", "tstz", "b", "by", "js"]
MY_BASE = ["id", "i8", "u64", "i64", "dec65", "f8", "f4", "txt", "vc", "d", "dt6", "ts6", "b", "bin", "bl", "js", "en"]


# engine -> (connection group, namespace, target prefix, modes, with the "bad" tables). One job run
# reads all three: "mariadb" is the MySQL source through MariaDB Connector/J (its secret passed as the
# OPS group); the job's default driver, MySQL Connector/J, gets every mode, MariaDB's the FULL one.
ENGINES = {
    "postgres": ("AFFILIATE", "torture", "PG", tuple(MODES), True),
    "mysql": ("PROGRAM360", "torture_my", "MY", tuple(MODES), True),
    "mariadb": ("OPS", "torture_maria", "MA", ("full",), False),
}
GROUP_ARGS = ["--OPS", "/etl/local/program360-mariadb"]


def registry(second: bool = False) -> dict:
    """Every engine's torture (and bad) tables; the second run leaves out APPEND and the bad ones."""
    tables = {}
    for group, ns, prefix, modes, bad in ENGINES.values():
        for t in modes:
            mode = MODES[t]
            for source, target in ((t, t.upper()), *([(f"bad_{t}", f"BAD_{t.upper()}")] if bad else [])):
                if second and (t == "append" or source.startswith("bad_")):
                    continue
                entry = {"ssmKey": group, "target_table": f"TORTURE.{prefix}_{target}", "operations": {"type": mode}}
                if mode != "APPEND":
                    entry["primary_key"] = "ID"
                if mode == "INCREMENTAL":
                    entry["timestamp_column"] = "UPDATED_AT"
                tables[f"{ns}.{source}"] = entry
    return tables


@pytest.fixture(scope="module")
def loaded(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fidelity")
    h.reset_target_schema("TORTURE")
    pg_gap = [(7 + i, *[None] * 8, ts.date(), None, ts) + (None,) * 3 for i, ts in enumerate(PG_GAP)]
    pg_rows = with_extra(with_texts(PG_ROWS, 8) + pg_gap, PG_EXTRA)
    my_rows = with_extra(with_texts(MY_ROWS, 7), MY_EXTRA)
    pg_cols = PG_BASE + [n for n, _, v in PG_EXTRA if v is not None]
    my_cols = MY_BASE + [n for n, _, v in MY_EXTRA if v is not None]
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS torture CASCADE; CREATE SCHEMA torture")
        for t in MODES:
            cur.execute(ddl(PG_DDL.format(t=t), PG_EXTRA))
            insert(cur, f"torture.{t}", pg_cols, pg_rows)
            cur.execute(PG_BAD[0].format(t=t))
            cur.execute(PG_BAD[1].format(t=t))
    with h.mysql_cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        for _, db, _, modes, bad in (ENGINES["mysql"], ENGINES["mariadb"]):
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
            cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
            for t in modes:
                cur.execute(ddl(MY_DDL.format(t=t), MY_EXTRA).replace("torture.", f"{db}."))
                insert(cur, f"{db}.{t}", my_cols, my_rows)
                if bad:
                    cur.execute(MY_BAD[0].format(t=t).replace("torture.", f"{db}."))
                    cur.execute(MY_BAD[1].format(t=t).replace("torture.", f"{db}."))
    first = h.run_job(tmp, registry(), *GROUP_ARGS, job_name="e2e-torture")
    # Second run (not APPEND): every row's timestamp moves, so INCREMENTAL and UPSERT rewrite every row.
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for t in MODES:
            if t != "append":
                cur.execute(f"UPDATE torture.{t} SET updated_at = '2026-02-01'")
    with h.mysql_cursor() as cur:
        for _, db, _, modes, _ in (ENGINES["mysql"], ENGINES["mariadb"]):
            for t in modes:
                if t != "append":
                    cur.execute(f"UPDATE {db}.{t} SET updated_at = '2026-02-01'")
    second = h.run_job(tmp, registry(second=True), *GROUP_ARGS, job_name="e2e-torture-2")
    return [first, second]


def torture_ok(runs) -> None:
    """Every torture table loaded in every run; only the bad tables failed."""
    for run in runs:
        statuses = h.summary(run)
        assert statuses, run.stdout[-3000:]
        for key, row in statuses.items():
            assert row["status"] == ("FAILED" if ".bad_" in key else "OK"), f"{key}: {run.stdout[-3000:]}"


def mysql_time_text(value: dt.timedelta) -> str:
    """MySQL's text of a TIME(6) value (a duration): [-]H:MM:SS.ffffff, hours beyond 24."""
    sign, value = ("-", -value) if value < dt.timedelta(0) else ("", value)
    seconds = value.days * 86400 + value.seconds
    return f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{value.microseconds:06d}"


# Source columns read as their PostgreSQL text: the target holds exactly that text (README "Type mapping").
PG_AS_TEXT = {"TTZ", "IV"}


def expected(engine: str, column: str, value):
    """The source value as the target must hold it (README "Type mapping")."""
    if value is None:
        return None
    if engine == "postgres":
        if column == "C5":
            return value.rstrip(" ")                # char(n): trailing blanks are not part of the value
        if column == "B1":
            return value == "1"                     # bit(1) is BOOLEAN
        return value
    if column == "JS":
        return json.loads(value)                    # MySQL returns JSON as text
    if column == "TS6":
        return value.replace(tzinfo=dt.UTC)         # TIMESTAMP read in UTC
    if column in ("D", "DT6") and isinstance(value, str) and value.startswith("0000-00-00"):
        return None                                 # zero dates load as NULL
    if column == "DUR":
        return mysql_time_text(value)
    if column in ("BT1", "B64"):
        number = int.from_bytes(value, "big")
        return bool(number) if column == "BT1" else number
    if column == "CH":
        return value.rstrip(" ")
    return value


def typed(value):
    """Exact comparison keys: the sign of zero and NaN are kept, JSON is parsed."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value, math.copysign(1.0, value))
    return h.norm(value)


IDS = {"postgres": "postgres", "mysql": "mysql-connectorj", "mariadb": "mysql-mariadb"}
CASES = [pytest.param(engine, mode, id=f"{IDS[engine]}-{mode}")
         for engine, (_, _, _, modes, _) in ENGINES.items() for mode in modes]


@pytest.mark.parametrize("engine, mode", CASES)
def test_every_value_survives(loaded, engine, mode):
    torture_ok(loaded)
    _, ns, prefix, _, _ = ENGINES[engine]
    if engine != "postgres":
        with h.mysql_cursor(ns) as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(f"SELECT * FROM {ns}.{mode} ORDER BY id")
            cols, src = [d[0].upper() for d in cur.description], list(cur.fetchall())
    else:
        with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
            cur.execute(f"SELECT * FROM torture.{mode} LIMIT 0")
            names = [d[0] for d in cur.description]
            # money as its number (locale-free), and the types that arrive as PostgreSQL's text.
            select = ", ".join(f"{n}::numeric AS {n}" if n == "m" else f"{n}::text AS {n}" if n.upper() in PG_AS_TEXT
                               else n for n in names)
            cur.execute(f"SELECT {select} FROM torture.{mode} ORDER BY id")
            cols, src = [d[0].upper() for d in cur.description], cur.fetchall()
    tgt = h.sf_rows(f"ETL_DB.TORTURE.{prefix}_{mode.upper()}", cols, '"ID"')
    variant = {"JS", "IA", "TA"} if engine == "postgres" else {"JS"}
    tgt = [tuple(json.loads(v) if cols[i] in variant and v is not None else v for i, v in enumerate(r)) for r in tgt]
    src = [tuple(expected("postgres" if engine == "postgres" else "mysql", cols[i], v) for i, v in enumerate(r))
           for r in src]
    assert len(src) == len(tgt)
    for s, t in zip(src, tgt, strict=True):
        assert tuple(map(typed, s)) == tuple(map(typed, t)), f"row {s[0]} differs"
    if engine == "postgres":                        # the ten skipped days arrived as themselves
        gap = [h.norm(r[cols.index("TSTZ")]) for r in tgt if 7 <= r[0] <= 16]
        assert gap == [h.norm(t) for t in PG_GAP]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_a_value_snowflake_cannot_hold_fails_its_table_naming_it(loaded, engine, mode):
    _, ns, prefix, _, _ = ENGINES[engine]
    bad = PG_BAD if engine == "postgres" else MY_BAD
    run = loaded[0]
    key = f"{ns}.bad_{mode}"
    assert h.summary(run)[key]["status"] == "FAILED"
    message = next(line for line in run.stdout.splitlines() if line.startswith(f"{key}: "))
    assert "nothing was loaded" in message
    for text in bad[2]:
        assert text in message, message
    assert h.sf_scalar("SELECT COUNT(*) FROM ETL_DB.information_schema.tables WHERE table_schema = 'TORTURE' "
                       f"AND table_name = '{prefix}_BAD_{mode.upper()}'") == 0
