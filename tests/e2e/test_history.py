"""Load history (ETL_LOAD_HISTORY) and freshness (LagSeconds), read back after real job runs.

Three runs. Run 1 loads four tables. Run 2: ``ok`` has new rows and a new column (a delta and an
ALTER), ``same`` has nothing new, ``bad`` names a column the source lacks (FAILED before its plan
read), ``skip``'s lease is held by another holder (SKIPPED), ``drift`` loads a new row and VERIFY
finds the row deleted from its target meanwhile (DRIFT). Each table's history row is compared
with the run's summary and log; LagSeconds is read back from CloudWatch for the loaded table and
for the failed and skipped ones (from the watermark the state committed). Run 3 is SIGKILLed inside
``ok``'s load transaction, right after its history row was sent: no row claims that load.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import time

import pytest

import glue_etl_job as g
from local import stack
from tests.e2e import helpers as h

HISTORY = g.fqn("ETL_DB", "ETL_META", g.HISTORY_TABLE)
STATE = g.fqn("ETL_DB", "ETL_META", g.STATE_TABLE)
LEASE = g.fqn("ETL_DB", "ETL_META", g.LEASE_TABLE)
TABLES = ("ok", "same", "bad", "skip", "drift")
COLUMNS = ("RUN_ID", "JOB_NAME", "TABLE_KEY", "TARGET_TABLE", "MODE", "STATUS", "LOADED", "ROWS_READ",
           "ROWS_INSERTED", "ROWS_UPDATED", "WATERMARK_COLUMN", "WATERMARK_BEFORE", "WATERMARK_AFTER",
           "DDL_APPLIED", "ERROR", "SECONDS")
# The source's timestamps: an hour ago (UTC wall clock, as the job's watermarks are) and later.
BASE = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(tzinfo=None, microsecond=250000)


def registry(bad_column: bool = False) -> dict:
    out = {}
    for t in TABLES:
        entry = {"ssmKey": "AFFILIATE", "target_table": f"HIST.{t.upper()}", "operations": {"type": "INCREMENTAL"},
                 "primary_key": "ID"}
        if t != "same":
            entry["timestamp_column"] = "UPDATED_AT"
        if t == "bad" and bad_column:
            entry["columns"] = ["ID", "UPDATED_AT", "NO_SUCH_COLUMN"]
        if t == "drift":
            entry["verify"] = True
        out[f"hist.{t}"] = entry
    return out


def history(job: str) -> dict[str, dict]:
    rows = h.sf_query(f"SELECT {', '.join(COLUMNS)} FROM {HISTORY} WHERE JOB_NAME = '{job}' ORDER BY TABLE_KEY")
    out = {}
    for row in rows:
        rec = dict(zip(COLUMNS, row, strict=True))
        assert rec["TABLE_KEY"] not in out, f"two history rows for {rec['TABLE_KEY']} in {job}"
        out[rec["TABLE_KEY"]] = rec
    return out


def state_watermark(target: str) -> str | None:
    return h.sf_scalar(f"SELECT MAX(\"WATERMARK\") FROM {STATE} WHERE \"TARGET_TABLE\" = '{target}'")


def load_line(proc, table: str) -> dict[str, str]:
    line = next(x for x in proc.stdout.splitlines() if f"table={table} step=load " in x)
    return {**dict(re.findall(r"(\w+)=(\S+)", line)), "text": line}


def lag_within(value: float | None, watermark: str, before: dt.datetime, after: dt.datetime) -> None:
    """The published lag is the worker's UTC clock at publishing minus the watermark read as UTC."""
    wm = dt.datetime.strptime(watermark, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.UTC)
    assert value is not None
    assert (before - wm).total_seconds() - 1 <= value <= (after - wm).total_seconds() + 1, (value, watermark)


@pytest.fixture(scope="module")
def runs(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hist")
    h.reset_target_schema("HIST")
    h.recreate_pg_schema("hist", TABLES)
    h.sf_execute(g.create_history_table_sql(HISTORY), f"DELETE FROM {HISTORY} WHERE JOB_NAME LIKE 'e2e-hist-%'")
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for t in TABLES:
            cur.execute(f"INSERT INTO hist.{t} SELECT g, 'v' || g, %s + g * interval '1 second' "
                        f"FROM generate_series(1, 10) g", (BASE,))
    first = h.run_job(tmp, registry(), job_name="e2e-hist-1")
    assert first.returncode == 0, first.stdout[-3000:]

    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE hist.ok ADD COLUMN extra int")
        cur.execute("INSERT INTO hist.ok SELECT g, 'new' || g, %s + g * interval '1 minute', g "
                    "FROM generate_series(11, 13) g", (BASE,))
        cur.execute("UPDATE hist.ok SET v = 'changed', updated_at = %s + interval '5 minutes' WHERE id = 2", (BASE,))
        cur.execute("INSERT INTO hist.drift VALUES (11, 'new', %s + interval '1 hour')", (BASE,))
    h.sf_execute('DELETE FROM ETL_DB.HIST.DRIFT WHERE "ID" = 3')     # drift VERIFY must find
    # Another run's live lease on HIST.SKIP (its row exists since run 1, released).
    h.sf_execute(f"UPDATE {LEASE} SET \"HOLDER\" = 'another-run', "
                 f"\"ACQUIRED_AT\" = CURRENT_TIMESTAMP()::TIMESTAMP_NTZ, "
                 f"\"EXPIRES_AT\" = DATEADD(SECOND, 600, CURRENT_TIMESTAMP()::TIMESTAMP_NTZ) "
                 f"WHERE \"TARGET_TABLE\" = 'HIST.SKIP'")
    started = dt.datetime.now(dt.UTC)
    try:
        second = h.run_job(tmp, registry(bad_column=True), job_name="e2e-hist-2")
    finally:
        h.sf_execute(f"UPDATE {LEASE} SET \"HOLDER\" = NULL, \"ACQUIRED_AT\" = NULL, \"EXPIRES_AT\" = NULL "
                     f"WHERE \"TARGET_TABLE\" = 'HIST.SKIP'")
    ended = dt.datetime.now(dt.UTC)
    assert second.returncode == 1, second.stdout[-3000:]

    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO hist.ok SELECT g, 'late' || g, %s + interval '10 minutes', g "
                    "FROM generate_series(14, 15) g", (BASE,))
    killed = h.run_job(tmp, registry(), "--TABLES", "hist.ok", "--LEASE_SECONDS", "5", job_name="e2e-hist-3",
                       launcher=["tests/e2e/crash_at.py", "history", "hist.ok"])
    # The killed session's transaction is detached; Snowflake rolls it back once idle (the
    # emulator after ETL_FAKESNOW_DETACHED_SECONDS=10, local/fakesnow_server.py).
    time.sleep(12)
    return first, second, (started, ended), killed


def test_history_rows_match_the_run_summary(runs):
    first, second, _, _ = runs
    for proc, job in ((first, "e2e-hist-1"), (second, "e2e-hist-2")):
        rows, summary = history(job), h.summary(proc)
        assert set(rows) == set(summary) == {f"hist.{t}" for t in TABLES}
        assert len({r["RUN_ID"] for r in rows.values()}) == 1
        for key, r in rows.items():
            s = summary[key]
            assert (r["STATUS"], r["MODE"], r["TARGET_TABLE"], r["ROWS_READ"]) == \
                (s["status"], s["mode"], s["target"], s["delta"]), key
            if r["ERROR"] is not None:
                assert r["ERROR"] in proc.stdout, key           # the summary's error line, word for word
            assert r["SECONDS"] >= 0
    # Run 1: every table loaded, and created its target.
    for key, r in history("e2e-hist-1").items():
        assert (r["STATUS"], r["LOADED"], r["ROWS_READ"], r["ROWS_INSERTED"], r["ROWS_UPDATED"]) == \
            ("OK", True, 10, 10, 0), key
        assert r["WATERMARK_BEFORE"] is None, key
        assert r["DDL_APPLIED"] == f'CREATE TABLE IF NOT EXISTS "ETL_DB"."HIST"."{key[5:].upper()}" ' \
            f'("ID" NUMBER(10,0), "V" VARCHAR, "UPDATED_AT" TIMESTAMP_NTZ(6))', key


def test_a_loaded_table_records_its_rows_watermarks_and_ddl(runs):
    _, second, _, _ = runs
    before, now = history("e2e-hist-1")["hist.ok"], history("e2e-hist-2")["hist.ok"]
    line = load_line(second, "hist.ok")
    assert (now["STATUS"], now["LOADED"], now["ERROR"]) == ("OK", True, None)
    # The load's own counts (its log line and CloudWatch): rows 2 (changed), 10 (at the watermark) and 11-13.
    assert (now["ROWS_READ"], now["ROWS_INSERTED"], now["ROWS_UPDATED"]) == (5, 3, 1)
    assert (str(now["ROWS_INSERTED"]), str(now["ROWS_UPDATED"])) == (line["inserted"], line["updated"])
    assert h.metric("e2e-hist-2", "hist.ok", "RowsInserted") == 3
    assert now["WATERMARK_COLUMN"] == "UPDATED_AT"
    assert now["WATERMARK_BEFORE"] == before["WATERMARK_AFTER"] == g.timestamp_text(BASE + dt.timedelta(seconds=10))
    assert now["WATERMARK_AFTER"] == g.timestamp_text(BASE + dt.timedelta(minutes=13))
    assert f"watermark={now['WATERMARK_AFTER']}" in line["text"]
    assert now["DDL_APPLIED"] == 'ALTER TABLE "ETL_DB"."HIST"."OK" ADD COLUMN "EXTRA" NUMBER(10,0)'


def test_tables_that_loaded_nothing_record_no_change(runs):
    _, second, _, _ = runs
    rows = history("e2e-hist-2")
    committed = {t: history("e2e-hist-1")[f"hist.{t}"]["WATERMARK_AFTER"] for t in ("same", "bad", "skip")}
    same, bad, skip = rows["hist.same"], rows["hist.bad"], rows["hist.skip"]
    assert (same["STATUS"], same["LOADED"], same["ROWS_READ"], same["ROWS_INSERTED"]) == ("OK", False, 0, 0)
    assert same["WATERMARK_BEFORE"] == same["WATERMARK_AFTER"] == committed["same"] == "10"
    assert bad["STATUS"] == "FAILED" and bad["LOADED"] is False
    assert "'columns' column NO_SUCH_COLUMN does not exist in the source table" in bad["ERROR"]
    assert skip["STATUS"] == "SKIPPED" and skip["LOADED"] is False
    assert "is being loaded by run another-run" in skip["ERROR"]
    for t, r in (("bad", bad), ("skip", skip)):
        assert (r["ROWS_INSERTED"], r["ROWS_UPDATED"], r["DDL_APPLIED"]) == (0, 0, None), t
        # Read from the state row although the run never reached its plan read.
        assert (r["WATERMARK_COLUMN"], r["WATERMARK_BEFORE"], r["WATERMARK_AFTER"]) == \
            ("UPDATED_AT", committed[t], committed[t]), t
        assert state_watermark(f"HIST.{t.upper()}") == committed[t]


def test_a_drift_found_by_verify_sets_the_status_of_the_loads_row(runs):
    _, second, _, _ = runs
    r = history("e2e-hist-2")["hist.drift"]
    assert (r["STATUS"], r["LOADED"], r["ROWS_READ"], r["ROWS_INSERTED"]) == ("DRIFT", True, 2, 1)
    assert r["ERROR"] == "VERIFY 1 mismatched of 11 rows (missing 1, extra 0, different 0)"
    assert f"hist.drift: {r['ERROR']}" in second.stdout
    assert r["WATERMARK_AFTER"] == state_watermark("HIST.DRIFT") == g.timestamp_text(BASE + dt.timedelta(hours=1))


def test_lag_seconds_is_published_for_loaded_failed_and_skipped_tables(runs):
    _, second, (started, ended), _ = runs
    rows = history("e2e-hist-2")
    for t in ("ok", "bad", "skip"):
        lag_within(h.metric("e2e-hist-2", f"hist.{t}", "LagSeconds"), rows[f"hist.{t}"]["WATERMARK_AFTER"],
                   started, ended)
    # ``same`` is INCREMENTAL by an integer key: its watermark has no age, no lag is published.
    assert h.metric("e2e-hist-2", "hist.same", "LagSeconds") is None
    assert h.metric("e2e-hist-2", "hist.same", "Success") == 1


def test_no_history_row_claims_a_load_killed_before_its_commit(runs):
    _, _, _, killed = runs
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:]
    assert "step=load" not in killed.stdout
    assert history("e2e-hist-3") == {}
    # The state did not move either: the history row and the watermark share the transaction.
    assert state_watermark("HIST.OK") == history("e2e-hist-2")["hist.ok"]["WATERMARK_AFTER"]
