"""Every load mode, from PostgreSQL and from MariaDB, run twice with source changes in between.

The job runs as a subprocess exactly as Glue runs it; afterwards each Snowflake target is
compared with its source value by value, and the metrics are read back from CloudWatch.
"""

from __future__ import annotations

import datetime as dt
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


def create_sources() -> None:
    rnd = random.Random(7)
    rows = make_rows(1, ROWS, rnd)
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS e2e CASCADE; CREATE SCHEMA e2e")
        for t in MODES:
            cur.execute(ddl(PG_DDL, t))
            cur.executemany(f"INSERT INTO e2e.{t} ({COLS}) VALUES ({', '.join(['%s'] * 10)})", rows)
    with h.mysql_cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS e2e")
        cur.execute("CREATE DATABASE e2e CHARACTER SET utf8mb4")
        for t in MODES:
            cur.execute(ddl(MY_DDL, t))
            cur.executemany(f"INSERT INTO e2e.{t} ({COLS}) VALUES ({', '.join(['%s'] * 10)})", rows)


def change_sources(engine: str) -> None:
    """Update 10 rows (newer timestamp), add 20, and delete 5 where the mode can see deletes."""
    new = make_rows(ROWS + 1, 20, random.Random(11))
    later = BASE + dt.timedelta(days=1, microseconds=1)

    def apply(cur):
        for t in MODES:
            cur.execute(f"UPDATE e2e.{t} SET name = CONCAT('changed-', name), note = %s, updated_at = %s "
                        f"WHERE id BETWEEN 100 AND 109", ('chänged "again",\n\\', later))
            cur.executemany(f"INSERT INTO e2e.{t} ({COLS}) VALUES ({', '.join(['%s'] * 10)})", new)
            if MODES[t][0] in ("FULL", "TRUNCATE_INSERT"):
                cur.execute(f"DELETE FROM e2e.{t} WHERE id BETWEEN 200 AND 204")

    if engine == "postgres":
        with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
            apply(cur)
        return
    with h.mysql_cursor() as cur:
        apply(cur)


def source_rows(engine: str, table: str, order_by: str = "id") -> tuple[list[str], list[tuple]]:
    if engine == "postgres":
        return h.pg_rows("affiliate", f"e2e.{table}", order_by)
    return h.mysql_rows("e2e", f"e2e.{table}", order_by)


def registry() -> dict:
    tables = {}
    for engine, group, ns, prefix in (("postgres", "AFFILIATE", "e2e", "PG"), ("mysql", "PROGRAM360", "e2e", "MY")):
        for t, (mode, pk, ts) in MODES.items():
            key = f"{ns}.{t}"
            entry = {"ssmKey": group, "target_table": f"E2E.{prefix}_{t.upper()}", "operations": {"type": mode}}
            if pk:
                entry["primary_key"] = pk
            if ts:
                entry["timestamp_column"] = ts
            tables[(engine, key)] = entry
    return tables


def split(tables: dict) -> dict[str, dict]:
    """The same source keys exist in both engines: one registry per engine."""
    out: dict[str, dict] = {"postgres": {}, "mysql": {}}
    for (engine, key), entry in tables.items():
        out[engine][key] = entry
    return out


def target(engine: str, table: str) -> str:
    return f'ETL_DB.E2E.{"PG" if engine == "postgres" else "MY"}_{table.upper()}'


def check_equal(engine: str, table: str) -> int:
    key = "order_id, line_no" if table == "lines_t" else "id"
    database = "affiliate" if engine == "postgres" else "e2e"
    return h.assert_table_equal(engine, database, f"e2e.{table}", target(engine, table), key)


@pytest.fixture(scope="module")
def sources(stack_env, mysql_driver):   # fresh sources and targets for each MySQL driver
    h.reset_target_schema("E2E")
    create_sources()


@pytest.mark.parametrize("engine, mysql_driver", h.engines_and_drivers(), indirect=["mysql_driver"],
                         scope="module")
def test_every_mode_twice(engine, sources, tmp_path):
    tables = split(registry())[engine]
    job1, job2 = f"e2e-modes-{engine}-1", f"e2e-modes-{engine}-2"

    first = h.run_job(tmp_path, tables, job_name=job1)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    result = h.summary(first)
    assert {k: v["status"] for k, v in result.items()} == {f"e2e.{t}": "OK" for t in MODES}
    for t in MODES:
        assert check_equal(engine, t) == ROWS
        assert result[f"e2e.{t}"]["diff"] == 0

    old_watermark = h.sf_scalar(f'SELECT MAX("UPDATED_AT") FROM {target(engine, "incr_t")}')
    _, appended_first = source_rows(engine, "append_t")
    _, keyed_first = source_rows(engine, "incr_pk_t")
    change_sources(engine)
    second = h.run_job(tmp_path, tables, job_name=job2)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    result = h.summary(second)
    assert all(v["status"] == "OK" for v in result.values()), second.stdout[-3000:]

    for t, (mode, _, _) in MODES.items():
        if mode != "APPEND" and t != "incr_pk_t":
            expected = ROWS + 20 - (5 if mode in ("FULL", "TRUNCATE_INSERT") else 0)
            assert check_equal(engine, t) == expected, t

    # INCREMENTAL by key alone sees new keys only; updates need a timestamp_column (documented).
    cols, keyed_now = source_rows(engine, "incr_pk_t")
    h.assert_same_rows(keyed_first + [r for r in keyed_now if r[0] > ROWS],
                       h.sf_rows(target(engine, "incr_pk_t"), cols, '"ID"'), "INCREMENTAL by key")

    # APPEND inserted every row read, again: the target holds both runs' reads.
    cols, appended_second = source_rows(engine, "append_t")
    tgt = h.sf_rows(target(engine, "append_t"), cols, '"ID", "UPDATED_AT"')
    expected_rows = sorted(appended_first + appended_second, key=lambda r: (r[0], r[9]))
    h.assert_same_rows(expected_rows, tgt, "APPEND after two runs")

    # INCREMENTAL read only the delta: rows at or beyond the old watermark.
    _, rows = source_rows(engine, "incr_t")
    expected_delta = sum(1 for r in rows if r[9] >= old_watermark.replace(tzinfo=None))
    assert expected_delta == 10 + 20 + 1        # changed, new, and the row at the watermark itself
    assert result["e2e.incr_t"]["delta"] == expected_delta
    assert result["e2e.incr_pk_t"]["delta"] == 20          # keys beyond the highest loaded key
    assert result["e2e.incr_t"]["source"] == ROWS + 20

    # Metrics, read back from CloudWatch.
    assert h.metric(job2, "e2e.incr_t", "FilteredRecordCount") == expected_delta
    assert h.metric(job2, "e2e.incr_t", "SourceRecordCount") == ROWS + 20
    assert h.metric(job2, "e2e.incr_t", "TargetRecordCount") == ROWS + 20
    assert h.metric(job2, "e2e.incr_t", "RowDifference") == 0
    assert h.metric(job2, "e2e.incr_t", "RowsInserted") == 20
    # 10 rows changed; the row at the old watermark is read again unchanged and MERGE leaves it alone.
    assert h.metric(job2, "e2e.incr_t", "RowsUpdated") == 10
    assert h.metric(job2, "e2e.full_t", "Success") == 1
    assert h.metric(job2, "e2e.full_t", "DurationSeconds") > 0
