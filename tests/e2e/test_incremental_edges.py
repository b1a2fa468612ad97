"""INCREMENTAL at the edges: ties at the watermark, late commits, NULL timestamps, time zones,
microseconds, key gaps, composite keys, and updates that do not move the timestamp.

One module fixture runs the job twice over a set of scenario tables (PostgreSQL and MariaDB),
with the source servers and the job's process in non-UTC time zones, changing the sources in
between; each test then checks one scenario.
"""

from __future__ import annotations

import datetime as dt

import pytest

from local import stack
from tests.e2e import helpers as h

T = dt.datetime(2026, 5, 1, 10, 0, 0, 1)           # the watermark instant of the first run
UTC = dt.UTC


def ts_table(name: str, extra: str = "") -> str:
    return f"CREATE TABLE edge.{name} (id int PRIMARY KEY, v text, updated_at timestamp(6){extra})"


PG_SETUP = [
    "DROP SCHEMA IF EXISTS edge CASCADE", "CREATE SCHEMA edge",
    ts_table("ties"), ts_table("late"), ts_table("late0"), ts_table("nulls_inc"), ts_table("nulls_exc"),
    ts_table("nulls_fail"), ts_table("micro"), ts_table("silent"),
    "CREATE TABLE edge.gaps (id int PRIMARY KEY, v text)",
    "CREATE TABLE edge.comp (a int, b text, v text, updated_at timestamp(6), PRIMARY KEY (a, b))",
    "CREATE TABLE edge.tz_pg (id int PRIMARY KEY, wall timestamp(6), instant timestamptz(6))",
]


def rows_at(table: str, items: list[tuple]) -> str:
    values = ", ".join(
        "(" + ", ".join("NULL" if v is None else f"'{v}'" if not isinstance(v, int) else str(v) for v in row) + ")"
        for row in items)
    return f"INSERT INTO edge.{table} VALUES {values}"


def pg(*sqls: str) -> None:
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for sql in sqls:
            cur.execute(sql)


def my(*sqls: str) -> None:
    with h.mysql_cursor() as cur:
        for sql in sqls:
            cur.execute(sql)


def before_first_run() -> None:
    t = T
    pg(*PG_SETUP,
       rows_at("ties", [(1, "a", t - dt.timedelta(seconds=5)), (2, "b", t), (3, "c", t), (4, "d", t)]),
       rows_at("late", [(1, "a", t - dt.timedelta(minutes=5)), (2, "b", t)]),
       rows_at("late0", [(1, "a", t - dt.timedelta(minutes=5)), (2, "b", t)]),
       *[rows_at(n, [(1, "a", t), (2, "null ts", None), (3, "c", t - dt.timedelta(days=1))])
         for n in ("nulls_inc", "nulls_exc", "nulls_fail")],
       rows_at("micro", [(1, "a", t - dt.timedelta(microseconds=1)), (2, "b", t)]),
       rows_at("silent", [(1, "a", t - dt.timedelta(hours=1)), (2, "b", t)]),
       rows_at("gaps", [(1, "a"), (2, "b"), (1000, "c"), (5000, "d")]),
       rows_at("comp", [(1, "x", "a", t), (1, "y", "b", t), (2, "x", "c", t)]),
       # The same instants written three ways: the server's zone must not matter.
       "SET TIME ZONE 'America/New_York'",
       rows_at("tz_pg", [(1, "2026-05-01 10:00:00.000001", "2026-05-01 10:00:00.000001+00"),
                         (2, "2026-05-01 23:30:00.5", "2026-05-01 23:30:00.5-04"),
                         (3, "1969-12-31 23:59:59.999999", "2026-03-29 01:30:00+01")]))
    my("DROP DATABASE IF EXISTS edge", "CREATE DATABASE edge",
       "CREATE TABLE edge.tz_my (id int PRIMARY KEY, wall datetime(6), instant timestamp(6) NULL)",
       "SET time_zone = '+05:30'",
       "INSERT INTO edge.tz_my VALUES (1, '2026-05-01 10:00:00.000001', '2026-05-01 15:30:00.000001'), "
       "(2, '2026-05-02 05:00:00.5', '2026-05-02 05:00:00.5')")


def before_second_run() -> None:
    t = T
    pg(rows_at("ties", [(5, "e", t), (6, "f", t)]),                       # same instant, committed later
       rows_at("late", [(3, "late row", t - dt.timedelta(seconds=30))]),  # a long transaction commits late
       rows_at("late0", [(3, "late row", t - dt.timedelta(seconds=30))]),
       *[f"UPDATE edge.{n} SET v = 'changed' WHERE id = 2" for n in ("nulls_inc", "nulls_exc")],
       rows_at("micro", [(3, "one microsecond later", t + dt.timedelta(microseconds=1))]),
       "UPDATE edge.silent SET v = 'changed, timestamp not moved' WHERE id = 1",
       rows_at("gaps", [(20000, "new high key"), (4999, "filled a gap below the watermark")]),
       "UPDATE edge.comp SET v = 'changed', updated_at = updated_at + interval '1 hour' WHERE a = 1 AND b = 'y'",
       rows_at("comp", [(1, "z", "new", t + dt.timedelta(hours=1))]),
       "SET TIME ZONE 'Asia/Tokyo'",
       rows_at("tz_pg", [(4, "2026-05-03 00:00:00", "2026-05-03 00:00:00+09")]))
    my("SET time_zone = '-07:00'",
       "INSERT INTO edge.tz_my VALUES (3, '2026-05-03 00:00:00.25', '2026-05-03 00:00:00.25')")


def entry(group: str, target: str, pk, ts=None, **extra) -> dict:
    e = {"ssmKey": group, "target_table": f"EDGE.{target}", "primary_key": pk,
         "operations": {"type": "INCREMENTAL"}, **extra}
    if ts:
        e["timestamp_column"] = ts
    return e


TABLES = {
    "edge.ties": entry("AFFILIATE", "TIES", "ID", "UPDATED_AT"),
    "edge.late": entry("AFFILIATE", "LATE", "ID", "UPDATED_AT", lookback_seconds=60),
    "edge.late0": entry("AFFILIATE", "LATE0", "ID", "UPDATED_AT"),
    "edge.nulls_inc": entry("AFFILIATE", "NULLS_INC", "ID", "UPDATED_AT"),
    "edge.nulls_exc": entry("AFFILIATE", "NULLS_EXC", "ID", "UPDATED_AT", null_timestamps="exclude"),
    "edge.nulls_fail": entry("AFFILIATE", "NULLS_FAIL", "ID", "UPDATED_AT", null_timestamps="fail"),
    "edge.micro": entry("AFFILIATE", "MICRO", "ID", "UPDATED_AT", count_source=False),
    "edge.silent": entry("AFFILIATE", "SILENT", "ID", "UPDATED_AT"),
    "edge.gaps": entry("AFFILIATE", "GAPS", "ID"),
    "edge.comp": entry("AFFILIATE", "COMP", ["A", "B"], "UPDATED_AT"),
    "edge.tz_pg": entry("AFFILIATE", "TZ_PG", "ID", "INSTANT"),
    "edge.tz_my": entry("PROGRAM360", "TZ_MY", "ID", "INSTANT"),
}


@pytest.fixture(scope="module")
def runs(stack_env, mysql_driver, tmp_path_factory):
    """Both job runs, with the servers and the job's process outside UTC (MySQL tables only when
    parametrized with another MySQL driver)."""
    tmp = tmp_path_factory.mktemp("edges")
    tables = TABLES if mysql_driver is None else {k: v for k, v in TABLES.items() if v["ssmKey"] == "PROGRAM360"}
    h.reset_target_schema("EDGE")
    pg("ALTER DATABASE affiliate SET timezone TO 'America/New_York'")
    my("SET GLOBAL time_zone = '+05:30'")
    try:
        before_first_run()
        env = {"TZ": "Asia/Kolkata"}
        first = h.run_job(tmp, tables, job_name="e2e-edges-1", env=env)
        before_second_run()
        second = h.run_job(tmp, tables, job_name="e2e-edges-2", env=env)
    finally:
        pg("ALTER DATABASE affiliate RESET timezone")
        my("SET GLOBAL time_zone = SYSTEM")
    return h.summary(first), h.summary(second), second


def target_rows(table: str, cols: str = '"ID", "V", "UPDATED_AT"', order: str = '"ID"') -> list[tuple]:
    return h.sf_query(f"SELECT {cols} FROM ETL_DB.EDGE.{table} ORDER BY {order}")


def source_rows(table: str, cols: str = "id, v, updated_at", order: str = "id") -> list[tuple]:
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {cols} FROM edge.{table} ORDER BY {order}")
        return cur.fetchall()


def test_rows_sharing_the_watermark_are_not_lost(runs):
    first, second, _ = runs
    assert first["edge.ties"]["delta"] == 4
    # Read again: the 3 rows at the watermark instant, plus the 2 committed later at that instant.
    assert second["edge.ties"]["delta"] == 5
    h.assert_same_rows(source_rows("ties"), target_rows("TIES"), "ties")


def test_late_commit_is_caught_by_the_lookback_window(runs):
    _, second, _ = runs
    assert second["edge.late"]["delta"] == 2           # the late row and the row at the watermark
    h.assert_same_rows(source_rows("late"), target_rows("LATE"), "late")
    # Without a look-back window the late row (older than the watermark) is not seen.
    assert [r[0] for r in target_rows("LATE0")] == [1, 2]


def test_null_timestamps_follow_the_policy(runs):
    first, second, out = runs
    h.assert_same_rows(source_rows("nulls_inc"), target_rows("NULLS_INC"), "include")
    assert second["edge.nulls_inc"]["delta"] == 2      # the NULL row again, and the row at the watermark
    assert [r[0] for r in target_rows("NULLS_EXC")] == [1, 3]
    assert "table=edge.nulls_exc step=plan null_timestamps=1 policy=exclude" in out.stdout
    assert first["edge.nulls_fail"]["status"] == "FAILED"
    assert ("edge.nulls_fail: 1 row(s) have NULL in timestamp_column updated_at and null_timestamps is "
            "'fail'") in out.stdout


def test_microseconds_survive_and_bound_the_window(runs):
    _, second, _ = runs
    assert second["edge.micro"]["delta"] == 2          # T itself and T + 1 microsecond; not T - 1 microsecond
    assert second["edge.micro"]["source"] is None      # count_source=False: no whole-table count
    assert second["edge.ties"]["source"] == second["edge.ties"]["target_rows"]
    h.assert_same_rows(source_rows("micro"), target_rows("MICRO"), "micro")


def test_key_increments_with_gaps(runs):
    _, second, _ = runs
    assert second["edge.gaps"]["delta"] == 1
    rows = h.sf_query('SELECT "ID" FROM ETL_DB.EDGE.GAPS ORDER BY 1')
    # New keys above the highest loaded key are loaded; a key inserted below it is not (documented).
    assert [r[0] for r in rows] == [1, 2, 1000, 5000, 20000]


def test_composite_keys(runs):
    h.assert_same_rows(source_rows("comp", "a, b, v, updated_at", "a, b"),
                       target_rows("COMP", '"A", "B", "V", "UPDATED_AT"', '"A", "B"'), "composite")


def test_update_without_timestamp_change_is_not_detected(runs):
    rows = target_rows("SILENT")
    assert rows[0][1] == "a", "documented: timestamp mode cannot see an update that keeps the timestamp"
    assert source_rows("silent")[0][1] == "changed, timestamp not moved"


def test_time_zones_are_the_same_instants(runs):
    first, second, _ = runs
    assert first["edge.tz_pg"]["status"] == "OK"
    src = source_rows("tz_pg", "id, wall, instant")
    tgt = target_rows("TZ_PG", '"ID", "WALL", "INSTANT"')
    h.assert_same_rows(src, tgt, "postgres timestamp/timestamptz")
    assert all(r[2].tzinfo is not None for r in tgt), "timestamptz lands as TIMESTAMP_TZ"
    assert second["edge.tz_pg"]["delta"] == 2          # the new instant and the one at the watermark


@h.both_mysql_drivers
def test_mysql_time_zones_are_the_same_instants(runs):
    first, second, _ = runs
    assert first["edge.tz_my"]["status"] == "OK"
    with h.mysql_cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT id, wall, instant FROM edge.tz_my ORDER BY id")
        my_rows = [(i, w, v.replace(tzinfo=UTC)) for i, w, v in cur.fetchall()]
    assert my_rows[0][2] == dt.datetime(2026, 5, 1, 10, 0, 0, 1, tzinfo=UTC)
    h.assert_same_rows(my_rows, target_rows("TZ_MY", '"ID", "WALL", "INSTANT"'), "mysql DATETIME/TIMESTAMP")
    assert second["edge.tz_my"]["delta"] == 2          # the new instant and the one at the watermark
