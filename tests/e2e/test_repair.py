"""REPAIR (issue 15 item 3): drift put straight into the torture targets (every type of the fidelity tables) -
a row deleted, a row added, one value changed in every column, the subtle changes of test_verify, an update
the timestamp mode missed - is reported key by key and repaired; the
target then equals what a fresh load of its source gives, value by value, and a second VERIFY reports 0.
The delete guard stops a repair that would delete too much; a soft-deletes table keeps its marked rows;
SIGKILL inside REPAIR's transaction leaves the target as it was, after its COMMIT as repaired.
Both engines run in the same job processes (one job run serves every table)."""

from __future__ import annotations

import time

import pytest

from local import stack
from tests.e2e import helpers as h
from tests.e2e.test_fidelity import typed
from tests.e2e.test_verify import create_torture_tables, put_drift, reported, target_types

JOB = "e2e-repair"
SOURCES = {"PG": ("AFFILIATE", "postgres"), "MY": ("PROGRAM360", "mysql")}


def entry(prefix: str, name: str, mode: str = "INCREMENTAL", **over) -> dict:
    e = {"ssmKey": SOURCES[prefix][0], "target_table": f"REPAIR.{prefix}_{name.upper()}", "primary_key": "ID",
         "timestamp_column": "UPDATED_AT", "operations": {"type": mode}}
    e.update(over)
    return e


def registry(*names: str) -> dict:
    """Tables by short name: PG/MY drift and ref (torture columns), PG soft, guard and crash (id, v, updated_at)."""
    every = {"PG_drift": ("repair.drift", entry("PG", "drift")), "MY_drift": ("repairmy.drift", entry("MY", "drift")),
             "PG_ref": ("repair.ref", entry("PG", "ref", "FULL")),
             "MY_ref": ("repairmy.ref", entry("MY", "ref", "FULL")),
             "PG_soft": ("repair.soft", entry("PG", "soft", deletes="soft")),
             "PG_guard": ("repair.guard", entry("PG", "guard")), "PG_crash": ("repair.crash", entry("PG", "crash"))}
    return {key: e for n, (key, e) in every.items() if n in names}


def run(tmp, name: str, *names: str, extra: tuple = (), launcher=None):
    return h.run_job(tmp, registry(*names), *extra, job_name=f"{JOB}-{name}", launcher=launcher)


def sf(target: str) -> list[tuple]:
    cols = list(target_types(target))
    return h.sf_rows(f"ETL_DB.{target}", cols, '"ID"')


def pg(sql: str, params=None) -> None:
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute(sql, params)


@pytest.fixture(scope="module")
def loaded(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("repair")
    h.reset_target_schema("REPAIR")
    rows = create_torture_tables("repair", "repairmy", ["drift"])
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for t in ("soft", "guard", "crash"):
            cur.execute(f"CREATE TABLE repair.{t} (id int PRIMARY KEY, v text, updated_at timestamp(6))")
            cur.execute(f"INSERT INTO repair.{t} SELECT g, 'v' || g, TIMESTAMP '2026-01-01' + g * INTERVAL "
                        f"'1 second' FROM generate_series(1, 20) g")
    tables = ("PG_drift", "MY_drift", "PG_soft", "PG_guard", "PG_crash")
    first = run(tmp, "load", *tables)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    return tmp, rows


def test_repair_reloads_exactly_the_drift_and_the_target_equals_a_fresh_load(loaded):
    tmp, rows = loaded
    different = {"PG": put_drift("PG", "REPAIR.PG_DRIFT", "repair.drift"),
                 "MY": put_drift("MY", "REPAIR.MY_DRIFT", "repairmy.drift")}
    # soft: a row deleted at the source is marked by the load; a value changed in the target is drift.
    pg("DELETE FROM repair.soft WHERE id = 20")
    h.sf_execute("UPDATE ETL_DB.REPAIR.PG_SOFT SET V = 'drift' WHERE ID = 5")
    # guard: 5 rows the source never had, 20% of the 25 target rows: more than max_delete_fraction 0.1.
    extra = ", ".join(f"({i}, 'x')" for i in range(100, 105))
    h.sf_execute(f"INSERT INTO ETL_DB.REPAIR.PG_GUARD (ID, V) VALUES {extra}")
    guard_before = sf("REPAIR.PG_GUARD")

    repair = run(tmp, "repair", "PG_drift", "MY_drift", "PG_soft", "PG_guard", extra=("--REPAIR", "true"))
    out = repair.stdout
    assert repair.returncode == 1, out[-4000:] + repair.stderr[-2000:]        # the guarded table failed
    status = {k: v["status"] for k, v in h.summary(repair).items()}
    assert status == {"repair.drift": "OK", "repairmy.drift": "OK", "repair.soft": "OK", "repair.guard": "FAILED"}, \
        "\n".join(line for line in out.splitlines() if "repair" in line and "step=" in line)[-6000:]
    for prefix, key in (("PG", "repair.drift"), ("MY", "repairmy.drift")):
        found = reported(repair, key)
        assert found == {"missing_in_target": {2}, "extra_in_target": {999}, "different": different[prefix]}, found
        n = 2 + len(different[prefix])
        assert f"{key}: VERIFY {n} mismatched of {rows[prefix]} rows (missing 1, extra 1" in out
        # every key read again; the missing and different rows written, the extra one deleted
        assert (f"{key}: REPAIR {n} key(s): {n - 1} row(s) written from the source, 1 deleted; "
                f"the repaired ranges now match") in out, out[-4000:]
        assert h.metric(f"{JOB}-repair", key, "RepairedRows") == n
    assert "repair.soft: VERIFY 1 mismatched of 19 rows (missing 0, extra 0, different 1)" in out
    assert "repair.soft: REPAIR 1 key(s): 1 row(s) written from the source, 0 deleted" in out
    assert ("REPAIR: repair.guard: 5 of the 25 rows of REPAIR.PG_GUARD would be deleted (20.0%), more than "
            "max_delete_fraction 0.1; nothing was repaired.") in out
    assert sf("REPAIR.PG_GUARD") == guard_before                          # the refused repair wrote nothing

    # A fresh load of each source (FULL into REF) is what the repaired target must hold, value by value.
    pg("CREATE TABLE repair.ref (LIKE repair.drift INCLUDING ALL); INSERT INTO repair.ref SELECT * FROM repair.drift")
    with h.mysql_cursor() as cur:
        cur.execute("CREATE TABLE repairmy.ref LIKE repairmy.drift")
        cur.execute("INSERT INTO repairmy.ref SELECT * FROM repairmy.drift")
    again = run(tmp, "verify", "PG_drift", "MY_drift", "PG_soft", "PG_ref", "MY_ref", extra=("--VERIFY", "true"))
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    for prefix, key in (("PG", "repair.drift"), ("MY", "repairmy.drift")):
        assert f"{key}: VERIFY 0 mismatched of {rows[prefix]} rows" in again.stdout
        repaired, fresh = sf(f"REPAIR.{prefix}_DRIFT"), sf(f"REPAIR.{prefix}_REF")
        assert len(repaired) == len(fresh) == rows[prefix]
        for a, b in zip(repaired, fresh, strict=True):
            assert tuple(map(typed, a)) == tuple(map(typed, b)), f"{prefix} row {a[0]} differs from a fresh load"
    assert "repair.soft: VERIFY 0 mismatched of 19 rows" in again.stdout     # its marked row is not drift
    soft = h.sf_query('SELECT "ID", "V", "_DELETED_AT" IS NOT NULL FROM ETL_DB.REPAIR.PG_SOFT ORDER BY "ID"')
    assert soft == [(i, f"v{i}", i == 20) for i in range(1, 21)]


def repair_rows(job: str) -> list[tuple]:
    """REPAIR's own history rows of the job's runs (RUN_ID '<run>/repair')."""
    return h.sf_query(f'SELECT "MODE", "STATUS", "LOADED", "ROWS_INSERTED" + "ROWS_UPDATED", "ROWS_DELETED", '
                      f'"WATERMARK_BEFORE" = "WATERMARK_AFTER" FROM ETL_DB.ETL_META.ETL_LOAD_HISTORY '
                      f'WHERE "JOB_NAME" = \'{job}\' AND "RUN_ID" LIKE \'%/repair\' ORDER BY "STARTED_AT"')


def crash_run(tmp, point: str):
    return run(tmp, f"crash-{point}", "PG_crash", extra=("--REPAIR", "true", "--LEASE_SECONDS", "5"),
               launcher=["tests/e2e/crash_at.py", point, "repair.crash"])


def test_a_kill_inside_the_repair_leaves_the_target_as_before_and_after_its_commit_as_repaired(loaded):
    tmp, _ = loaded
    h.sf_execute("DELETE FROM ETL_DB.REPAIR.PG_CRASH WHERE ID = 3",
                 "UPDATE ETL_DB.REPAIR.PG_CRASH SET V = 'drift' WHERE ID = 7",
                 "INSERT INTO ETL_DB.REPAIR.PG_CRASH (ID, V) VALUES (50, 'extra')")
    drifted = sf("REPAIR.PG_CRASH")
    history = {p: repair_rows(f"{JOB}-crash-{p}") for p in ("repair", "repaired")}     # earlier runs on this stack
    killed = crash_run(tmp, "repair")
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-2000:]
    assert "step=repair " not in killed.stdout            # killed inside the step, before it ended
    # The killed session's open transaction is rolled back once detached (ETL_FAKESNOW_DETACHED_SECONDS=10,
    # as Snowflake aborts a transaction whose session is gone), and its lease (5 s) has expired.
    time.sleep(12)
    assert sf("REPAIR.PG_CRASH") == drifted               # as before: nothing of the repair is visible
    assert repair_rows(f"{JOB}-crash-repair") == history["repair"]          # nor its history row

    killed = crash_run(tmp, "repaired")
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-2000:]
    assert "step=repair " in killed.stdout and "reloaded=2 deleted=1" in killed.stdout
    assert repair_rows(f"{JOB}-crash-repaired") == [*history["repaired"], ("REPAIR", "OK", True, 2, 1, True)]
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("SELECT id, v, updated_at FROM repair.crash ORDER BY id")
        source = cur.fetchall()
    assert [r[:2] for r in source] == [(i, f"v{i}") for i in range(1, 21)]
    h.assert_same_rows(source, h.sf_rows("ETL_DB.REPAIR.PG_CRASH", ["ID", "V", "UPDATED_AT"], '"ID"'), "as after")
