"""Test launcher: runs glue_etl_job.main() and records every statement sent to Snowflake.

Each line of RECORD_FILE is JSON: the SQL, its parameters and the name of the thread that sent it
(the lease heartbeat runs on a thread of its own, each table on a worker thread). Statements are
recorded where they reach the connector (``SnowflakeCursor.execute``), so the transaction's own
BEGIN/COMMIT/ROLLBACK count as the round trips they are, whichever job code sends them.

Usage: python tests/e2e/record_sql.py RECORD_FILE --JOB_NAME ... (the job's own arguments)
"""

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from snowflake.connector.cursor import SnowflakeCursor  # noqa: E402

import glue_etl_job as g  # noqa: E402

record = open(sys.argv[1], "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole run
lock = threading.Lock()
execute = SnowflakeCursor.execute


def recording_execute(self, command, params=None, *args, **kwargs):
    line = {"sql": command, "params": params, "thread": threading.current_thread().name}
    with lock:
        record.write(json.dumps(line, default=str) + "\n")
        record.flush()
    return execute(self, command, params, *args, **kwargs)


SnowflakeCursor.execute = recording_execute
sys.exit(g.main([sys.argv[0], *sys.argv[2:]]))
