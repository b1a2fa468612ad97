"""Glue parity: strict runtime arguments, config.py shipping, failing the Glue way, EMRFS folder
markers in the staging sweep, JDBC driver properties and java.time values, no local Spark options
on Glue. No local stack needed: moto runs in-process, Spark in a local JVM (Java 17)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from awsglue.utils import getResolvedOptions

import glue_etl_job as g
from local import stack

ROOT = Path(__file__).resolve().parents[2]
BASE = ["glue_etl_job.py", "--JOB_NAME", "etl-prod", "--SNOWFLAKE", "/etl/prod/snowflake"]

# What a Glue 5.0 job run passes to the script besides the job's own arguments (awsglue 5.0's
# Job.id_params and getResolvedOptions' reserved options; "Using job parameters in AWS Glue jobs").
GLUE_OWN = ["--JOB_ID", "j_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd",
            "--JOB_RUN_ID", "jr_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd",
            "--WORKFLOW_NAME", "etl-nightly", "--WORKFLOW_RUN_ID", "wr_0123456789abcdef0123456789abcdef",
            "--SECURITY_CONFIGURATION", "etl-sse-kms",
            "--TempDir", "s3://aws-glue-assets-123456789012-eu-west-1/temporary/",
            "--job-bookmark-option", "job-bookmark-disable",
            "--enable-metrics", "true", "--enable-observability-metrics", "true",
            "--enable-continuous-cloudwatch-log", "true", "--enable-glue-datacatalog", "true",
            "--enable-spark-ui", "true", "--spark-event-logs-path", "s3://aws-glue-assets-123/sparkHistoryLogs/",
            "--enable-job-insights", "false", "--job-language", "python",
            "--extra-py-files", "s3://etl-artifacts/glue/config.py",
            "--additional-python-modules", "snowflake-connector-python==3.12.4",
            "--python-modules-installer-option", "--no-index",
            "--encryption-type", "sse-s3", "--scriptLocation", "s3://etl-artifacts/glue/glue_etl_job.py"]


def problems(argv):
    with pytest.raises(g.ConfigError) as info:
        g.parse_args(argv, resolve=getResolvedOptions)
    return info.value.problems


# ----- strict arguments --------------------------------------------------------------


def test_glues_own_arguments_with_realistic_values_are_accepted():
    argv = [BASE[0], *GLUE_OWN, *BASE[1:], "--AFFILIATE", "/etl/prod/affiliate", "--TABLES", "sales.orders",
            "--PARALLELISM", "6"]
    args = g.parse_args(argv, resolve=getResolvedOptions)
    assert (args.job_name, args.snowflake_path, args.tables, args.parallelism) == (
        "etl-prod", "/etl/prod/snowflake", "sales.orders", 6)
    assert args.groups == {"AFFILIATE": "/etl/prod/affiliate"}
    # Job.init gets what getResolvedOptions resolved, Glue's own options included.
    assert args.resolved["JOB_NAME"] == "etl-prod" and args.resolved["job_bookmark_option"] == "job-bookmark-disable"
    assert args.resolved["JOB_RUN_ID"].startswith("jr_") and args.resolved["TempDir"].endswith("/temporary/")


def test_a_typo_names_the_closest_known_argument():
    assert problems([*BASE, "--TABLE", "sales.orders"]) == [
        "unknown runtime argument --TABLE (did you mean --TABLES?)"]
    assert problems([*BASE, "--tables", "sales.orders"]) == [
        "unknown runtime argument --tables (did you mean --TABLES?)"]
    assert problems([*BASE, "--FOO", "1"])[0].startswith("unknown runtime argument --FOO; job arguments are --")


def test_an_abbreviated_name_is_not_taken_for_the_full_one():
    # argparse (getResolvedOptions) would take --PARALLEL for --PARALLELISM and --SNOW for --SNOWFLAKE.
    assert problems([*BASE, "--PARALLEL", "8"]) == ["unknown runtime argument --PARALLEL (did you mean --PARALLELISM?)"]
    assert problems(["job.py", "--JOB_NAME", "j", "--SNOW", "/sf"]) == [
        "unknown runtime argument --SNOW (did you mean --SNOWFLAKE?)", "missing runtime argument --SNOWFLAKE"]


def test_a_flag_without_a_value_or_a_value_starting_with_a_dash():
    assert problems([*BASE, "--OBJ"]) == ["--OBJ needs a value, but it is the last word (a value may not start "
                                          "with '-')"]
    assert problems([*BASE, "--OBJ", "--TABLES", "a.b"]) == [
        "--OBJ needs a value, but it is followed by '--TABLES' (a value may not start with '-')"]
    assert problems([*BASE, "--TABLES", "-sales.orders"]) == [
        "--TABLES needs a value, but it is followed by '-sales.orders' (a value may not start with '-')"]
    # A negative number is a value for argparse too: the whole-number check names it.
    assert problems([*BASE, "--PARALLELISM", "-2"]) == ["--PARALLELISM must be a whole number >= 1, got '-2'"]


def test_stray_words_and_repeated_arguments():
    assert problems([*BASE, "--TABLES", "sales.orders", "sales.order_lines"]) == [
        "unexpected word 'sales.order_lines': every value follows its --NAME (quote a value that has spaces)"]
    # Given twice, the last value counts (getResolvedOptions' rule; the e2e tests override that way).
    assert g.parse_args([*BASE, "--TABLES", "a.b", "--TABLES", "c.d"], resolve=getResolvedOptions).tables == "c.d"


def test_getresolvedoptions_errors_become_config_errors():
    def raising(argv, names):
        from awsglue.utils import GlueArgumentError
        raise GlueArgumentError("argument --JOB_NAME: expected one argument")
    with pytest.raises(g.ConfigError, match="runtime arguments: argument --JOB_NAME: expected one argument"):
        g.parse_args(BASE, resolve=raising)


@pytest.mark.parametrize("extra, message", [
    (["--TABLE", "x"], "unknown runtime argument --TABLE (did you mean --TABLES?)"),
    (["--OBJ"], "--OBJ needs a value, but it is the last word"),
    (["--STAGING", "b"], "unknown runtime argument --STAGING (did you mean --STAGING_BUCKET?)"),
    (["--OBJ", "-x"], "--OBJ needs a value, but it is followed by '-x'"),
])
def test_main_exits_2_and_says_nothing_ran(extra, message, capsys):
    assert g.main([*BASE, *extra]) == 2
    err = capsys.readouterr().err
    assert "Nothing ran:" in err and message in err


# ----- config.py on Glue ---------------------------------------------------------------


def test_missing_config_py_is_a_config_error_naming_the_fix(tmp_path):
    shutil.copy(ROOT / "glue_etl_job.py", tmp_path / "glue_etl_job.py")     # no config.py beside it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(tmp_path / "glue_etl_job.py"), *BASE[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "Nothing ran: 1 configuration problem(s)" in proc.stderr
    assert "config.py cannot be imported: ship it with the job (Glue: --extra-py-files" in proc.stderr


def test_a_broken_config_py_is_not_hidden(tmp_path, monkeypatch):
    (tmp_path / "config.py").write_text("import no_such_module_here\nTABLES = {}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "config", raising=False)
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        g.load_registry(g.JobArgs(job_name="j", snowflake_path="/sf", groups={}))


# ----- failing the Glue way --------------------------------------------------------------


def test_failure_message_names_every_failed_table_and_its_error():
    results = [g.TableResult("sales.orders", "FULL", "RAW.ORDERS", status="OK"),
               g.TableResult("sales.lines", "UPSERT", "RAW.LINES", error="sales.lines: 2 source row(s) have a NULL"),
               g.TableResult("ops.tickets", "FULL", "RAW.TICKETS", status="SKIPPED", error="lease held by run x")]
    assert g.failure_message(results) == ("2 of 3 table(s) did not load: sales.lines FAILED: sales.lines: 2 source "
                                          "row(s) have a NULL; ops.tickets SKIPPED: lease held by run x")
    drift = g.Drift(rows=10, missing=[3], extra=[], different=[])
    drifted = g.TableResult("sales.events", "APPEND", "RAW.EVENTS", status="DRIFT", verified=drift)
    assert g.failure_message([drifted]) == ("1 of 1 table(s) did not load: sales.events DRIFT: VERIFY 1 mismatched "
                                            "of 10 rows (missing 1, extra 0, different 0)")


def test_on_glue_a_failed_run_raises_with_the_message_locally_it_exits(capsys):
    with pytest.raises(g.JobFailed, match=r"(?s)Nothing ran: .*unknown runtime argument --TABLE"):
        g.script([*BASE, "--TABLE", "x"], environ={"GLUE_VERSION": "5.0"})
    with pytest.raises(g.JobFailed, match="Nothing ran"):        # Glue always passes --JOB_RUN_ID
        g.script([*BASE, "--JOB_RUN_ID", "jr_1", "--TABLE", "x"], environ={})
    with pytest.raises(SystemExit) as info:
        g.script([*BASE, "--TABLE", "x"], environ={})
    assert info.value.code == 2


def test_on_glue_is_told_by_the_environment_or_the_run_id():
    assert g.on_glue({"GLUE_VERSION": "5.0"}) and g.on_glue({}, ["x", "--JOB_RUN_ID", "jr_1"])
    assert not g.on_glue({}, BASE) and not g.on_glue({"GLUE_VERSION": ""}, BASE)


# ----- EMRFS folder markers --------------------------------------------------------------


@pytest.fixture
def bucket(moto_s3):
    moto_s3.create_bucket(Bucket="staging")
    return moto_s3


def keys(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="staging").get("Contents", []))


def test_the_dead_run_sweep_removes_emrfs_folder_markers(bucket):
    started = dt.datetime(2026, 11, 26, 9, 0, 0, tzinfo=dt.UTC)
    folder = g.staging_folder("job", "ETL_DB", "sales.orders")
    mine = g.staging_prefix("job", "ETL_DB", "sales.orders", started)
    older_day = folder + "2026-11-25/20261125T230000000000Z/"
    older_same_day = folder + "2026-11-26/20261126T080000000000Z/"
    newer = folder + "2026-11-26/20261126T090000000001Z/"
    objects = [
        folder.rstrip("/") + "_$folder$",                         # the table folder's marker: every run's
        folder + "2026-11-25_$folder$", older_day.rstrip("/") + "_$folder$", older_day + "part-00000.csv.deflate",
        older_day + "_temporary_$folder$",
        folder + "2026-11-26_$folder$", older_same_day.rstrip("/") + "_$folder$",
        older_same_day + "part-00000.csv.deflate",
        mine.rstrip("/") + "_$folder$", mine + "part-00000.csv.deflate",
        newer.rstrip("/") + "_$folder$", newer + "part-00000.csv.deflate",
        "job/ETL_DB/sales.orders_archive/2026-11-25/20261125T230000000000Z/part-00000.csv.deflate",
    ]
    for key in objects:
        bucket.put_object(Bucket="staging", Key=key, Body=b"" if key.endswith("$") else b"x")
    sf = g.snowflake_settings({"account": "a", "user": "u", "password": "p", "database": "ETL_DB"}, "/sf")
    args = g.JobArgs(job_name="job", snowflake_path="/sf", groups={"AFFILIATE": "/a"})
    ctx = g.RunContext(args=args, run_started=started, spark=None, secrets=g.SecretStore(None),
                       staging=g.S3Staging(bucket, "staging"), warehouse=lambda: None, snowflake=sf,
                       metrics=g.Metrics(None, "job"))
    cfg = g.build_table_config("sales.orders", {"ssmKey": "AFFILIATE", "target_table": "RAW.ORDERS",
                                                "operations": {"type": "APPEND"}})
    staged = g.StagedFiles(g.Table(cfg, ctx), "ETL_DB")
    assert staged.prefix == mine
    staged.sweep()
    assert keys(bucket) == sorted([
        folder.rstrip("/") + "_$folder$", folder + "2026-11-26_$folder$",   # this run's day stays
        mine.rstrip("/") + "_$folder$", mine + "part-00000.csv.deflate",
        newer.rstrip("/") + "_$folder$", newer + "part-00000.csv.deflate",
        "job/ETL_DB/sales.orders_archive/2026-11-25/20261125T230000000000Z/part-00000.csv.deflate"])
    # The run's own cleanup takes its folder's marker too, and nothing of the newer run.
    assert g.S3Staging(bucket, "staging").delete(mine) == 2
    assert mine.rstrip("/") + "_$folder$" not in keys(bucket) and newer + "part-00000.csv.deflate" in keys(bucket)


def test_is_older_run_reads_markers():
    folder = "job/db/t/"
    mine = folder + "2026-11-26/20261126T090000000000Z/"
    assert g.is_older_run(folder + "2026-11-25_$folder$", folder, mine)
    assert not g.is_older_run(folder + "2026-11-26_$folder$", folder, mine)
    assert g.is_older_run(folder + "2026-11-26/20261126T080000000000Z_$folder$", folder, mine)
    assert not g.is_older_run(mine.rstrip("/") + "_$folder$", folder, mine)
    assert not g.is_older_run("job/db/t_$folder$", folder, mine)


# ----- JDBC driver properties -------------------------------------------------------------


def source(driver: str | None, **properties):
    secret = {"engine": "mysql", "host": "h", "port": 3306, "database": "d", "user": "u", "password": "p",
              "properties": properties}
    if driver:
        secret["driver"] = driver
    return g.JdbcSource(None, g.source_settings(secret, "/s"))


def test_connector_j_is_the_mysql_default_with_the_properties_the_guarantees_need():
    props = source(None)._properties()
    assert source(None).settings.driver == "com.mysql.cj.jdbc.Driver"
    assert {k: props[k] for k in ("zeroDateTimeBehavior", "connectionTimeZone", "forceConnectionTimeZoneToSession",
                                  "preserveInstants", "useCursorFetch")} == {
        "zeroDateTimeBehavior": "CONVERT_TO_NULL", "connectionTimeZone": "+00:00",
        "forceConnectionTimeZoneToSession": "true", "preserveInstants": "true", "useCursorFetch": "false"}
    # Rows stream (Integer.MIN_VALUE) instead of the whole result held in memory.
    assert g.STREAMING_FETCH_SIZE["com.mysql.cj.jdbc.Driver"] == -2147483648
    assert {d for d in g.STREAMING_FETCH_SIZE} == {"com.mysql.cj.jdbc.Driver"}
    # A secret adds properties and may change timeouts, never the guarantees' properties.
    props = source(None, zeroDateTimeBehavior="EXCEPTION", connectTimeout="5000", sslMode="REQUIRED")._properties()
    assert (props["zeroDateTimeBehavior"], props["connectTimeout"], props["sslMode"]) == (
        "CONVERT_TO_NULL", "5000", "REQUIRED")


class Reader:
    """Records the options a JDBC read is given (Spark's DataFrameReader API)."""

    def __init__(self):
        self.options = {}

    def format(self, name):
        return self

    def option(self, key, value):
        self.options[key] = value
        return self


def reader_options(driver: str | None) -> dict:
    src = source(driver)
    reader = Reader()
    src.spark = type("Spark", (), {"read": reader})()
    src._reader(5000)
    return reader.options


def test_the_fetch_size_streams_with_connector_j_and_is_kept_for_the_others():
    assert reader_options(None)["fetchsize"] == "-2147483648"
    assert reader_options("org.mariadb.jdbc.Driver")["fetchsize"] == "5000"
    assert reader_options(None)["useCursorFetch"] == "false"


def test_mariadb_connector_j_gets_none_of_connector_js_properties():
    props = source("org.mariadb.jdbc.Driver")._properties()
    assert props == {"user": "u", "password": "p", "connectTimeout": "20000"}


# ----- Spark: java.time values, no local options on Glue ------------------------------------

PROBE = """
import json, sys
import glue_etl_job as g
from pyspark.sql import SparkSession
g.setup_logging()
if sys.argv[1] == "bare":    # what Spark itself sets, as the baseline
    spark, glue = SparkSession.builder.getOrCreate(), None
else:
    spark, glue = g.spark_session("probe", glue=sys.argv[1] == "glue")
conf = spark.sparkContext.getConf()
keys = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions", "spark.jars", "spark.hadoop.fs.s3.impl",
        "spark.hadoop.fs.s3a.endpoint")
print(json.dumps({"job": {k: conf.get(k, None) for k in keys}, "no_glue_context": glue is None,
                  "jvm_args": list(spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
                                   .getInputArguments())}))
spark.stop()
"""


def _probe(extra_env: dict, mode: str = "job") -> dict:
    home = stack.java_home()
    if home is None:
        pytest.fail("no Java 17 (run `make setup`)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "JAVA_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
           "PYTHONPATH": str(ROOT), **extra_env}
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "log": proc.stdout}


def test_without_the_local_stacks_variables_the_job_sets_no_jvm_or_s3_options():
    clean, bare = _probe({}), _probe({}, "bare")
    assert clean["job"] == bare["job"], "the job added Spark options of its own"
    assert {k: clean["job"][k] for k in ("spark.jars", "spark.hadoop.fs.s3.impl", "spark.hadoop.fs.s3a.endpoint")} == {
        "spark.jars": None, "spark.hadoop.fs.s3.impl": None, "spark.hadoop.fs.s3a.endpoint": None}
    assert sorted(clean["jvm_args"]) == sorted(bare["jvm_args"])
    assert not [a for a in clean["jvm_args"] if "user.timezone" in a or "SharedArchiveFile" in a]
    # The same probe sees them when the local stack asks: the test can fail.
    local = _probe({"ETL_SPARK_JAVA_OPTIONS": "-Duser.timezone=UTC", "ETL_SPARK_JARS": str(ROOT / "nothing.jar"),
                    "AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    assert "-Duser.timezone=UTC" in local["job"]["spark.driver.extraJavaOptions"]
    assert local["job"]["spark.executor.extraJavaOptions"] == bare["job"]["spark.executor.extraJavaOptions"]
    assert local["job"]["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:1"
    assert "-Duser.timezone=UTC" in local["jvm_args"]


def test_on_glue_the_local_variables_are_ignored_and_a_failing_gluecontext_is_logged():
    # Here GlueContext cannot start (Glue's JVM classes exist only on Glue): the job says so and
    # goes on with a plain session, and the local stack's variables change nothing on "Glue".
    bare = _probe({}, "bare")
    glue = _probe({"ETL_SPARK_JAVA_OPTIONS": "-Duser.timezone=UTC", "ETL_SPARK_JARS": str(ROOT / "nothing.jar")},
                  "glue")
    assert glue["job"] == bare["job"] and glue["no_glue_context"]
    assert "GlueContext cannot start on Glue" in glue["log"]


@pytest.fixture(scope="module")
def jvm():
    home = stack.java_home()
    if home is None:
        pytest.fail("no Java 17 (run `make setup`)")
    from py4j.java_gateway import JavaGateway
    from pyspark.java_gateway import launch_gateway

    os.environ.setdefault("JAVA_HOME", home)
    gateway: JavaGateway = launch_gateway()
    yield gateway.jvm
    gateway.shutdown()


class Row:
    """A ResultSet positioned on one row of JVM objects (what the JDBC drivers return)."""

    def __init__(self, *values):
        self.values = values

    def getObject(self, i):
        return self.values[i - 1]

    def getString(self, i):
        return str(self.values[i - 1].toString())


def test_python_value_reads_the_java_time_classes_of_connector_j(jvm):
    t = jvm.java.time
    rs = Row(t.LocalDateTime.of(1000, 1, 1, 0, 0, 0, 1000), t.LocalDate.of(1582, 10, 10),
             t.OffsetDateTime.of(2026, 3, 29, 1, 30, 0, 999999000, t.ZoneOffset.ofHours(1)),
             t.LocalTime.of(23, 59, 59, 999999000), jvm.java.sql.Timestamp.valueOf("2026-05-01 10:00:00.000001"),
             jvm.java.sql.Date.valueOf("2026-05-01"), 42, None)
    assert [g._python_value(rs, i) for i in range(1, 9)] == [
        dt.datetime(1000, 1, 1, 0, 0, 0, 1), dt.date(1582, 10, 10), dt.datetime(2026, 3, 29, 0, 30, 0, 999999),
        dt.time(23, 59, 59, 999999), dt.datetime(2026, 5, 1, 10, 0, 0, 1), dt.date(2026, 5, 1), 42, None]
    # Two LocalDateTime bounds split into partitions (what failed with Connector/J before).
    lo, hi = g._python_value(rs, 1), g._python_value(Row(t.LocalDateTime.of(2026, 1, 1, 0, 0)), 1)
    assert len(g.partition_predicates("mysql", "created", lo, hi, 3)) == 3
