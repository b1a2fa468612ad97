"""Test launcher: runs glue_etl_job.main() and SIGKILLs the process at one step boundary of a table.

Usage: python tests/e2e/crash_at.py POINT TABLE --JOB_NAME ... (the job's own arguments)
   or: python tests/e2e/crash_at.py each TABLE=POINT,TABLE=POINT,... --JOB_NAME ...
POINT is extract | stage | copy | deleted | transaction | history | commit | repair | repaired:
  extract, stage, copy   right after that step of TABLE finished
  deleted                inside the load transaction, right after the first statement applying source deletes
                         (``delete_statements``: run TABLE alone, the statement does not name its source)
  transaction            inside the load transaction, after the state row was written, before COMMIT
  history                inside the load transaction, after the load history row was written, before COMMIT
  commit                 after the load committed, before the metrics and the summary
  repair                 inside REPAIR's transaction (--REPAIR), after its MERGE, before COMMIT
  repaired               after REPAIR's transaction committed, before it compares the ranges again
With ``each``, one process stands for several kills: every table stops at its own point and the
process dies once all are there, so each target is left exactly as a run killed at that point
leaves it. At most one table may stop inside a transaction (deleted, transaction, history, repair):
it holds the lease table's lock there, which the others' loads would wait for, so it starts its
transaction only after every other table has reached its point (pass --PARALLELISM >= the tables).
Nothing is caught or cleaned up: SIGKILL is what a lost Glue worker or an OOM kill looks like.
"""

import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import glue_etl_job as g  # noqa: E402

STEP_AFTER = {"extract": "extract", "stage": "stage", "copy": "copy", "commit": "load", "repaired": "repair"}
IN_TRANSACTION = {"deleted", "transaction", "history", "repair"}
PLAN = (dict(pair.split("=", 1) for pair in sys.argv[2].split(",")) if sys.argv[1] == "each"
        else {sys.argv[2]: sys.argv[1]})
assert sum(p in IN_TRANSACTION for p in PLAN.values()) <= 1, "one table at most inside its transaction"
STOPPERS = {t for t, p in PLAN.items() if p not in IN_TRANSACTION}   # tables that stop outside a transaction
arrived: set = set()
arrival = threading.Condition()
repairing: set = set()  # tables whose REPAIR step has begun


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def stop_here(table: str) -> None:
    """``table`` is at its point: the last one there kills the process, the others wait for it."""
    with arrival:
        arrived.add(table)
        arrival.notify_all()
        if arrived == STOPPERS and len(STOPPERS) == len(PLAN):
            die()
        arrival.wait_for(lambda: False)


def before_the_transaction() -> None:
    with arrival:
        arrival.wait_for(lambda: arrived == STOPPERS)


step = g.step


@contextmanager
def killing_step(logger, name, **fields):
    if name == "repair":
        repairing.add(logger.extra["table"])
    with step(logger, name, **fields) as out:
        yield out
    point = PLAN.get(logger.extra["table"])
    if STEP_AFTER.get(point) == name:
        stop_here(logger.extra["table"])
    elif point in IN_TRANSACTION and name == "copy":
        before_the_transaction()


execute = g.Warehouse.execute


def killing_execute(self, sql, params=None):
    cur = execute(self, sql, params)
    params = params or {}
    if sql.startswith(("INSERT INTO", "MERGE INTO")) and g.STATE_TABLE in sql \
            and PLAN.get(params.get("source")) == "transaction":
        die()
    if "deleted" in PLAN.values() and sql.startswith(("DELETE FROM", "UPDATE ")) and " IN (" in sql \
            and (sql.startswith("DELETE") or g.DELETED_AT in sql):
        die()
    if sql.startswith("MERGE INTO") and any(PLAN.get(t) == "repair" for t in repairing):
        die()
    if sql.startswith("MERGE INTO") and g.HISTORY_TABLE in sql and PLAN.get(params.get("table")) == "history" \
            and params.get("loaded"):
        die()
    return cur


table_run = g.Table.run


def watched_run(self):
    """A table of the plan that ends its run was never killed at its point: say so and end at once
    (exit 3) rather than leave the others waiting for it."""
    result = table_run(self)
    if self.cfg.key in PLAN:
        print(f"crash_at: {self.cfg.key} ended ({result.status}: {result.error}) before its point "
              f"{PLAN[self.cfg.key]}", flush=True)
        os._exit(3)
    return result


g.step = killing_step
g.Warehouse.execute = killing_execute
g.Table.run = watched_run
sys.exit(g.main([sys.argv[0], *sys.argv[3:]]))
