"""Statements per table, and MERGE rewriting only rows that changed.

On Snowflake every statement is a round trip (50-300 ms), so the number of statements per table
decides a small table's cost. The job runs under tests/e2e/record_sql.py, which records every
statement with the thread that sent it; each table's statements from its lease claim to its lease
release are counted and held to upper bounds (docs/PERFORMANCE.md "Statements per table").

The same runs show that a re-read of unchanged rows (UPSERT reads every row each run, INCREMENTAL
re-reads the row at its watermark, or a whole window with ``lookback_seconds``) updates nothing:
RowsUpdated 0 read back from CloudWatch and in the load log line; one changed row counts 1.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

import glue_etl_job as g
from local import stack
from tests.e2e import helpers as h

LEASE = g.lease_sqls(g.fqn("ETL_DB", "ETL_META", g.LEASE_TABLE))
HISTORY = g.write_history_sql(g.fqn("ETL_DB", "ETL_META", g.HISTORY_TABLE))
ROWS = 20
KINDS = {  # table -> registry entry (besides ssmKey and target_table)
    "incr": {"operations": {"type": "INCREMENTAL"}, "primary_key": "ID", "timestamp_column": "UPDATED_AT"},
    "incr_key": {"operations": {"type": "INCREMENTAL"}, "primary_key": "ID"},
    "lookback": {"operations": {"type": "INCREMENTAL"}, "primary_key": "ID", "timestamp_column": "UPDATED_AT",
                 "lookback_seconds": 10 * 365 * 86400},
    "upsert": {"operations": {"type": "UPSERT"}, "primary_key": "ID", "timestamp_column": "UPDATED_AT"},
    "full": {"operations": {"type": "FULL"}, "primary_key": "ID"},
    "trunc": {"operations": {"type": "TRUNCATE_INSERT"}, "primary_key": "ID"},
    "append": {"operations": {"type": "APPEND"}},
}
# Upper bounds, lease claim to lease release, once the target exists (issue 11's targets: an
# INCREMENTAL table with a delta in at most 10, with no delta in at most 5), plus the load history
# row (issue 16): one MERGE in the load transaction, or after the release when nothing was loaded;
# FULL's state write and history row share a transaction of their own (BEGIN, COMMIT).
BOUNDS = {"incr": 11, "incr_key": 11, "lookback": 11, "upsert": 11, "full": 12, "trunc": 12, "append": 11}
NO_DELTA = 4
# A table's first run: no lease row yet (seed, claim again), no target yet (the plan read is asked
# again without its count, CREATE TABLE).
FIRST_RUN_EXTRA = 4


def registry() -> dict:
    return {f"stmt.{t}": {"ssmKey": "AFFILIATE", "target_table": f"STMT.{t.upper()}", **entry}
            for t, entry in KINDS.items()}


def segments(record: Path) -> dict[str, list[list[str]]]:
    """Per target: for each time it was loaded, its statements from the claim to the release."""
    by_thread: dict[str, list[dict]] = defaultdict(list)
    for line in record.read_text().splitlines():
        stmt = json.loads(line)
        if stmt["thread"] != "lease-heartbeat":
            by_thread[stmt["thread"]].append(stmt)
    out: dict[str, list[list[str]]] = defaultdict(list)
    for stmts in by_thread.values():
        current, open_span = None, False
        for stmt in stmts:
            target = (stmt["params"] or {}).get("target")
            if stmt["sql"] == LEASE["claim"] and not (open_span and target == current):
                current, open_span = target, True
                out[current].append([])
            if not open_span:
                # A run that loaded nothing writes its history row after the release: it counts too.
                if stmt["sql"] == HISTORY and (stmt["params"] or {}).get("target") == current:
                    out[current][-1].append(stmt["sql"])
                continue
            out[current][-1].append(stmt["sql"])
            span = out[current][-1]
            released = stmt["sql"] == LEASE["release"] or (
                stmt["sql"] == "COMMIT" and any(s == LEASE["hold_release"] for s in span))
            if released:
                open_span = False
    return out


def counts(record: Path) -> dict[str, int]:
    found = segments(record)
    assert set(found) == {f"STMT.{t.upper()}" for t in KINDS}, found.keys()
    assert all(len(v) == 1 for v in found.values())
    return {target.split(".")[1].lower(): len(spans[0]) for target, spans in found.items()}


def load_line(proc, table: str) -> dict[str, str]:
    line = next(x for x in proc.stdout.splitlines() if f"table={table} step=load " in x)
    return dict(re.findall(r"(\w+)=(\S+)", line))


@pytest.fixture(scope="module")
def runs(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stmt")
    h.reset_target_schema("STMT")
    h.recreate_pg_schema("stmt", KINDS)
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for t in KINDS:
            cur.execute(f"INSERT INTO stmt.{t} SELECT g, CASE g WHEN 1 THEN '' WHEN 2 THEN NULL ELSE 'v' || g END, "
                        f"timestamp '2026-05-01 10:00:00' + g * interval '1 second' FROM generate_series(1, {ROWS}) g")
    out = {}
    for n in (1, 2, 3):
        if n == 3:                       # one row changes: '' becomes NULL, stamped later
            with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
                for t in KINDS:
                    cur.execute(f"UPDATE stmt.{t} SET v = NULL, updated_at = timestamp '2026-05-02 10:00:00' "
                                f"WHERE id = 1")
        record = tmp / f"sql-{n}.jsonl"
        proc = h.run_job(tmp, registry(), job_name=f"e2e-stmt-{n}", launcher=["tests/e2e/record_sql.py", str(record)])
        assert proc.returncode == 0, proc.stdout[-4000:]
        out[n] = (proc, counts(record), record)
    return out


def test_statements_per_table_are_bounded(runs):
    first, second, third = (runs[n][1] for n in (1, 2, 3))
    print("\nstatements from lease claim to release (first run, unchanged source, one row changed):")
    for t in KINDS:
        print(f"  {t:9} {KINDS[t]['operations']['type']:16} {first[t]:3} {second[t]:3} {third[t]:3}")
    for t, bound in BOUNDS.items():
        assert first[t] <= bound + FIRST_RUN_EXTRA, (t, first[t])
        assert third[t] <= bound, (t, third[t])
    # An unchanged source: INCREMENTAL by key finds no delta and touches nothing.
    assert h.summary(runs[2][0])["stmt.incr_key"]["delta"] == 0
    assert second["incr_key"] <= NO_DELTA
    # INCREMENTAL with a delta (the row at the watermark, read again) stays within 11.
    assert h.summary(runs[2][0])["stmt.incr"]["delta"] == 1
    assert second["incr"] <= 11 and third["incr"] <= 11


def test_every_target_equals_its_source(runs):
    for t in KINDS:
        if t not in ("append", "incr_key"):
            h.assert_table_equal("postgres", "affiliate", f"stmt.{t}", f"ETL_DB.STMT.{t.upper()}", "id")
    # INCREMENTAL by key alone sees new keys only (README): row 1's change is not read.
    assert h.sf_query('SELECT "V" FROM ETL_DB.STMT.INCR_KEY WHERE "ID" = 1') == [("",)]


@pytest.mark.parametrize("table", ["upsert", "incr", "lookback"])
def test_a_reread_of_unchanged_rows_updates_none_and_a_changed_row_counts_one(runs, table):
    second, third = runs[2][0], runs[3][0]
    key = f"stmt.{table}"
    reread = {"upsert": ROWS, "incr": 1, "lookback": ROWS}[table]
    assert h.summary(second)[key]["delta"] == reread
    assert h.metric("e2e-stmt-2", key, "RowsUpdated") == 0
    assert h.metric("e2e-stmt-2", key, "RowsInserted") == 0
    assert (load_line(second, key)["inserted"], load_line(second, key)["updated"]) == ("0", "0")
    # Row 1 went from '' to NULL: a change MERGE must see (IS DISTINCT FROM), and the only one.
    assert h.metric("e2e-stmt-3", key, "RowsUpdated") == 1
    assert h.metric("e2e-stmt-3", key, "RowsInserted") == 0
    assert load_line(third, key)["updated"] == "1"
    assert h.sf_query(f'SELECT "V" FROM ETL_DB.STMT.{table.upper()} WHERE "ID" = 1') == [(None,)]
    assert h.sf_query(f'SELECT "V" FROM ETL_DB.STMT.{table.upper()} WHERE "ID" = 2') == [(None,)]


def test_each_runs_staging_table_is_its_own_temporary_table_and_is_dropped(runs):
    """Another session cannot see a temporary table at all, so a query from outside proves nothing:
    the recorded statements show each table's own CREATE TEMPORARY TABLE and its DROP."""
    created, dropped = [], []
    for path in (runs[n][2] for n in (1, 2, 3)):
        for line in path.read_text().splitlines():
            sql = json.loads(line)["sql"]
            if m := re.match(r'CREATE TEMPORARY TABLE ("ETL_DB"\."ETL_META"\."STAGE__STMT__\w+")', sql):
                created.append(m[1])
            elif m := re.match(r'DROP TABLE IF EXISTS ("ETL_DB"\."ETL_META"\."STAGE__STMT__\w+")$', sql):
                dropped.append(m[1])
    assert len(created) == len(set(created)) >= 3 * (len(KINDS) - 1)     # a name per run and table
    assert sorted(created) == sorted(dropped)
