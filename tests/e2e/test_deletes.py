"""Hard deletes for INCREMENTAL and UPSERT (issue 15 item 4), both source engines.

One load; then the sources lose rows. A run killed right after its DELETE (PostgreSQL only: the delete step
runs in Snowflake, the engine does not matter there) leaves the target as before. One run then applies the
deletes: 'delete' removes them (INCREMENTAL), 'soft' marks them (UPSERT), and the guard refuses the table whose
source was emptied, writing nothing. A last run sees a soft-deleted key come back live, and an unchanged
table cost one aggregate per side.
"""

from __future__ import annotations

import datetime as dt
import signal
import time

import pytest

from tests.e2e import helpers as h

BASE = dt.datetime(2026, 3, 1, 9, 0, 0, 250000)
COLS = ["ID", "V", "N", "UPDATED_AT"]
DDL = {"postgres": "id int PRIMARY KEY, v text, n numeric(12,2), updated_at timestamp(6)",
       "mysql": "id INT PRIMARY KEY, v VARCHAR(50), n DECIMAL(12,2), updated_at DATETIME(6)"}
PREFIX = {"postgres": "PG", "mysql": "MY"}
HARD_GONE, SOFT_GONE = [5, 17, 33, 40], [2, 20, 30]    # 4 of 40 = max_delete_fraction 0.1 exactly: allowed
CRASH_GONE = list(range(1, 11))


def tables(engine: str) -> list[str]:
    return ["hard", "soft", "guard"] + (["crash"] if engine == "postgres" else [])


def registry(engine: str) -> dict:
    group, p = ("AFFILIATE", "PG") if engine == "postgres" else ("PROGRAM360", "MY")
    base = {"ssmKey": group, "primary_key": "ID", "timestamp_column": "UPDATED_AT"}
    out = {
        "deletes.hard": {**base, "operations": {"type": "INCREMENTAL"}, "deletes": "delete"},
        "deletes.soft": {**base, "operations": {"type": "UPSERT"}, "deletes": "soft"},
        "deletes.guard": {**base, "operations": {"type": "INCREMENTAL"}, "deletes": "delete"},
        "deletes.crash": {**base, "operations": {"type": "INCREMENTAL"}, "deletes": "delete",
                          "max_delete_fraction": 0.5},
    }
    return {k: {**v, "target_table": f"DELETES.{p}_{k.split('.')[1].upper()}"} for k, v in out.items()
            if k.split(".")[1] in tables(engine)}


def source_sql(engine: str, *sqls: str) -> None:
    h.source_sql(engine, "deletes", *sqls)


def source_rows(engine: str, name: str) -> list[tuple]:
    if engine == "postgres":
        return h.pg_rows("affiliate", f"deletes.{name}", "id")[1]
    return h.mysql_rows("deletes", name, "id")[1]


def target(engine: str, name: str) -> str:
    return f"ETL_DB.DELETES.{PREFIX[engine]}_{name.upper()}"


def target_rows(engine: str, name: str, where: str = "TRUE") -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in COLS)
    return h.sf_query(f'SELECT {cols} FROM {target(engine, name)} WHERE {where} ORDER BY "ID"')


def ts(seconds: int) -> str:
    return (BASE + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")


def run(tmp, engine: str, *extra: str, launcher=None):
    return h.run_job(tmp, registry(engine), *extra, job_name=f"e2e-deletes-{PREFIX[engine]}", launcher=launcher)


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def runs(request, stack_env, tmp_path_factory):
    engine = request.param
    tmp = tmp_path_factory.mktemp(f"deletes-{engine}")
    h.reset_target_schema("DELETES")
    h.fresh_source_schema(engine, "deletes")
    for name in tables(engine):
        values = ", ".join(f"({i}, 'v{i}', {i}.25, '{ts(i)}')" for i in range(1, 41))
        source_sql(engine, f"CREATE TABLE deletes.{name} ({DDL[engine]})",
                   f"INSERT INTO deletes.{name} VALUES {values}")
    first = run(tmp, engine)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    loaded = {name: target_rows(engine, name) for name in tables(engine)}

    def gone(name: str, keys: list[int]) -> str:
        return f"DELETE FROM deletes.{name} WHERE id IN ({', '.join(map(str, keys))})"
    source_sql(engine, gone("hard", HARD_GONE), gone("soft", SOFT_GONE), "DELETE FROM deletes.guard",
               f"UPDATE deletes.hard SET v = 'changed', updated_at = '{ts(86_400)}' WHERE id = 8",
               f"INSERT INTO deletes.hard VALUES (41, 'new', 41.25, '{ts(2 * 86_400)}')",
               *([gone("crash", CRASH_GONE)] if engine == "postgres" else []))
    out = {"engine": engine, "loaded": loaded}
    if engine == "postgres":
        # A short lease: the killed run's lease has expired when the next run starts; its open transaction
        # is rolled back once idle (local/fakesnow_server.py: ETL_FAKESNOW_DETACHED_SECONDS=10).
        out["killed"] = run(tmp, engine, "--TABLES", "deletes.crash", "--LEASE_SECONDS", "5",
                            launcher=["tests/e2e/crash_at.py", "deleted", "deletes.crash"])
        time.sleep(12)
        out["after_kill"] = target_rows(engine, "crash")
    out["second"] = run(tmp, engine)
    out["rows_deleted"] = h.metric(f"e2e-deletes-{PREFIX[engine]}", "deletes.hard", "RowsDeleted")
    out["soft_marked"] = h.sf_query(f'SELECT "ID", "_DELETED_AT" FROM {target(engine, "soft")} '
                                    f'WHERE "_DELETED_AT" IS NOT NULL ORDER BY "ID"')
    # Two keys come back: 20 with new values, 30 exactly as it was (only its mark differs from the target).
    source_sql(engine, f"INSERT INTO deletes.soft VALUES (20, 'back', 20.5, '{ts(3 * 86_400)}')",
               f"INSERT INTO deletes.soft VALUES (30, 'v30', 30.25, '{ts(30)}')")
    out["third"] = run(tmp, engine, "--TABLES", "deletes.soft,deletes.hard")
    return out


def test_delete_removes_the_source_deletes_and_is_counted(runs):
    engine, second = runs["engine"], runs["second"]
    result = h.summary(second)["deletes.hard"]
    assert result["status"] == "OK", second.stdout[-3000:]
    assert result["deleted"] == len(HARD_GONE) and result["target_rows"] == 37
    h.assert_same_rows(source_rows(engine, "hard"), target_rows(engine, "hard"), "hard after deletes")
    assert runs["rows_deleted"] == len(HARD_GONE)                       # read back from CloudWatch


def test_soft_marks_the_source_deletes_and_keeps_the_live_rows_equal(runs):
    engine, second = runs["engine"], runs["second"]
    result = h.summary(second)["deletes.soft"]
    assert result["status"] == "OK" and result["deleted"] == len(SOFT_GONE), second.stdout[-3000:]
    assert [k for k, _ in runs["soft_marked"]] == SOFT_GONE
    assert all(isinstance(at, dt.datetime) and at.tzinfo is not None for _, at in runs["soft_marked"])
    # the marked row that stays deleted keeps the values it had (the others came back, see below)
    kept = [r for r in runs["loaded"]["soft"] if r[0] == 2]
    assert target_rows(engine, "soft", '"_DELETED_AT" IS NOT NULL') == kept


def test_a_soft_deleted_key_that_comes_back_is_live_again(runs):
    engine, third = runs["engine"], runs["third"]
    assert third.returncode == 0, third.stdout[-3000:]
    assert h.summary(third)["deletes.soft"]["deleted"] == 0
    h.assert_same_rows(source_rows(engine, "soft"), target_rows(engine, "soft", '"_DELETED_AT" IS NULL'), "soft")
    still = h.sf_query(f'SELECT "ID", "_DELETED_AT" FROM {target(engine, "soft")} WHERE "_DELETED_AT" IS NOT NULL')
    assert still == [r for r in runs["soft_marked"] if r[0] == 2]        # the stamp of the first run, kept
    # An unchanged key set costs one aggregate per side and fetches no key.
    hard = [line for line in third.stdout.splitlines() if "table=deletes.hard" in line and "step=deletes" in line]
    assert len(hard) == 1 and "deletes=0 " in hard[0] and "ranges_queried=1 leaves=0" in hard[0], hard


def test_guard_refuses_an_emptied_source_and_writes_nothing(runs):
    engine, second = runs["engine"], runs["second"]
    assert second.returncode == 1
    assert h.summary(second)["deletes.guard"]["status"] == "FAILED"
    name = f"DELETES.{PREFIX[engine]}_GUARD"
    assert f"deletes.guard: at least 40 of the 40 rows of {name} would be deleted (100.0%), more than " \
           f"max_delete_fraction 0.1; nothing was written." in second.stdout
    assert target_rows(engine, "guard") == runs["loaded"]["guard"]


@pytest.mark.parametrize("runs", ["postgres"], indirect=True)      # once: the delete step runs in Snowflake
def test_a_kill_during_the_delete_leaves_the_target_as_before_then_the_rerun_applies_it(runs):
    assert runs["killed"].returncode == -signal.SIGKILL, runs["killed"].stdout[-3000:]
    assert "tables OK" not in runs["killed"].stdout
    assert runs["after_kill"] == runs["loaded"]["crash"]
    result = h.summary(runs["second"])["deletes.crash"]
    assert result["status"] == "OK" and result["deleted"] == len(CRASH_GONE)
    h.assert_same_rows(source_rows("postgres", "crash"), target_rows("postgres", "crash"), "crash")
