"""Crash safety: SIGKILL the job at every step boundary of a table, run it again, compare.

Each (mode, kill point) pair has its own source table. One run loads them all; the sources
change; then runs are killed with each table at the point under test (four processes stand for
the 20 kills: every table of a process stops at its own point and the process dies once all are
there, tests/e2e/crash_at.py ``each``); finally one ordinary run recovers everything and each
target is compared with its source.
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from local import stack
from tests.e2e import helpers as h

MODES = {"incremental": ("INCREMENTAL", "ID", "UPDATED_AT"), "upsert": ("UPSERT", "ID", "UPDATED_AT"),
         "full": ("FULL", "ID", None), "append": ("APPEND", None, None)}
POINTS = ("extract", "stage", "copy", "transaction", "commit")
TABLES = [f"{m}_{p}" for m in MODES for p in POINTS]
JOB = "e2e-crash"
LEASE_SECONDS = 20
BASE = dt.datetime(2026, 6, 1, 8, 0, 0, 123456)


def registry(names) -> dict:
    out = {}
    for name in names:
        mode, pk, ts = MODES[name.split("_")[0]]
        entry = {"ssmKey": "AFFILIATE", "target_table": f"CRASH.{name.upper()}", "operations": {"type": mode}}
        if pk:
            entry["primary_key"] = pk
        if ts:
            entry["timestamp_column"] = ts
        out[f"crash.{name}"] = entry
    return out


def kill_plans() -> list[dict[str, str]]:
    """The 20 kills in 4 processes (crash_at.py ``each``): per mode, its "transaction" kill (one per
    process: it holds the lease table's lock) with four kills at points outside a transaction."""
    outside = [n for n in TABLES if not n.endswith("_transaction")]
    return [{f"{mode}_transaction": "transaction", **{n: n.split("_", 1)[1] for n in outside[i::len(MODES)]}}
            for i, mode in enumerate(MODES)]


def rows(name: str) -> list[tuple]:
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, v, updated_at FROM crash.{name} ORDER BY id, updated_at")
        return cur.fetchall()


def target(name: str) -> list[tuple]:
    return h.sf_query(f'SELECT "ID", "V", "UPDATED_AT" FROM ETL_DB.CRASH.{name.upper()} ORDER BY "ID", "UPDATED_AT"')


@pytest.fixture(scope="module")
def crashed(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    h.reset_target_schema("CRASH")
    h.recreate_pg_schema("crash", TABLES)
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for name in TABLES:
            cur.execute(f"INSERT INTO crash.{name} SELECT g, 'v' || g, %s + g * interval '1 second' "
                        f"FROM generate_series(1, 50) g", (BASE,))
    first = h.run_job(tmp, registry(TABLES), job_name=JOB)
    assert first.returncode == 0, first.stdout[-3000:]
    before = {name: rows(name) for name in TABLES if name.startswith("append")}
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for name in TABLES:
            cur.execute(f"UPDATE crash.{name} SET v = v || ' changed', updated_at = updated_at + interval '1 day' "
                        f"WHERE id BETWEEN 10 AND 14")
            cur.execute(f"INSERT INTO crash.{name} SELECT g, 'new' || g, %s + interval '2 days' + g * interval "
                        f"'1 microsecond' FROM generate_series(51, 55) g", (BASE,))

    def kill_run(plan: dict[str, str]):
        # LEASE_SECONDS: a lease outlives a renewal that waits for the lease table's lock (held by this
        # run's loads, and until the emulator rolls it back by a killed run's transaction, 10 s idle);
        # the recovery run waits for the killed runs' leases to expire (LEASE_WAIT_SECONDS).
        each = ",".join(f"crash.{name}={point}" for name, point in plan.items())
        return h.run_job(tmp, registry(TABLES), "--TABLES", ",".join(f"crash.{n}" for n in plan),
                         "--LEASE_SECONDS", str(LEASE_SECONDS), "--PARALLELISM", str(len(plan)), job_name=JOB,
                         timeout=400, launcher=["tests/e2e/crash_at.py", "each", each])

    plans = kill_plans()
    with ThreadPoolExecutor(max_workers=2) as pool:     # separate tables: the killed runs may overlap
        killed = {name: run for plan, run in zip(plans, pool.map(kill_run, plans), strict=True) for name in plan}
    # A transaction killed mid-way is detached; Snowflake rolls it back once idle (the local
    # emulator after ETL_FAKESNOW_DETACHED_SECONDS=10, see local/fakesnow_server.py): meanwhile the
    # recovery's lease claims wait for its lock, then for the dead runs' leases to expire.
    recovery = h.run_job(tmp, registry(TABLES), "--LEASE_WAIT_SECONDS", str(4 * LEASE_SECONDS), job_name=JOB)
    return before, killed, recovery


@pytest.mark.parametrize("name", TABLES)
def test_rerun_after_a_kill_makes_target_equal_source(crashed, name):
    before, killed, recovery = crashed
    assert killed[name].returncode == -signal.SIGKILL, killed[name].stdout[-2000:]
    assert "tables OK" not in killed[name].stdout, "the run was killed before its summary"
    result = h.summary(recovery)
    assert result[f"crash.{name}"]["status"] == "OK", recovery.stdout[-3000:]
    if not name.startswith("append"):
        h.assert_same_rows(rows(name), target(name), name)
        return
    # APPEND: each run appends what it read, atomically. A run killed before its commit appended
    # nothing; a run killed after its commit appended everything (and the rerun appends again).
    now = rows(name)
    runs = [before[name], now] + ([now] if name == "append_commit" else [])
    expected = sorted((r for run in runs for r in run), key=lambda r: (r[0], r[2]))
    h.assert_same_rows(expected, target(name), name)


def test_rerun_of_a_committed_run_changes_nothing(crashed, tmp_path):
    snapshot = {name: target(name) for name in TABLES if not name.startswith("append")}
    again = h.run_job(tmp_path, registry(snapshot), job_name=JOB)
    assert again.returncode == 0
    for name, old in snapshot.items():
        assert target(name) == old, name


def test_dead_runs_leave_no_staging_behind(crashed):
    """Files and staging tables of killed runs are removed by the next run of the same table."""
    s3 = stack.boto3_client("s3")
    left = [o["Key"] for o in s3.list_objects_v2(Bucket="etl-staging", Prefix=f"{JOB}/").get("Contents", [])]
    assert left == []
    stages = h.sf_query("SELECT TABLE_NAME FROM ETL_DB.INFORMATION_SCHEMA.TABLES "
                        "WHERE TABLE_SCHEMA = 'ETL_META' AND TABLE_NAME LIKE 'STAGE__CRASH%'")
    assert stages == []


if __name__ == "__main__":  # pragma: no cover - run one scenario by hand
    sys.exit(pytest.main([__file__, "-q"]))
