"""Test launcher: runs glue_etl_job.main() and SIGKILLs the process at one step boundary of one table.

Usage: python tests/e2e/crash_at.py POINT TABLE --JOB_NAME ... (the job's own arguments)
POINT is extract | stage | copy | deleted | transaction | history | commit | repair | repaired:
  extract, stage, copy   right after that step of TABLE finished
  deleted                inside the load transaction, right after the first statement applying source deletes
                         (``delete_statements``: run TABLE alone, the statement does not name its source)
  transaction            inside the load transaction, after the state row was written, before COMMIT
  history                inside the load transaction, after the load history row was written, before COMMIT
  commit                 after the load committed, before the metrics and the summary
  repair                 inside REPAIR's transaction (--REPAIR), after its MERGE, before COMMIT
  repaired               after REPAIR's transaction committed, before it compares the ranges again
Nothing is caught or cleaned up: SIGKILL is what a lost Glue worker or an OOM kill looks like.
"""

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import glue_etl_job as g  # noqa: E402

POINT, TABLE = sys.argv[1], sys.argv[2]
STEP_AFTER = {"extract": "extract", "stage": "stage", "copy": "copy", "commit": "load", "repaired": "repair"}
repairing = False       # TABLE's REPAIR step has begun


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


step = g.step


@contextmanager
def killing_step(logger, name, **fields):
    global repairing
    repairing = repairing or (name == "repair" and logger.extra["table"] == TABLE)
    with step(logger, name, **fields) as out:
        yield out
    if logger.extra["table"] == TABLE and STEP_AFTER.get(POINT) == name:
        die()


execute = g.Warehouse.execute


def killing_execute(self, sql, params=None):
    cur = execute(self, sql, params)
    if POINT == "transaction" and sql.startswith(("INSERT INTO", "MERGE INTO")) and g.STATE_TABLE in sql \
            and params and params.get("source") == TABLE:
        die()
    if POINT == "deleted" and sql.startswith(("DELETE FROM", "UPDATE ")) and " IN (" in sql \
            and (sql.startswith("DELETE") or g.DELETED_AT in sql):
        die()
    if POINT == "repair" and repairing and sql.startswith("MERGE INTO"):
        die()
    if POINT == "history" and sql.startswith("MERGE INTO") and g.HISTORY_TABLE in sql \
            and params and params.get("table") == TABLE and params.get("loaded"):
        die()
    return cur


g.step = killing_step
g.Warehouse.execute = killing_execute
sys.exit(g.main([sys.argv[0], *sys.argv[3:]]))
