"""A load that cannot lock its target fails that table with a message naming it and the fix, and
changes nothing; once the other transaction has gone, the next run loads the table.

Snowflake waits up to LOCK_TIMEOUT (the job sets 10 minutes) and then answers 000625; the
emulator answers the same error at once for a write-write conflict (local/fakesnow_server.py).
Another session holds a transaction open on the target's rows, kept busy so that the
emulator's detached-transaction reaper leaves it alone.
"""

from __future__ import annotations

import threading

import pytest

from local import stack
from tests.e2e import helpers as h

TABLES = {"lockt.t": {"ssmKey": "AFFILIATE", "target_table": "LOCKT.T", "primary_key": "ID",
                      "operations": {"type": "TRUNCATE_INSERT"}}}


class Holder:
    """An open transaction that has changed the target's rows, alive until release()."""

    def __init__(self):
        self.conn = stack.snowflake_connect()
        self.conn.cursor().execute("BEGIN")
        # A DELETE: DuckDB reports DELETE-vs-DELETE (and UPDATE-vs-UPDATE) as a conflict, not
        # DELETE-vs-UPDATE, where both commit (a lost update Snowflake's table locks prevent).
        self.conn.cursor().execute('DELETE FROM ETL_DB.LOCKT.T WHERE "ID" = 1')
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._keep_busy, daemon=True)
        self._thread.start()

    def _keep_busy(self):
        while not self._stop.wait(2):
            with self._lock:
                self.conn.cursor().execute("SELECT 1")

    def release(self):
        self._stop.set()
        self._thread.join()
        self.conn.cursor().execute("ROLLBACK")
        self.conn.close()


@pytest.fixture(scope="module")
def runs(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lock")
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
        blocked = h.run_job(tmp, TABLES, job_name="e2e-lock-1")
        during = h.sf_query('SELECT "ID", "V" FROM ETL_DB.LOCKT.T ORDER BY 1')
    finally:
        holder.release()
    after = h.run_job(tmp, TABLES, job_name="e2e-lock-2")
    return blocked, during, after


def test_a_lock_conflict_fails_the_table_by_name_and_changes_nothing(runs):
    blocked, during, _ = runs
    assert h.summary(blocked)["lockt.t"]["status"] == "FAILED" and blocked.returncode == 1
    assert ("lockt.t: loading LOCKT.T: Snowflake: could not lock a table within LOCK_TIMEOUT: another "
            "session's transaction holds it") in blocked.stdout
    assert "run again" in blocked.stdout
    assert during == [(1, "old"), (2, "old")]             # the other session's change is not ours to see


def test_the_next_run_loads_the_table(runs):
    _, _, after = runs
    assert h.summary(after)["lockt.t"]["status"] == "OK", after.stdout[-3000:]
    assert h.assert_table_equal("postgres", "affiliate", "lockt.t", "ETL_DB.LOCKT.T", "id") == 3
