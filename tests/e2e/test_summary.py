"""Issue 16 item 6: the run summary for machines. One job run (a table that loads and VERIFYs, one
that fails) checked for: the last stdout line is exactly a JSON object; --SUMMARY_OUTPUT
(s3://) holds the same line; it agrees with the readable summary, the target, the state row and
the CloudWatch metrics."""

from __future__ import annotations

import json
import uuid

import pytest

import glue_etl_job as g
from local import stack
from tests.e2e import helpers as h

JOB = "e2e-summary"
TABLES = {
    "summ.good": {"ssmKey": "AFFILIATE", "target_table": "SUMM.GOOD", "primary_key": "ID", "verify": True,
                  "operations": {"type": "UPSERT"}},
    "summ.missing": {"ssmKey": "AFFILIATE", "target_table": "SUMM.MISSING", "operations": {"type": "FULL"}},
}


@pytest.fixture(scope="module")
def run(stack_env, tmp_path_factory):
    h.reset_target_schema("SUMM")
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS summ CASCADE; CREATE SCHEMA summ; "
                    "CREATE TABLE summ.good (id int PRIMARY KEY, v text, updated_at timestamp(6)); "
                    "INSERT INTO summ.good SELECT i, 'v' || i, TIMESTAMP '2026-01-01' + i * INTERVAL '1 minute' "
                    "FROM generate_series(1, 37) i")
    key = f"summaries/{uuid.uuid4().hex}.json"
    proc = h.run_job(tmp_path_factory.mktemp("summary"), TABLES, "--SUMMARY_OUTPUT", f"s3://etl-staging/{key}",
                     job_name=JOB)
    written = stack.boto3_client("s3").get_object(Bucket="etl-staging", Key=key)["Body"].read().decode()
    return proc, written


def test_the_last_stdout_line_is_the_json_summary_and_the_s3_object_holds_it(run):
    proc, written = run
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.splitlines()[-1]
    doc = json.loads(last)                     # the whole line is the JSON object, nothing else
    assert written == last + "\n"
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"type": "etl_run_summary"')]
    assert lines == [last]
    assert (doc["type"], doc["job"], doc["status"], doc["exit_code"], doc["tables_ok"], doc["tables_total"]) == (
        "etl_run_summary", JOB, "FAILED", 1, 1, 2)


def test_the_json_summary_agrees_with_the_readable_one_the_target_and_the_state(run):
    proc, _ = run
    doc = json.loads(proc.stdout.splitlines()[-1])
    readable = h.summary(proc)
    tables = {t["key"]: t for t in doc["tables"]}
    assert set(tables) == set(readable) == set(TABLES)
    for key, t in tables.items():
        r = readable[key]
        assert (t["mode"], t["target"], t["status"], t["rows"]["source"], t["rows"]["read"], t["rows"]["target"],
                t["difference"]) == (r["mode"], r["target"], r["status"], r["source"], r["delta"],
                                     r["target_rows"], r["diff"])
    good, missing = tables["summ.good"], tables["summ.missing"]
    rows = h.assert_table_equal("postgres", "affiliate", "summ.good", "ETL_DB.SUMM.GOOD", "id")
    assert rows == 37 and good["rows"] == {"source": 37, "read": 37, "inserted": 37, "updated": 0, "deleted": None,
                                        "target": 37}
    assert good["error"] is None and good["verified"] == {"rows": 37, "mismatched": 0, "missing": 0, "extra": 0,
                                                          "different": 0, "changed_since_load": 0}
    assert missing["status"] == "FAILED" and missing["verified"] is None
    assert missing["error"].startswith("summ.missing:") and missing["error"] in proc.stdout.splitlines()
    state = g.fqn("ETL_DB", "ETL_META", g.STATE_TABLE)
    assert h.sf_scalar(f"SELECT RUN_ID FROM {state} WHERE TARGET_TABLE = 'SUMM.GOOD'") == doc["run_id"]


def test_the_json_summary_agrees_with_cloudwatch(run):
    proc, _ = run
    good = next(t for t in json.loads(proc.stdout.splitlines()[-1])["tables"] if t["key"] == "summ.good")
    metrics = {name: h.metric(JOB, "summ.good", name) for name in
               ("SourceRecordCount", "FilteredRecordCount", "TargetRecordCount", "RowsInserted", "RowsUpdated",
                "RowDifference", "Success", "VerifiedRows", "MismatchedRows")}
    assert metrics == {"SourceRecordCount": 37, "FilteredRecordCount": 37, "TargetRecordCount": 37,
                       "RowsInserted": good["rows"]["inserted"], "RowsUpdated": good["rows"]["updated"],
                       "RowDifference": good["difference"], "Success": 1,
                       "VerifiedRows": good["verified"]["rows"], "MismatchedRows": good["verified"]["mismatched"]}
    assert h.metric(JOB, "summ.missing", "Failure") == 1
