"""Secrets never reach logs, exception texts, S3 keys, metrics, state or the SQL sent to Snowflake."""

from __future__ import annotations

import json

import pytest

from local import stack
from tests.e2e import helpers as h

PG_PASSWORD = "PgPw-Quokka-5519"
MY_PASSWORD = "MyPw-Narwhal-2284"
SF_PASSWORD = "SfPw-Zebra-7731"
SECRETS = (PG_PASSWORD, MY_PASSWORD, SF_PASSWORD)


@pytest.fixture(scope="module")
def secret_users(stack_env):
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS sec CASCADE; CREATE SCHEMA sec; "
                    "CREATE TABLE sec.items (id int PRIMARY KEY, v text); "
                    "INSERT INTO sec.items SELECT g, 'item ' || g FROM generate_series(1, 20) g; "
                    "DROP ROLE IF EXISTS probe_reader; "
                    f"CREATE ROLE probe_reader LOGIN PASSWORD '{PG_PASSWORD}'; "
                    "GRANT USAGE ON SCHEMA sec TO probe_reader; "
                    "GRANT SELECT ON ALL TABLES IN SCHEMA sec TO probe_reader")
    with h.mysql_cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS sec")
        cur.execute("CREATE DATABASE sec")
        cur.execute("CREATE TABLE sec.items (id int PRIMARY KEY, v text)")
        cur.execute("INSERT INTO sec.items VALUES (1, 'a'), (2, 'b')")
        for host in ("127.0.0.1", "localhost"):
            cur.execute(f"DROP USER IF EXISTS 'probe_reader'@'{host}'")
            cur.execute(f"CREATE USER 'probe_reader'@'{host}' IDENTIFIED BY '{MY_PASSWORD}'")
            cur.execute(f"GRANT SELECT ON sec.* TO 'probe_reader'@'{host}'")
    ssm = stack.boto3_client("ssm")

    def put(name, base, **over):
        value = json.loads(ssm.get_parameter(Name=base, WithDecryption=True)["Parameter"]["Value"])
        value.update(over)
        ssm.put_parameter(Name=name, Value=json.dumps(value), Type="SecureString", Overwrite=True)

    put("/etl/sec/pg", "/etl/local/affiliate", user="probe_reader", password=PG_PASSWORD)
    put("/etl/sec/my", "/etl/local/program360", user="probe_reader", password=MY_PASSWORD, database="sec")
    put("/etl/sec/sf", "/etl/local/snowflake", password=SF_PASSWORD)
    put("/etl/sec/pg-wrong", "/etl/local/affiliate", user="probe_reader", password=MY_PASSWORD)
    h.reset_target_schema("SEC")


def test_no_secret_anywhere(secret_users, tmp_path):
    tables = {
        "sec.items": {"ssmKey": "AFFILIATE", "target_table": "SEC.PG_ITEMS", "primary_key": "ID",
                      "operations": {"type": "UPSERT"}},
        "sec.missing": {"ssmKey": "AFFILIATE", "target_table": "SEC.MISSING", "operations": {"type": "FULL"}},
    }
    my_tables = {"sec.items": {"ssmKey": "PROGRAM360", "target_table": "SEC.MY_ITEMS", "primary_key": "ID",
                               "operations": {"type": "FULL"}}}
    record = tmp_path / "sql.jsonl"
    launcher = ["tests/e2e/record_sql.py", str(record)]
    runs = [
        h.run_job(tmp_path, tables, "--SNOWFLAKE", "/etl/sec/sf", "--AFFILIATE", "/etl/sec/pg", "--KEEP_STAGING",
                  "true", job_name="e2e-secrets", launcher=launcher),
        h.run_job(tmp_path, my_tables, "--SNOWFLAKE", "/etl/sec/sf", "--PROGRAM360", "/etl/sec/my",
                  "--KEEP_STAGING", "true", job_name="e2e-secrets-my", launcher=launcher),
        # A wrong password: the failure message must not echo what was tried.
        h.run_job(tmp_path, tables, "--SNOWFLAKE", "/etl/sec/sf", "--AFFILIATE", "/etl/sec/pg-wrong",
                  job_name="e2e-secrets-bad", launcher=launcher),
    ]
    first = h.summary(runs[0])
    assert first["sec.items"]["status"] == "OK" and first["sec.missing"]["status"] == "FAILED"
    assert h.summary(runs[1])["sec.items"]["status"] == "OK", runs[1].stdout[-2000:]
    assert 'password authentication failed for user "probe_reader"' in runs[2].stdout
    h.assert_table_equal("postgres", "affiliate", "sec.items", "ETL_DB.SEC.PG_ITEMS", "id")

    places = {"stdout/stderr": "\n".join(r.stdout + r.stderr for r in runs),
              "SQL sent to Snowflake": record.read_text()}
    assert "COPY INTO" in places["SQL sent to Snowflake"]
    s3 = stack.boto3_client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="etl-staging", Prefix="e2e-secrets").get("Contents", [])]
    assert keys, "the staged files were kept (--KEEP_STAGING) so their keys can be checked"
    places["S3 keys"] = "\n".join(keys)
    cw = stack.boto3_client("cloudwatch")
    places["metrics"] = json.dumps(cw.list_metrics(Namespace="GlueETL")["Metrics"])
    places["state table"] = json.dumps(h.sf_query("SELECT * FROM ETL_DB.ETL_META.ETL_LOAD_STATE"), default=str)
    for where, text in places.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into {where}"
