"""Test launcher: runs glue_etl_job.main() and pauses one table after one of its steps.

Usage: python tests/e2e/pause_at.py STEP TABLE [no-heartbeat] --JOB_NAME ... (the job's arguments)
After TABLE's step STEP (plan | extract | stage | copy) the table's thread prints ``PAUSED <table>``
and waits, still holding its lease, until a line arrives on stdin: a slow load that another run
can collide with. ``no-heartbeat`` stops the run renewing its leases (a worker stalled for longer
than its lease).
"""

import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import glue_etl_job as g  # noqa: E402

STEP, TABLE = sys.argv[1], sys.argv[2]
NO_HEARTBEAT = len(sys.argv) > 3 and sys.argv[3] == "no-heartbeat"
JOB_ARGS = sys.argv[4:] if NO_HEARTBEAT else sys.argv[3:]
step = g.step


@contextmanager
def pausing_step(logger, name, **fields):
    with step(logger, name, **fields) as out:
        yield out
    if logger.extra["table"] == TABLE and name == STEP:
        print(f"PAUSED {TABLE}", flush=True)
        sys.stdin.readline()


g.step = pausing_step
if NO_HEARTBEAT:
    g.Leases.start = lambda self: None
sys.exit(g.main([sys.argv[0], *JOB_ARGS]))
