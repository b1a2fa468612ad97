"""Imported by the job's interpreter in the bench's VERIFY cases only (bench/run.py puts this folder on
PYTHONPATH and sets BENCH_SQL_RECORD): every statement the job sends to Snowflake, with its duration as the
client sees it (from the request until the statement's answer arrived; fakesnow answers when the statement
has finished), one JSON line per statement.

The same place tests/e2e/record_sql.py records at (``SnowflakeCursor.execute``); the job's code is unchanged.
PostgreSQL's side is recorded by the server itself (log_min_duration_statement, bench/verify.py).
"""

import os

_record = os.environ.get("BENCH_SQL_RECORD")
if _record:
    import json
    import threading
    import time

    from snowflake.connector.cursor import SnowflakeCursor

    _lock = threading.Lock()
    _out = open(_record, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole process
    _execute = SnowflakeCursor.execute

    def _recording_execute(self, command, params=None, *args, **kwargs):
        started, t0 = time.time(), time.monotonic()
        try:
            return _execute(self, command, params, *args, **kwargs)
        finally:
            line = {"sql": command, "start": started, "seconds": round(time.monotonic() - t0, 4),
                    "thread": threading.current_thread().name}
            with _lock:
                _out.write(json.dumps(line, default=str) + "\n")
                _out.flush()

    SnowflakeCursor.execute = _recording_execute
