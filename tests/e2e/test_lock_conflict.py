"""Table locks, as Snowflake takes them, and what the job does when it cannot get one.

Snowflake ("Transactions", Resource locking): UPDATE, DELETE and MERGE lock their table until the
transaction ends; another session's UPDATE/DELETE/MERGE of it waits, up to that session's
LOCK_TIMEOUT, and then fails with 000625; INSERT does not wait. The emulator does the same
(local/fakesnow_server.py, item 10). The first tests check the emulator through the real connector;
the last two run the job against a target another session keeps locked: with a 3 s LOCK_TIMEOUT the
load fails that table with a message naming it and the fix, changes nothing, and the next run, once
the other transaction has gone, loads it.
"""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from snowflake.connector.errors import ProgrammingError

import glue_etl_job as g
from local import stack
from tests.e2e import helpers as h

T, U = "ETL_DB.LOCK_EMU.T", "ETL_DB.LOCK_EMU.U"
WAITED = 2.0            # how long a blocked statement is watched before its holder lets go


def connect(**session_parameters):
    return stack.snowflake_connect(session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False,
                                                       **session_parameters})


class Statement:
    """One statement on a session of its own, run in a thread: its rowcount or error, and when it ended."""

    def __init__(self, sql: str, conn=None, **session_parameters):
        self.conn = conn or connect(**session_parameters)
        self.rowcount = self.error = self.seconds = None
        self._thread = threading.Thread(target=self._run, args=(sql,), daemon=True)
        self._started = time.monotonic()
        self._thread.start()

    def _run(self, sql: str) -> None:
        try:
            self.rowcount = self.conn.cursor().execute(sql).rowcount
        except ProgrammingError as exc:
            self.error = exc
        self.seconds = time.monotonic() - self._started

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 60):
        self._thread.join(timeout)
        assert self.done(), "the statement never ended"
        return self.rowcount if self.error is None else self.error


def holding(*sqls: str):
    """A session with an open transaction that has run ``sqls``."""
    conn = connect()
    conn.cursor().execute("BEGIN")
    for sql in sqls:
        conn.cursor().execute(sql)
    return conn


def rows(table: str) -> list[tuple]:
    return h.sf_query(f'SELECT "ID", "V" FROM {table} ORDER BY 1')


@pytest.fixture()
def tables(stack_env):
    h.sf_execute("CREATE SCHEMA IF NOT EXISTS ETL_DB.LOCK_EMU",
                 *[f'CREATE OR REPLACE TABLE {t} ("ID" NUMBER(10,0), "V" VARCHAR)' for t in (T, U)],
                 *[f"INSERT INTO {t} VALUES (1, 'old'), (2, 'old')" for t in (T, U)])


def test_a_writer_waits_for_another_sessions_transaction_and_goes_on_after_its_commit(tables):
    a = holding(f"UPDATE {T} SET \"V\" = 'a' WHERE \"ID\" = 1")
    # The table is locked, not the row: a MERGE of another row waits as well as an UPDATE of the same one.
    merge = Statement(f'MERGE INTO {T} t USING (SELECT 2 AS "ID", \'merged\' AS "V") s ON t."ID" = s."ID" '
                      f'WHEN MATCHED THEN UPDATE SET "V" = s."V"')
    update = Statement(f"UPDATE {T} SET \"V\" = 'second' WHERE \"ID\" = 1")
    insert = Statement(f"INSERT INTO {T} VALUES (3, 'inserted')")      # INSERT is not blocked
    assert insert.result(timeout=30) == 1               # ended while the table is still locked
    time.sleep(WAITED)
    assert not merge.done() and not update.done(), (merge.error, update.error)
    a.cursor().execute("COMMIT")
    assert merge.result() == 1 and update.result() == 1
    assert merge.seconds >= WAITED and update.seconds >= WAITED
    # READ COMMITTED: the waiting UPDATE ran after the commit and overwrote its row.
    assert rows(T) == [(1, "second"), (2, "merged"), (3, "inserted")]
    a.close()


def test_a_lock_wait_fails_with_000625_after_the_sessions_lock_timeout(tables):
    a = holding(f'DELETE FROM {T} WHERE "ID" = 2')
    blocked = Statement(f"UPDATE {T} SET \"V\" = 'late' WHERE \"ID\" = 2", LOCK_TIMEOUT=2)
    error = blocked.result()
    assert isinstance(error, ProgrammingError) and error.errno == 625 and error.sqlstate == "57014", error
    assert 2 <= blocked.seconds < 20
    txn = re.search(r"has locked table 'T' in transaction (\d+) and this lock has not yet been released",
                    str(error)).group(1)
    job_error = g.snowflake_error(error)
    assert isinstance(job_error, g.LockConflict)
    assert "could not lock table T within LOCK_TIMEOUT" in str(job_error)
    assert f"SELECT SYSTEM$ABORT_TRANSACTION({txn})" in str(job_error)
    a.cursor().execute("ROLLBACK")
    again = Statement(f"UPDATE {T} SET \"V\" = 'late' WHERE \"ID\" = 2", conn=blocked.conn)
    assert again.result() == 1                            # nothing holds the table now
    assert rows(T) == [(1, "old"), (2, "late")]
    a.close()


def test_a_session_writing_several_tables_never_waits_for_itself_and_its_logout_rolls_back(tables):
    started = time.monotonic()
    a = holding(f"UPDATE {T} SET \"V\" = 'a' WHERE \"ID\" = 1", f'DELETE FROM {U} WHERE "ID" = 2',
                f"MERGE INTO {U} u USING (SELECT 1 AS \"ID\") s ON u.\"ID\" = s.\"ID\" "
                f"WHEN MATCHED THEN UPDATE SET \"V\" = 'a'", f"UPDATE {T} SET \"V\" = 'a' WHERE \"ID\" = 2")
    assert time.monotonic() - started < 10
    waiting = Statement(f"UPDATE {U} SET \"V\" = 'b' WHERE \"ID\" = 1")
    time.sleep(WAITED)
    assert not waiting.done(), waiting.error
    a.close()                           # no COMMIT: logging out rolls the transaction back
    assert waiting.result() == 1 and waiting.seconds < 8  # item 3 would have taken 10 s idle
    assert rows(T) == [(1, "old"), (2, "old")] and rows(U) == [(1, "b"), (2, "old")]


def test_a_wait_that_would_close_a_deadlock_fails_the_most_recent_statement(tables):
    a = holding(f"UPDATE {T} SET \"V\" = 'a' WHERE \"ID\" = 1")
    b = holding(f"UPDATE {U} SET \"V\" = 'b' WHERE \"ID\" = 1")
    first = Statement(f"UPDATE {U} SET \"V\" = 'a' WHERE \"ID\" = 2", conn=a)       # a waits for b
    time.sleep(WAITED)
    second = Statement(f"UPDATE {T} SET \"V\" = 'b' WHERE \"ID\" = 2", conn=b)      # b would wait for a
    error = second.result(timeout=10)
    assert isinstance(error, ProgrammingError) and error.errno == 625 and "deadlock" in str(error)
    assert not first.done()
    b.cursor().execute("ROLLBACK")
    assert first.result() == 1
    a.cursor().execute("COMMIT")
    assert rows(T) == [(1, "a"), (2, "old")] and rows(U) == [(1, "old"), (2, "a")]
    a.close()
    b.close()


# ----- the job against a locked target ----------------------------------------------------------

TABLES = {"lockt.t": {"ssmKey": "AFFILIATE", "target_table": "LOCKT.T", "primary_key": "ID",
                      "operations": {"type": "TRUNCATE_INSERT"}}}
SHORT_LOCKS = "/etl/test/snowflake-lock-3s"


class Holder:
    """An open transaction that has changed the target's rows, alive until release(); kept busy so
    that the emulator's detached-transaction reaper leaves it alone."""

    def __init__(self):
        self.conn = holding('DELETE FROM ETL_DB.LOCKT.T WHERE "ID" = 1')
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_busy, daemon=True)
        self._thread.start()

    def _keep_busy(self):
        while not self._stop.wait(2):
            self.conn.cursor().execute("SELECT 1")

    def release(self):
        self._stop.set()
        self._thread.join()
        self.conn.cursor().execute("ROLLBACK")
        self.conn.close()


def short_lock_timeout_parameter() -> None:
    """The job's Snowflake SSM parameter with lock_timeout_seconds = 3 (the job's default is 600)."""
    ssm = stack.boto3_client("ssm")
    name = h.GROUP_ARGS[h.GROUP_ARGS.index("--SNOWFLAKE") + 1]          # the parameter the other runs use
    secret = json.loads(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    ssm.put_parameter(Name=SHORT_LOCKS, Value=json.dumps({**secret, "lock_timeout_seconds": 3}),
                      Type="SecureString", Overwrite=True)


@pytest.fixture(scope="module")
def runs(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lock")
    short_lock_timeout_parameter()
    h.reset_target_schema("LOCKT")
    h.sf_execute("CREATE SCHEMA IF NOT EXISTS ETL_DB.LOCKT",
                 'CREATE TABLE ETL_DB.LOCKT.T ("ID" NUMBER(10,0), "V" VARCHAR)',
                 "INSERT INTO ETL_DB.LOCKT.T VALUES (1, 'old'), (2, 'old')")
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS lockt CASCADE; CREATE SCHEMA lockt; "
                    "CREATE TABLE lockt.t (id int PRIMARY KEY, v text); "
                    "INSERT INTO lockt.t VALUES (1, 'new'), (2, 'new'), (3, 'new')")
    holder = Holder()
    try:
        started = time.monotonic()
        blocked = h.run_job(tmp, TABLES, "--SNOWFLAKE", SHORT_LOCKS, job_name="e2e-lock-1")
        seconds = time.monotonic() - started
        during = h.sf_query('SELECT "ID", "V" FROM ETL_DB.LOCKT.T ORDER BY 1')
    finally:
        holder.release()
    after = h.run_job(tmp, TABLES, "--SNOWFLAKE", SHORT_LOCKS, job_name="e2e-lock-2")
    return blocked, seconds, during, after


def test_a_lock_wait_that_times_out_fails_the_table_by_name_and_changes_nothing(runs):
    blocked, seconds, during, _ = runs
    assert h.summary(blocked)["lockt.t"]["status"] == "FAILED" and blocked.returncode == 1
    assert ("lockt.t: loading LOCKT.T: Snowflake: could not lock table T within LOCK_TIMEOUT: another "
            "session's transaction holds it") in blocked.stdout, blocked.stdout[-3000:]
    assert re.search(r"run again or end it first with SELECT SYSTEM\$ABORT_TRANSACTION\(\d+\)", blocked.stdout)
    assert "after waiting LOCK_TIMEOUT (3 s) for this lock" in blocked.stdout
    assert seconds >= 3                                   # it waited before it gave up
    assert during == [(1, "old"), (2, "old")]             # the other session's change is not ours to see


def test_the_next_run_loads_the_table(runs):
    _, _, _, after = runs
    assert h.summary(after)["lockt.t"]["status"] == "OK", after.stdout[-3000:]
    assert h.assert_table_equal("postgres", "affiliate", "lockt.t", "ETL_DB.LOCKT.T", "id") == 3
