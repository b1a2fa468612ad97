"""Bad input gets a clear error; a failing table does not stop the others; the exit code tells."""

from __future__ import annotations

import json

import pytest

from local import stack
from tests.e2e import helpers as h

GOOD = {"ssmKey": "AFFILIATE", "target_table": "FAIL.GOOD", "primary_key": "ID",
        "operations": {"type": "FULL"}}


@pytest.fixture(scope="module")
def good_source(stack_env):
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS fail CASCADE; CREATE SCHEMA fail; "
                    "CREATE TABLE fail.good (id int PRIMARY KEY, v text); "
                    "INSERT INTO fail.good SELECT g, 'v' || g FROM generate_series(1, 50) g; "
                    "CREATE TABLE fail.nocol (id int PRIMARY KEY, v text); "
                    "CREATE TABLE fail.nullkey (id int, v text); "
                    "INSERT INTO fail.nullkey VALUES (1, 'a'), (NULL, 'b'); "
                    "CREATE TABLE fail.odd (id int PRIMARY KEY, prices money[]); "
                    "INSERT INTO fail.odd VALUES (1, '{1.50}')")
    h.reset_target_schema("FAIL")


def sf_tables(schema: str) -> list[str]:
    conn = stack.snowflake_connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT TABLE_NAME FROM ETL_DB.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = %s "
                    "ORDER BY 1", (schema,))
        return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def staged_keys(job_name: str) -> list[str]:
    s3 = stack.boto3_client("s3")
    return [o["Key"] for o in s3.list_objects_v2(Bucket="etl-staging", Prefix=f"{job_name}/").get("Contents", [])]


def test_bad_config_runs_nothing_and_lists_every_problem(good_source, tmp_path):
    tables = {
        "fail.good": GOOD,
        "fail.x": {"ssmKey": "AFFILIATE", "target_table": "FAIL.X; DROP TABLE Y", "operations": {"type": "FULL"}},
        "fail.y": {"ssmKey": "NOWHERE", "target_table": "FAIL.Y", "operations": {"type": "UPSERT"}},
    }
    proc = h.run_job(tmp_path, tables, job_name="e2e-badconfig")
    assert proc.returncode == 2
    err = proc.stderr
    assert "Nothing ran: 3 configuration problem(s)" in err
    assert "fail.x: 'target_table' must be 'SCHEMA.TABLE'" in err
    assert "fail.y: 'ssmKey' is 'NOWHERE' but no --NOWHERE runtime argument" in err
    assert "fail.y: UPSERT needs 'primary_key'" in err
    assert sf_tables("FAIL") == [] and staged_keys("e2e-badconfig") == []


@pytest.mark.parametrize("obj, message", [
    ('{"fail.good": "SOMETIMES"}', "--OBJ 'fail.good': mode 'SOMETIMES' is not one of"),
    ('{"fail.nope": "FULL"}', "--OBJ names 'fail.nope', which is not in the config"),
    ("{fail.good: FULL}", "--OBJ is not valid JSON"),
])
def test_bad_obj_runs_nothing(good_source, tmp_path, obj, message):
    proc = h.run_job(tmp_path, {"fail.good": GOOD}, "--OBJ", obj, job_name="e2e-badobj")
    assert proc.returncode == 2 and message in proc.stderr
    assert sf_tables("FAIL") == []


def test_failing_tables_do_not_stop_the_others(good_source, tmp_path):
    tables = {
        "fail.good": GOOD,
        "fail.missing": {"ssmKey": "AFFILIATE", "target_table": "FAIL.MISSING", "operations": {"type": "FULL"}},
        "fail.nocol": {"ssmKey": "AFFILIATE", "target_table": "FAIL.NOCOL", "primary_key": "ID",
                       "timestamp_column": "CHANGED_AT", "operations": {"type": "INCREMENTAL"}},
        "fail.nullkey": {"ssmKey": "AFFILIATE", "target_table": "FAIL.NULLKEY", "primary_key": "ID",
                         "operations": {"type": "UPSERT"}},
        "fail.odd": {"ssmKey": "AFFILIATE", "target_table": "FAIL.ODD", "primary_key": "ID",
                     "operations": {"type": "FULL"}},
    }
    proc = h.run_job(tmp_path, tables, job_name="e2e-isolation")
    assert proc.returncode == 1, proc.stdout[-3000:]
    result = h.summary(proc)
    assert {k: v["status"] for k, v in result.items()} == {
        "fail.good": "OK", "fail.missing": "FAILED", "fail.nocol": "FAILED", "fail.nullkey": "FAILED",
        "fail.odd": "FAILED"}
    out = proc.stdout
    assert '\nfail.missing: cannot read the source table' in out
    assert 'relation "fail.missing" does not exist' in out
    assert "fail.nocol: 'timestamp_column' column CHANGED_AT does not exist in the source table" in out
    assert "fail.nullkey: 1 source row(s) have a NULL in primary_key ['ID']" in out
    assert "Unrecognized SQL type - name: _money" in out and "load a view that casts it" in out
    h.assert_table_equal("postgres", "affiliate", "fail.good", "ETL_DB.FAIL.GOOD", "id")
    # Nothing was written for the failed tables.
    assert sf_tables("FAIL") == ["GOOD"]
    assert not [t for t in sf_tables("ETL_META") if t.startswith("STAGE__FAIL")], "staging tables left behind"
    assert staged_keys("e2e-isolation") == [], "staging files left behind"
    assert h.metric("e2e-isolation", "fail.missing", "Failure") == 1
    assert h.metric("e2e-isolation", "fail.good", "Success") == 1


def put_parameter(name: str, value) -> None:
    ssm = stack.boto3_client("ssm")
    ssm.put_parameter(Name=name, Value=value if isinstance(value, str) else json.dumps(value),
                      Type="SecureString", Overwrite=True)


def source_secret(**over) -> dict:
    base = json.loads(stack.boto3_client("ssm").get_parameter(Name="/etl/local/affiliate",
                                                              WithDecryption=True)["Parameter"]["Value"])
    base.update(over)
    return base


@pytest.mark.parametrize("secret, message", [
    (None, "cannot read SSM parameter /etl/test/broken (ParameterNotFound)"),
    ("not json {", "SSM parameter /etl/test/broken is not JSON"),
    ({"engine": "postgres", "host": "127.0.0.1"},
     "SSM parameter /etl/test/broken lacks port, database, user, password"),
    ("WRONG_PASSWORD", 'password authentication failed for user "etl"'),
    ("CLOSED_PORT", "jdbc:postgresql://127.0.0.1:1/affiliate: java.net.ConnectException: Connection refused"),
])
def test_broken_connection_group_fails_its_tables_only(good_source, tmp_path, secret, message):
    ssm = stack.boto3_client("ssm")
    try:
        ssm.delete_parameter(Name="/etl/test/broken")
    except ssm.exceptions.ParameterNotFound:
        pass
    if secret == "WRONG_PASSWORD":
        secret = source_secret(password="Wr0ng-Pa55-Zebra")
    elif secret == "CLOSED_PORT":
        secret = source_secret(port=1)
    if secret is not None:
        put_parameter("/etl/test/broken", secret)
    tables = {"fail.good": GOOD, "fail.other": {**GOOD, "ssmKey": "OPS", "target_table": "FAIL.OTHER"}}
    proc = h.run_job(tmp_path, tables, "--OPS", "/etl/test/broken", job_name="e2e-badsecret", timeout=180)
    assert proc.returncode == 1
    result = h.summary(proc)
    assert result["fail.good"]["status"] == "OK" and result["fail.other"]["status"] == "FAILED"
    assert message in proc.stdout
    assert "Wr0ng-Pa55-Zebra" not in proc.stdout + proc.stderr


def test_wrong_snowflake_parameter_stops_before_anything_runs(good_source, tmp_path):
    proc = h.run_job(tmp_path, {"fail.good": GOOD}, "--SNOWFLAKE", "/etl/test/no-such", job_name="e2e-nosf")
    assert proc.returncode == 1
    assert "Nothing ran: cannot read SSM parameter /etl/test/no-such (ParameterNotFound)" in proc.stderr


@h.both_mysql_drivers
def test_a_mysql_datetime_with_a_zero_month_fails_its_table_instead_of_moving(good_source, tmp_path):
    # MySQL accepts '2024-00-10' without NO_ZERO_IN_DATE; the JDBC driver used to read it as
    # 2023-12-10. The server's text reaches COPY, which rejects it: the table fails, nothing lands.
    with h.mysql_cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS fail_zero")
        cur.execute("CREATE DATABASE fail_zero")
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("CREATE TABLE fail_zero.t (id int PRIMARY KEY, dt datetime(6))")
        cur.execute("INSERT INTO fail_zero.t VALUES (1, '2024-00-10 00:00:00'), (2, '2024-01-10 00:00:00')")
    tables = {"fail_zero.t": {"ssmKey": "PROGRAM360", "target_table": "FAIL.ZERO_MONTH", "primary_key": "ID",
                              "operations": {"type": "FULL"}}}
    proc = h.run_job(tmp_path, tables, job_name="e2e-zero-month")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert h.summary(proc)["fail_zero.t"]["status"] == "FAILED"
    assert "2024-00-10" in proc.stdout, proc.stdout[-3000:]
    assert "ZERO_MONTH" not in sf_tables("FAIL")
