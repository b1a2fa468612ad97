"""--DRY_RUN: every table's plan from reads only; S3, Snowflake and CloudWatch exactly as before."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from local import stack
from tests.e2e import helpers as h

JOB = "e2e-dry"


def s3_snapshot() -> dict:
    s3 = stack.boto3_client("s3")
    out = {}
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            out.update({(bucket["Name"], o["Key"]): o["ETag"] for o in page.get("Contents", [])})
    return out


def snowflake_snapshot() -> dict:
    """Every table of the Snowflake database (targets, state, leases): its rows' digest."""
    names = h.sf_query("SELECT TABLE_SCHEMA, TABLE_NAME FROM ETL_DB.INFORMATION_SCHEMA.TABLES "
                       "WHERE TABLE_SCHEMA <> 'INFORMATION_SCHEMA' ORDER BY 1, 2")
    out = {}
    for schema, table in names:
        rows = sorted(repr(r) for r in h.sf_query(f'SELECT * FROM ETL_DB."{schema}"."{table}"'))
        out[f"{schema}.{table}"] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return out


def cloudwatch_snapshot() -> dict:
    cw = stack.boto3_client("cloudwatch")
    now = dt.datetime.now(dt.UTC)
    out = {}
    for m in cw.list_metrics(Namespace="GlueETL")["Metrics"]:
        dims = {d["Name"]: d["Value"] for d in m["Dimensions"]}
        points = cw.get_metric_statistics(Namespace="GlueETL", MetricName=m["MetricName"], Dimensions=m["Dimensions"],
                                          StartTime=now - dt.timedelta(hours=2), EndTime=now + dt.timedelta(hours=1),
                                          Period=60, Statistics=["SampleCount"])["Datapoints"]
        out[(m["MetricName"], tuple(sorted(dims.items())))] = sum(p["SampleCount"] for p in points)
    return out


@pytest.fixture(scope="module")
def loaded(stack_env, tmp_path_factory):
    h.reset_target_schema("RAW")
    proc = h.run_job(tmp_path_factory.mktemp("dry"), None, job_name=JOB)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc


def test_a_dry_run_shows_each_plan_and_changes_nothing(loaded, tmp_path):
    before = (s3_snapshot(), snowflake_snapshot(), cloudwatch_snapshot())
    out = tmp_path / "plan.json"
    proc = h.run_job(tmp_path, None, "--DRY_RUN", "true", "--PLAN_OUTPUT", str(out), job_name=JOB)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert (s3_snapshot(), snowflake_snapshot(), cloudwatch_snapshot()) == before
    assert "step=lease" not in proc.stdout and "step=stage" not in proc.stdout

    doc = json.loads(out.read_text())
    line = next(x for x in proc.stdout.splitlines() if x.startswith('{"run_id"'))
    assert json.loads(line) == doc and doc["dry_run"] is True
    plans = {p["table"]: p for p in doc["tables"]}
    assert set(plans) == set(h.summary(loaded))
    state = dict(h.sf_query('SELECT "TARGET_TABLE", "WATERMARK" FROM ETL_DB.ETL_META.ETL_LOAD_STATE'))
    orders = plans["sales.orders"]
    assert orders["mode"] == "INCREMENTAL" and orders["watermark"] == state["RAW.ORDERS"]
    assert orders["watermark"] in orders["source_sql"] and orders["predicate"] in orders["source_sql"]
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:     # the estimate is the window's rows
        cur.execute(f"SELECT COUNT(*) FROM sales.orders WHERE {orders['predicate']}")
        assert orders["rows"] == cur.fetchone()[0] >= 1
        cur.execute("SELECT COUNT(*) FROM sales.orders")
        assert orders["target_rows"] == cur.fetchone()[0]
    assert orders["ddl"] == [] and len(orders["statements"]) == 1 and orders["statements"][0].startswith("MERGE")
    assert "== sales.orders (INCREMENTAL -> " in proc.stdout and f"read:      {orders['source_sql']}" in proc.stdout
    assert f"{len(plans)}/{len(plans)} tables planned" in proc.stdout


def test_a_table_that_cannot_be_planned_fails_the_dry_run_and_the_others_are_planned(loaded, tmp_path):
    tables = {"sales.orders": {"ssmKey": "AFFILIATE", "target_table": "RAW.ORDERS", "primary_key": "id",
                               "timestamp_column": "updated_at", "operations": {"type": "INCREMENTAL"}},
              "sales.nope": {"ssmKey": "AFFILIATE", "target_table": "RAW.NOPE", "primary_key": "id",
                             "operations": {"type": "UPSERT"}}}
    before = snowflake_snapshot()
    proc = h.run_job(tmp_path, tables, "--DRY_RUN", "true", job_name=JOB)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert snowflake_snapshot() == before
    doc = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith('{"run_id"')))
    plans = {p["table"]: p for p in doc["tables"]}
    assert "sales.nope" in plans["sales.nope"]["error"] and plans["sales.orders"]["rows"] >= 1
    assert "1/2 tables planned" in proc.stdout


def test_a_dry_run_before_the_jobs_first_run_plans_from_the_target(loaded, tmp_path):
    """A state schema that does not exist yet (no state, lease or history table): the plan starts at
    the target's MAX, as the first real run would, and nothing is created."""
    before = snowflake_snapshot()
    proc = h.run_job(tmp_path, None, "--DRY_RUN", "true", "--STATE_SCHEMA", "ETL_DRY_NEW", "--TABLES", "sales.orders",
                     job_name=JOB)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert snowflake_snapshot() == before          # no state, lease or history table was created
    orders = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith('{"run_id"')))["tables"][0]
    high = h.sf_scalar('SELECT MAX("UPDATED_AT") FROM ETL_DB.RAW.ORDERS')
    assert orders["watermark"] == f"{high:%Y-%m-%d %H:%M:%S.%f}"
    assert orders["notes"] == ["no state yet, starting from the target's MAX(UPDATED_AT)"]
