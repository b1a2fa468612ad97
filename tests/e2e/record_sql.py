"""Test launcher: runs glue_etl_job.main() and records every statement sent to Snowflake.

Each line of RECORD_FILE is JSON: the SQL, its parameters and the name of the thread that sent it
(the lease heartbeat runs on a thread of its own, each table on a worker thread).

Usage: python tests/e2e/record_sql.py RECORD_FILE --JOB_NAME ... (the job's own arguments)
"""

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import glue_etl_job as g  # noqa: E402

record = open(sys.argv[1], "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole run
execute = g.Warehouse.execute


def recording_execute(self, sql, params=None):
    line = {"sql": sql, "params": params, "thread": threading.current_thread().name}
    record.write(json.dumps(line, default=str) + "\n")
    record.flush()
    return execute(self, sql, params)


g.Warehouse.execute = recording_execute
sys.exit(g.main([sys.argv[0], *sys.argv[2:]]))
