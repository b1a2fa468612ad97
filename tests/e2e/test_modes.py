"""Every load mode, from PostgreSQL and from MariaDB, run twice with source changes in between.

The job runs as a subprocess exactly as Glue runs it, both engines' tables in one run; afterwards
each Snowflake target is compared with its source value by value, and the metrics are read back
from CloudWatch. MySQL sources are read through the job's default driver (MySQL Connector/J) and,
for three of the modes, through MariaDB Connector/J too (``ENGINES``).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal

import pytest

from local import stack
from tests.e2e import helpers as h

NASTY = ['say "hi"', 'a,b,"c"', "line1\nline2", "crlf\r\nend", "back\\slash", "trailing\\", "tab\there",
         "héllo wörld 中文 🎉", "", None, "  padded  ", "\\N", "NULL", "'single'", '""', "x" * 5000]
BASE = dt.datetime(2026, 3, 1, 12, 0, 0)
MODES = {  # table -> (mode, primary key, timestamp column)
    "full_t": ("FULL", "ID", None),
    "trunc_t": ("TRUNCATE_INSERT", "ID", None),
    "upsert_t": ("UPSERT", "ID", "UPDATED_AT"),
    "append_t": ("APPEND", None, None),
    "incr_t": ("INCREMENTAL", "ID", "UPDATED_AT"),
    "incr_pk_t": ("INCREMENTAL", "ID", None),
    "lines_t": ("UPSERT", ["ORDER_ID", "LINE_NO"], "UPDATED_AT"),
}
ROWS = 300


def make_rows(start: int, count: int, rnd: random.Random) -> list[tuple]:
    rows = []
    for i in range(start, start + count):
        rows.append((
            i, i // 3, i % 3,                                   # id, order_id, line_no
            f"name-{i}", Decimal(rnd.randint(-10**9, 10**9)) / 100, rnd.random() * 1e6,
            i % 2 == 0, dt.date(1899 + i % 250, 1 + i % 12, 1 + i % 28), NASTY[i % len(NASTY)],
            BASE + dt.timedelta(seconds=i, microseconds=(i * 7919) % 1_000_000),
        ))
    return rows


PG_DDL = """CREATE TABLE e2e.{t} (id bigint {pk}, order_id int NOT NULL, line_no int NOT NULL, name text,
  amount numeric(12,2), score double precision, active boolean, born date, note text,
  updated_at timestamp(6) {comp})"""
MY_DDL = """CREATE TABLE e2e.{t} (id bigint {pk}, order_id int NOT NULL, line_no int NOT NULL, name text,
  amount decimal(12,2), score double, active tinyint(1), born date, note longtext,
  updated_at datetime(6) {comp})"""
COLS = "id, order_id, line_no, name, amount, score, active, born, note, updated_at"


def ddl(template: str, table: str) -> str:
    if table == "lines_t":
        return template.format(t=table, pk="NOT NULL", comp=", PRIMARY KEY (order_id, line_no)")
    if table == "append_t":
        return template.format(t=table, pk="", comp="")
    return template.format(t=table, pk="PRIMARY KEY", comp="")


# engine -> (connection group, namespace, target prefix, tables). "mariadb" is the MySQL source read
# through MariaDB Connector/J: its secret (/etl/local/program360-mariadb, local.seed) is passed as the
# OPS group, so one job run reads PostgreSQL and MySQL through both drivers. The job's default driver
# (Connector/J, Glue's) gets every mode; MariaDB Connector/J the INCREMENTAL table whose delta must be
# pushed down (a wrong dialect reads every row), a composite-key UPSERT and a FULL.
ENGINES = {
    "postgres": ("AFFILIATE", "e2e", "PG", tuple(MODES)),
    "mysql": ("PROGRAM360", "e2e_my", "MY", tuple(MODES)),
    "mariadb": ("OPS", "e2e_maria", "MA", ("full_t", "incr_t", "lines_t")),
}
GROUP_ARGS = ["--OPS", "/etl/local/program360-mariadb"]


def create_sources() -> None:
    rnd = random.Random(7)
    rows = make_rows(1, ROWS, rnd)
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS e2e CASCADE; CREATE SCHEMA e2e")
        for t in MODES:
            cur.execute(ddl(PG_DDL, t))
            cur.executemany(f"INSERT INTO e2e.{t} ({COLS}) VALUES ({', '.join(['%s'] * 10)})", rows)
    with h.mysql_cursor() as cur:
        for engine in ("mysql", "mariadb"):
            db, tables = ENGINES[engine][1], ENGINES[engine][3]
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
            cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
            for t in tables:
                cur.execute(ddl(MY_DDL, t).replace("e2e.", f"{db}."))
                cur.executemany(f"INSERT INTO {db}.{t} ({COLS}) VALUES ({', '.join(['%s'] * 10)})", rows)


def change_sources(engine: str) -> None:
    """Update 10 rows (newer timestamp), add 20, and delete 5 where the mode can see deletes."""
    new = make_rows(ROWS + 1, 20, random.Random(11))
    later = BASE + dt.timedelta(days=1, microseconds=1)
    ns, tables = ENGINES[engine][1], ENGINES[engine][3]

    def apply(cur):
        for t in tables:
            cur.execute(f"UPDATE {ns}.{t} SET name = CONCAT('changed-', name), note = %s, updated_at = %s "
                        f"WHERE id BETWEEN 100 AND 109", ('chänged "again",\n\\', later))
            cur.executemany(f"INSERT INTO {ns}.{t} ({COLS}) VALUES ({', '.join(['%s'] * 10)})", new)
            if MODES[t][0] in ("FULL", "TRUNCATE_INSERT"):
                cur.execute(f"DELETE FROM {ns}.{t} WHERE id BETWEEN 200 AND 204")

    if engine == "postgres":
        with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
            apply(cur)
        return
    with h.mysql_cursor() as cur:
        apply(cur)


def source_rows(engine: str, table: str, order_by: str = "id") -> tuple[list[str], list[tuple]]:
    ns = ENGINES[engine][1]
    if engine == "postgres":
        return h.pg_rows("affiliate", f"{ns}.{table}", order_by)
    return h.mysql_rows(ns, f"{ns}.{table}", order_by)


def key(engine: str, table: str) -> str:
    return f"{ENGINES[engine][1]}.{table}"


def registry() -> dict:
    tables = {}
    for engine, (group, _, prefix, names) in ENGINES.items():
        for t in names:
            mode, pk, ts = MODES[t]
            entry = {"ssmKey": group, "target_table": f"E2E.{prefix}_{t.upper()}", "operations": {"type": mode}}
            if pk:
                entry["primary_key"] = pk
            if ts:
                entry["timestamp_column"] = ts
            tables[key(engine, t)] = entry
    return tables


def target(engine: str, table: str) -> str:
    return f"ETL_DB.E2E.{ENGINES[engine][2]}_{table.upper()}"


def check_equal(engine: str, table: str) -> int:
    order = "order_id, line_no" if table == "lines_t" else "id"
    database = "affiliate" if engine == "postgres" else ENGINES[engine][1]
    return h.assert_table_equal("postgres" if engine == "postgres" else "mysql", database, key(engine, table),
                                target(engine, table), order)


def outcome(fn, *args):
    """fn's value, or its assertion's message: checked by the test, not in the fixture."""
    try:
        return fn(*args)
    except AssertionError as exc:
        return f"FAILED: {exc}"


@pytest.fixture(scope="module")
def runs(stack_env, tmp_path_factory):
    """Two runs, each loading every engine's tables: the second after the sources changed."""
    tmp = tmp_path_factory.mktemp("modes")
    h.reset_target_schema("E2E")
    create_sources()
    first = h.run_job(tmp, registry(), *GROUP_ARGS, job_name="e2e-modes-1")
    out = {"first": first, "first_equal": {}, "watermark": {}, "appended_first": {}, "keyed_first": {}}
    for engine, (_, _, _, tables) in ENGINES.items():
        out["first_equal"].update({(engine, t): outcome(check_equal, engine, t) for t in tables})
        if "incr_t" in tables:
            out["watermark"][engine] = h.sf_scalar(f'SELECT MAX("UPDATED_AT") FROM {target(engine, "incr_t")}')
        for name, table in (("appended_first", "append_t"), ("keyed_first", "incr_pk_t")):
            if table in tables:
                out[name][engine] = source_rows(engine, table)[1]
        change_sources(engine)
    out["second"] = h.run_job(tmp, registry(), *GROUP_ARGS, job_name="e2e-modes-2")
    return out


@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_mode_twice(engine, runs):
    tables = ENGINES[engine][3]
    first, second = runs["first"], runs["second"]
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    result = h.summary(first)
    assert {t: result[key(engine, t)]["status"] for t in tables} == {t: "OK" for t in tables}
    for t in tables:
        assert runs["first_equal"][(engine, t)] == ROWS, t
        assert result[key(engine, t)]["diff"] == 0

    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    result = h.summary(second)
    assert all(result[key(engine, t)]["status"] == "OK" for t in tables), second.stdout[-3000:]

    for t in tables:
        mode = MODES[t][0]
        if mode != "APPEND" and t != "incr_pk_t":
            expected = ROWS + 20 - (5 if mode in ("FULL", "TRUNCATE_INSERT") else 0)
            assert check_equal(engine, t) == expected, t

    if "incr_pk_t" in tables:
        # INCREMENTAL by key alone sees new keys only; updates need a timestamp_column (documented).
        cols, keyed_now = source_rows(engine, "incr_pk_t")
        h.assert_same_rows(runs["keyed_first"][engine] + [r for r in keyed_now if r[0] > ROWS],
                           h.sf_rows(target(engine, "incr_pk_t"), cols, '"ID"'), "INCREMENTAL by key")
        assert result[key(engine, "incr_pk_t")]["delta"] == 20          # keys beyond the highest loaded key

    if "append_t" in tables:
        # APPEND inserted every row read, again: the target holds both runs' reads.
        cols, appended_second = source_rows(engine, "append_t")
        tgt = h.sf_rows(target(engine, "append_t"), cols, '"ID", "UPDATED_AT"')
        expected_rows = sorted(runs["appended_first"][engine] + appended_second, key=lambda r: (r[0], r[9]))
        h.assert_same_rows(expected_rows, tgt, "APPEND after two runs")

    # INCREMENTAL read only the delta: rows at or beyond the old watermark.
    _, rows = source_rows(engine, "incr_t")
    expected_delta = sum(1 for r in rows if r[9] >= runs["watermark"][engine].replace(tzinfo=None))
    assert expected_delta == 10 + 20 + 1        # changed, new, and the row at the watermark itself
    incr = key(engine, "incr_t")
    assert result[incr]["delta"] == expected_delta
    assert result[incr]["source"] == ROWS + 20

    # Metrics, read back from CloudWatch.
    assert h.metric("e2e-modes-2", incr, "FilteredRecordCount") == expected_delta
    assert h.metric("e2e-modes-2", incr, "SourceRecordCount") == ROWS + 20
    assert h.metric("e2e-modes-2", incr, "TargetRecordCount") == ROWS + 20
    assert h.metric("e2e-modes-2", incr, "RowDifference") == 0
    assert h.metric("e2e-modes-2", incr, "RowsInserted") == 20
    # 10 rows changed; the row at the old watermark is read again unchanged and MERGE leaves it alone.
    assert h.metric("e2e-modes-2", incr, "RowsUpdated") == 10
    assert h.metric("e2e-modes-2", key(engine, "full_t"), "Success") == 1
    assert h.metric("e2e-modes-2", key(engine, "full_t"), "DurationSeconds") > 0


def test_the_mariadb_tables_are_read_through_mariadb_connector_j(stack_env):
    """The secret passed as the OPS group (GROUP_ARGS) is the MySQL one with MariaDB's driver class."""
    ssm = stack.boto3_client("ssm")
    mariadb, mysql = (json.loads(ssm.get_parameter(Name=n, WithDecryption=True)["Parameter"]["Value"])
                      for n in (GROUP_ARGS[1], "/etl/local/program360"))
    assert mariadb["driver"] == h.MYSQL_DRIVERS["mariadb"] == "org.mariadb.jdbc.Driver"
    assert mysql.get("driver") is None                     # the job's default: MySQL Connector/J
    assert {k: v for k, v in mariadb.items() if k != "driver"} == mysql
