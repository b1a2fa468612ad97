"""Two runs at once: one takes a table, the other skips it (or waits for it); never both.

Run A is started with the pause_at.py launcher, which holds a table mid-pipeline (lease taken,
data extracted) until the test lets it go; run B collides with it. Afterwards each target is
compared with its source row by row.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from local import stack
from tests.e2e import helpers as h

PAUSE = ["tests/e2e/pause_at.py"]


def registry(*names: str) -> dict:
    kinds = {"incr": {"operations": {"type": "INCREMENTAL"}, "primary_key": "ID", "timestamp_column": "UPDATED_AT"},
             "full": {"operations": {"type": "FULL"}, "primary_key": "ID"}}
    return {f"conc.{n}": {"ssmKey": "AFFILIATE", "target_table": f"CONC.{n.upper()}", **kinds[n]} for n in names}


def change_source(first_id: int) -> None:
    """Update every 7th row and insert 20, stamped with the time of the change (as an application would)."""
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for name in ("incr", "full"):
            cur.execute(f"UPDATE conc.{name} SET v = v || '+', updated_at = clock_timestamp() WHERE id % 7 = 0")
            cur.execute(f"INSERT INTO conc.{name} SELECT g, 'v' || g, clock_timestamp() "
                        f"FROM generate_series(%s, %s) g", (first_id, first_id + 19))


def assert_loaded(name: str) -> None:
    h.assert_table_equal("postgres", "affiliate", f"conc.{name}", f"ETL_DB.CONC.{name.upper()}", "id")


class Job:
    """A job process whose output is read line by line while it runs."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, cwd=h.ROOT, env=h.job_env(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout}s:\n" + "".join(self.lines[-40:])) from None
            if line is None:
                raise AssertionError(f"the job ended before {text!r}:\n" + "".join(self.lines[-40:]))
            if text in line:
                return line

    def release(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()

    def finish(self, timeout: float = 300) -> subprocess.CompletedProcess:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return subprocess.CompletedProcess(self.proc.args, code, "".join(self.lines), "")


@pytest.fixture(scope="module")
def tables(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conc")
    h.reset_target_schema("CONC")
    h.recreate_pg_schema("conc", ["incr", "full"])
    change_source(1)
    first = h.run_job(tmp, registry("incr", "full"), job_name="conc-setup")
    assert first.returncode == 0, first.stdout[-3000:]
    return tmp


@contextmanager
def paused_run(tmp, step: str, *extra: str, heartbeat: bool = True) -> Iterator[Job]:
    """Run A ("conc-a") holding conc.incr after ``step`` until the block ends."""
    launcher = [*PAUSE, step, "conc.incr", *([] if heartbeat else ["no-heartbeat"])]
    a = Job(h.job_command(tmp, registry("incr"), *extra, job_name="conc-a", launcher=launcher))
    try:
        a.wait_for("PAUSED conc.incr")
        yield a
    finally:
        a.release()


def test_second_run_skips_a_table_the_first_is_loading(tables):
    change_source(100)
    with paused_run(tables, "extract") as a:
        b = h.run_job(tables, registry("incr", "full"), job_name="conc-b")
    done = a.finish()

    assert b.returncode == 1, b.stdout[-3000:]
    result = h.summary(b)
    assert result["conc.incr"]["status"] == "SKIPPED" and result["conc.full"]["status"] == "OK"
    assert "conc.incr: skipped, CONC.INCR is being loaded by run conc-a-" in b.stdout
    assert "--LEASE_WAIT_SECONDS" in b.stdout
    assert done.returncode == 0, done.stdout[-3000:]
    assert h.summary(done)["conc.incr"]["status"] == "OK"
    assert_loaded("incr")
    assert_loaded("full")
    state = h.sf_query("SELECT RUN_ID FROM ETL_DB.ETL_META.ETL_LOAD_STATE WHERE TARGET_TABLE = 'CONC.INCR'")
    assert len(state) == 1 and state[0][0].startswith("conc-a-")


def test_second_run_waits_for_the_table_when_asked(tables):
    change_source(200)
    with paused_run(tables, "copy") as a:
        b = Job(h.job_command(tables, registry("incr"), "--LEASE_WAIT_SECONDS", "300", job_name="conc-b"))
        b.wait_for("waiting_for=conc-a-")
        change_source(300)                # rows only the waiting run can still see
    first, second = a.finish(), b.finish()

    assert first.returncode == 0, first.stdout[-3000:]
    assert second.returncode == 0, second.stdout[-3000:]
    assert h.summary(second)["conc.incr"]["status"] == "OK"
    # B planned its delta only after A committed: it starts from A's watermark, no row twice.
    assert_loaded("incr")
    lease = h.sf_query("SELECT HOLDER FROM ETL_DB.ETL_META.ETL_LOAD_LEASE WHERE TARGET_TABLE = 'CONC.INCR'")
    assert lease == [(None,)]            # released by the run that finished last


def test_a_run_that_lost_its_lease_changes_nothing(tables):
    before = h.sf_query('SELECT "ID", "V", "UPDATED_AT" FROM ETL_DB.CONC.INCR ORDER BY "ID"')
    change_source(400)
    with paused_run(tables, "copy", "--LEASE_SECONDS", "2", heartbeat=False) as a:
        time.sleep(4)                      # twice the lease: another run may have taken the table by now
    stalled = a.finish()

    assert stalled.returncode == 1, stalled.stdout[-3000:]
    assert "this run's lease on CONC.INCR expired before the load" in stalled.stdout
    assert h.sf_query('SELECT "ID", "V", "UPDATED_AT" FROM ETL_DB.CONC.INCR ORDER BY "ID"') == before
    again = h.run_job(tables, registry("incr"), job_name="conc-b")
    assert again.returncode == 0, again.stdout[-3000:]
    assert_loaded("incr")


def test_a_killed_run_gives_its_tables_up_when_its_lease_expires(tables):
    change_source(500)
    a = Job(h.job_command(tables, registry("incr"), "--LEASE_SECONDS", "3", job_name="conc-a",
                          launcher=[*PAUSE, "extract", "conc.incr"]))
    a.wait_for("PAUSED conc.incr")
    a.proc.kill()
    a.finish()
    # The lease is still there, held by a dead run, until it expires (3 s); the next run may wait for it.
    again = h.run_job(tables, registry("incr"), "--LEASE_WAIT_SECONDS", "60", job_name="conc-b")
    assert again.returncode == 0, again.stdout[-3000:]
    assert_loaded("incr")
