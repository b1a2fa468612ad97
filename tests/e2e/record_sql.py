"""Test launcher: runs glue_etl_job.main() and records every statement sent to Snowflake.

Usage: python tests/e2e/record_sql.py RECORD_FILE --JOB_NAME ... (the job's own arguments)
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import glue_etl_job as g  # noqa: E402

record = open(sys.argv[1], "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole run
execute = g.Warehouse.execute


def recording_execute(self, sql, params=None):
    record.write(json.dumps({"sql": sql, "params": params}, default=str) + "\n")
    record.flush()
    return execute(self, sql, params)


g.Warehouse.execute = recording_execute
sys.exit(g.main([sys.argv[0], *sys.argv[2:]]))
