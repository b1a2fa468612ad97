"""Hard deletes for INCREMENTAL and UPSERT (issue 15 item 4), both source engines.

One load; then the sources lose rows. A run killed right after its DELETE (PostgreSQL only: the
delete step runs in Snowflake, the engine does not matter there) leaves the target as before. One
run then applies the deletes: 'delete' removes them (INCREMENTAL), 'soft' marks them (UPSERT), and
the guard refuses the table whose source was emptied, writing nothing. A last run sees a
soft-deleted key come back live, and an unchanged table cost one aggregate per side. Every run but
the killed one loads both engines' tables.
"""

from __future__ import annotations

import datetime as dt
import signal
import time

import pytest

from local import stack
from tests.e2e import helpers as h

BASE = dt.datetime(2026, 3, 1, 9, 0, 0, 250000)
COLS = ["ID", "V", "N", "UPDATED_AT"]
DDL = {"postgres": "id int PRIMARY KEY, v text, n numeric(12,2), updated_at timestamp(6)",
       "mysql": "id INT PRIMARY KEY, v VARCHAR(50), n DECIMAL(12,2), updated_at DATETIME(6)"}
PREFIX = {"postgres": "PG", "mysql": "MY"}
HARD_GONE, SOFT_GONE = [5, 17, 33, 40], [2, 20, 30]    # 4 of 40 = max_delete_fraction 0.1 exactly: allowed
CRASH_GONE = list(range(1, 11))


ENGINES = {"postgres": ("AFFILIATE", "deletes"), "mysql": ("PROGRAM360", "deletes_my")}  # group, namespace
JOB = "e2e-deletes"


def tables(engine: str) -> list[str]:
    return ["hard", "soft", "guard"] + (["crash"] if engine == "postgres" else [])


def key(engine: str, name: str) -> str:
    return f"{ENGINES[engine][1]}.{name}"


def registry() -> dict:
    """Both engines' tables: every run but the killed one loads them together."""
    out = {}
    for engine, (group, _) in ENGINES.items():
        base = {"ssmKey": group, "primary_key": "ID", "timestamp_column": "UPDATED_AT"}
        kinds = {
            "hard": {**base, "operations": {"type": "INCREMENTAL"}, "deletes": "delete"},
            "soft": {**base, "operations": {"type": "UPSERT"}, "deletes": "soft"},
            "guard": {**base, "operations": {"type": "INCREMENTAL"}, "deletes": "delete"},
            "crash": {**base, "operations": {"type": "INCREMENTAL"}, "deletes": "delete", "max_delete_fraction": 0.5},
        }
        out |= {key(engine, name): {**kinds[name], "target_table": f"DELETES.{PREFIX[engine]}_{name.upper()}"}
                for name in tables(engine)}
    return out


def source_sql(engine: str, *sqls: str) -> None:
    if engine == "postgres":
        with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
            for sql in sqls:
                cur.execute(sql)
    else:
        with h.mysql_cursor(ENGINES[engine][1]) as cur:
            for sql in sqls:
                cur.execute(sql)


def source_rows(engine: str, name: str) -> list[tuple]:
    if engine == "postgres":
        return h.pg_rows("affiliate", f"deletes.{name}", "id")[1]
    return h.mysql_rows(ENGINES[engine][1], name, "id")[1]


def target(engine: str, name: str) -> str:
    return f"ETL_DB.DELETES.{PREFIX[engine]}_{name.upper()}"


def target_rows(engine: str, name: str, where: str = "TRUE") -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in COLS)
    return h.sf_query(f'SELECT {cols} FROM {target(engine, name)} WHERE {where} ORDER BY "ID"')


def ts(seconds: int) -> str:
    return (BASE + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")


def run(tmp, *extra: str, launcher=None):
    return h.run_job(tmp, registry(), *extra, job_name=JOB, launcher=launcher)


def create_sources() -> None:
    source_sql("postgres", "DROP SCHEMA IF EXISTS deletes CASCADE", "CREATE SCHEMA deletes")
    with h.mysql_cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS deletes_my")
        cur.execute("CREATE DATABASE deletes_my CHARACTER SET utf8mb4")
    for engine, (_, ns) in ENGINES.items():
        for name in tables(engine):
            values = ", ".join(f"({i}, 'v{i}', {i}.25, '{ts(i)}')" for i in range(1, 41))
            source_sql(engine, f"CREATE TABLE {ns}.{name} ({DDL[engine]})", f"INSERT INTO {ns}.{name} VALUES {values}")


def delete_at_the_sources() -> None:
    def gone(engine: str, name: str, keys: list[int]) -> str:
        return f"DELETE FROM {key(engine, name)} WHERE id IN ({', '.join(map(str, keys))})"
    for engine in ENGINES:
        source_sql(engine, gone(engine, "hard", HARD_GONE), gone(engine, "soft", SOFT_GONE),
                   f"DELETE FROM {key(engine, 'guard')}",
                   f"UPDATE {key(engine, 'hard')} SET v = 'changed', updated_at = '{ts(86_400)}' WHERE id = 8",
                   f"INSERT INTO {key(engine, 'hard')} VALUES (41, 'new', 41.25, '{ts(2 * 86_400)}')",
                   *([gone(engine, "crash", CRASH_GONE)] if engine == "postgres" else []))


@pytest.fixture(scope="module")
def runs(stack_env, tmp_path_factory):
    """Four runs, each loading both engines' tables but the killed one (PostgreSQL's deletes.crash alone)."""
    tmp = tmp_path_factory.mktemp("deletes")
    h.reset_target_schema("DELETES")
    create_sources()
    first = run(tmp)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    out = {"loaded": {(e, name): target_rows(e, name) for e in ENGINES for name in tables(e)}}
    delete_at_the_sources()
    # A short lease: the killed run's lease has expired when the next run starts; its open transaction
    # is rolled back once idle (local/fakesnow_server.py: ETL_FAKESNOW_DETACHED_SECONDS=10).
    out["killed"] = run(tmp, "--TABLES", "deletes.crash", "--LEASE_SECONDS", "5",
                        launcher=["tests/e2e/crash_at.py", "deleted", "deletes.crash"])
    time.sleep(12)
    out["after_kill"] = target_rows("postgres", "crash")
    out["second"] = run(tmp)
    out["rows_deleted"] = {e: h.metric(JOB, key(e, "hard"), "RowsDeleted") for e in ENGINES}
    out["soft_marked"] = {e: h.sf_query(f'SELECT "ID", "_DELETED_AT" FROM {target(e, "soft")} '
                                        f'WHERE "_DELETED_AT" IS NOT NULL ORDER BY "ID"') for e in ENGINES}
    # Two keys come back: 20 with new values, 30 exactly as it was (only its mark differs from the target).
    for engine in ENGINES:
        source_sql(engine, f"INSERT INTO {key(engine, 'soft')} VALUES (20, 'back', 20.5, '{ts(3 * 86_400)}')",
                   f"INSERT INTO {key(engine, 'soft')} VALUES (30, 'v30', 30.25, '{ts(30)}')")
    out["third"] = run(tmp, "--TABLES", ",".join(key(e, n) for e in ENGINES for n in ("soft", "hard")))
    return out


ENGINE = pytest.mark.parametrize("engine", list(ENGINES))


@ENGINE
def test_delete_removes_the_source_deletes_and_is_counted(runs, engine):
    second = runs["second"]
    result = h.summary(second)[key(engine, "hard")]
    assert result["status"] == "OK", second.stdout[-3000:]
    assert result["deleted"] == len(HARD_GONE) and result["target_rows"] == 37
    h.assert_same_rows(source_rows(engine, "hard"), target_rows(engine, "hard"), "hard after deletes")
    assert runs["rows_deleted"][engine] == len(HARD_GONE)               # read back from CloudWatch


@ENGINE
def test_soft_marks_the_source_deletes_and_keeps_the_live_rows_equal(runs, engine):
    second = runs["second"]
    result = h.summary(second)[key(engine, "soft")]
    assert result["status"] == "OK" and result["deleted"] == len(SOFT_GONE), second.stdout[-3000:]
    marked = runs["soft_marked"][engine]
    assert [k for k, _ in marked] == SOFT_GONE
    assert all(isinstance(at, dt.datetime) and at.tzinfo is not None for _, at in marked)
    # the marked row that stays deleted keeps the values it had (the others came back, see below)
    kept = [r for r in runs["loaded"][(engine, "soft")] if r[0] == 2]
    assert target_rows(engine, "soft", '"_DELETED_AT" IS NOT NULL') == kept


@ENGINE
def test_a_soft_deleted_key_that_comes_back_is_live_again(runs, engine):
    third = runs["third"]
    assert third.returncode == 0, third.stdout[-3000:]
    assert h.summary(third)[key(engine, "soft")]["deleted"] == 0
    h.assert_same_rows(source_rows(engine, "soft"), target_rows(engine, "soft", '"_DELETED_AT" IS NULL'), "soft")
    still = h.sf_query(f'SELECT "ID", "_DELETED_AT" FROM {target(engine, "soft")} WHERE "_DELETED_AT" IS NOT NULL')
    assert still == [r for r in runs["soft_marked"][engine] if r[0] == 2]   # the stamp of the first run, kept
    # An unchanged key set costs one aggregate per side and fetches no key.
    hard = [line for line in third.stdout.splitlines()
            if f"table={key(engine, 'hard')}" in line and "step=deletes" in line]
    assert len(hard) == 1 and "deletes=0 " in hard[0] and "ranges_queried=1 leaves=0" in hard[0], hard


@ENGINE
def test_guard_refuses_an_emptied_source_and_writes_nothing(runs, engine):
    second = runs["second"]
    assert second.returncode == 1
    assert h.summary(second)[key(engine, "guard")]["status"] == "FAILED"
    name = f"DELETES.{PREFIX[engine]}_GUARD"
    assert f"{key(engine, 'guard')}: at least 40 of the 40 rows of {name} would be deleted (100.0%), more than " \
           f"max_delete_fraction 0.1; nothing was written." in second.stdout
    assert target_rows(engine, "guard") == runs["loaded"][(engine, "guard")]


def test_a_kill_during_the_delete_leaves_the_target_as_before_then_the_rerun_applies_it(runs):
    # PostgreSQL only: the delete step runs in Snowflake, the engine does not matter there.
    assert runs["killed"].returncode == -signal.SIGKILL, runs["killed"].stdout[-3000:]
    assert "tables OK" not in runs["killed"].stdout
    assert runs["after_kill"] == runs["loaded"][("postgres", "crash")]
    result = h.summary(runs["second"])["deletes.crash"]
    assert result["status"] == "OK" and result["deleted"] == len(CRASH_GONE)
    h.assert_same_rows(source_rows("postgres", "crash"), target_rows("postgres", "crash"), "crash")
