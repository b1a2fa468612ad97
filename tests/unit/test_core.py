"""Unit tests of the pure core: no Spark session, no network."""

import datetime as dt
import json
import logging
from decimal import Decimal

import pytest
import sqlglot
from pyspark.sql import types as T
from sqlglot import exp
from sqlglot.errors import ErrorLevel

import config
import glue_etl_job as g


def entry(**over):
    base = {"ssmKey": "AFFILIATE", "target_table": "RAW.ORDERS", "primary_key": "ID",
            "timestamp_column": "UPDATED_AT", "operations": {"type": "INCREMENTAL"}}
    base.update(over)
    return base


def problems_of(tables, groups=("AFFILIATE", "PROGRAM360", "OPS")):
    with pytest.raises(g.ConfigError) as info:
        g.validate_config(tables, groups)
    return info.value.problems


# ----- config validation --------------------------------------------------------------


def test_shipped_config_is_valid():
    tables = g.validate_config(config.TABLES, g.CONNECTION_GROUPS)
    assert {t.mode for t in tables.values()} == set(g.MODES)
    orders = tables["sales.orders"]
    assert (orders.target, orders.primary_key, orders.delta_column) == ("RAW.ORDERS", ("ID",), "UPDATED_AT")
    assert tables["sales.order_lines"].primary_key == ("ORDER_ID", "LINE_NO")


def test_every_problem_is_reported_at_once():
    problems = problems_of({
        "sales.orders": entry(operations={"type": "SOMETIMES"}),
        "sales.lines": entry(target_table="RAW.LINES", primary_key=None, timestamp_column=None,
                             operations={"type": "UPSERT"}),
        "bad name": entry(target_table="RAW.X"),
        "sales.x": entry(target_table="RAW.Y", colour="blue"),
    })
    text = "\n".join(problems)
    assert "sales.orders: 'operations.type' is 'SOMETIMES'; use one of FULL, INCREMENTAL" in text
    assert "sales.lines: UPSERT needs 'primary_key'" in text
    assert "bad name: the key must be 'namespace.table'" in text
    assert "sales.x: unknown key 'colour'" in text
    assert len(problems) == 4


@pytest.mark.parametrize("over, message", [
    ({"operations": {"type": "INCREMENTAL"}, "timestamp_column": None, "primary_key": None},
     "INCREMENTAL needs 'timestamp_column' or 'primary_key'"),
    ({"timestamp_column": None, "primary_key": ["A", "B"]}, "INCREMENTAL by primary key needs a one-column key"),
    ({"ssmKey": "FINANCE"}, "'ssmKey' is 'FINANCE' but no --FINANCE runtime argument"),
    ({"ssmKey": None}, "'ssmKey' is required"),
    ({"target_table": "ORDERS"}, "'target_table' must be 'SCHEMA.TABLE'"),
    ({"target_table": "RAW.T; DROP TABLE X"}, "'target_table' must be 'SCHEMA.TABLE'"),
    ({"target_table": 'RAW."T"'}, "'target_table' must be 'SCHEMA.TABLE'"),
    ({"primary_key": "ID; DROP"}, "'primary_key' has 'ID; DROP'"),
    ({"primary_key": 5}, "'primary_key' must be a column name or a list"),
    ({"timestamp_column": "updated at"}, "'timestamp_column' has 'updated at'"),
    ({"operations": "INCREMENTAL"}, "'operations' is required"),
    ({"operations": {"type": "FULL", "truncate": True}}, "unknown key 'operations.truncate'"),
    ({"operations": {"type": "FULL", "truncate_before_insert": "yes"}},
     "'operations.truncate_before_insert' must be true or false"),
    ({"num_partitions": 0}, "'num_partitions' must be a whole number >= 1"),
    ({"lookback_seconds": -5}, "'lookback_seconds' must be a whole number >= 0"),
    ({"null_timestamps": "drop"}, "'null_timestamps' is 'drop'"),
    ({"columns": ["NAME"]}, "'primary_key' ID is not in 'columns'"),
    ({"columns": []}, "'columns' must be a non-empty list"),
    ({"transform": "upper"}, "'transform' must be a function"),
    ({"fetch_size": 0}, "'fetch_size' must be a whole number >= 1"),
    ({"count_source": "no"}, "'count_source' must be true or false"),
])
def test_bad_entry_gets_a_message_naming_table_and_key(over, message):
    problems = problems_of({"sales.orders": entry(**over)})
    assert any(p.startswith("sales.orders") and message in p for p in problems), problems


def test_two_tables_cannot_share_a_target():
    problems = problems_of({"sales.a": entry(), "sales.b": entry()})
    assert problems == ["sales.b: 'target_table' RAW.ORDERS is also the target of sales.a; "
                        "each table needs its own target"]


def test_empty_or_non_dict_registry():
    assert problems_of({}) == ["TABLES must be a non-empty dict keyed 'namespace.table'"]
    assert problems_of({"sales.orders": ["x"]}) == ["sales.orders: entry must be a dict, got list"]


def test_names_are_normalised():
    cfg = g.validate_config({"sales.orders": entry(target_table="raw.orders")}, None)["sales.orders"]
    assert (cfg.target_schema, cfg.target_name, cfg.namespace, cfg.source_table) == ("RAW", "ORDERS", "sales",
                                                                                      "orders")


# ----- --OBJ ---------------------------------------------------------------------------


def test_obj_mode_and_suffix():
    tables = g.validate_config({"sales.orders": entry()}, None)
    ov = g.parse_obj('{"sales.orders": "full;_delta"}', tables)
    assert ov == {"sales.orders": g.Override("FULL", "_DELTA")}
    out = g.apply_overrides(tables, ov)["sales.orders"]
    assert (out.mode, out.target) == ("FULL", "RAW.ORDERS_DELTA")
    assert g.parse_obj("", tables) == {} and g.parse_obj(None, tables) == {}


@pytest.mark.parametrize("text, message", [
    ("{not json", "--OBJ is not valid JSON"),
    ('["sales.orders"]', "--OBJ must be a JSON object"),
    ('{"sales.nope": "FULL"}', "--OBJ names 'sales.nope', which is not in the config"),
    ('{"sales.orders": "SOMETIMES"}', "--OBJ 'sales.orders': mode 'SOMETIMES' is not one of"),
    ('{"sales.orders": "FULL;_x; DROP TABLE y"}', "suffix '_x; DROP TABLE y' may only hold"),
    ('{"sales.orders": 3}', "value must be a string 'MODE[;SUFFIX]'"),
])
def test_bad_obj_is_rejected(text, message):
    with pytest.raises(g.ConfigError) as info:
        g.parse_obj(text, ["sales.orders"])
    assert message in str(info.value)


def test_obj_cannot_switch_a_keyless_table_to_upsert():
    tables = g.validate_config({"x.events": entry(primary_key=None, timestamp_column=None,
                                                  operations={"type": "APPEND"})}, None)
    with pytest.raises(g.ConfigError, match=r"x.events \(--OBJ UPSERT\): UPSERT needs 'primary_key'"):
        g.apply_overrides(tables, g.parse_obj('{"x.events": "UPSERT"}', tables))


def test_table_selection():
    tables = g.validate_config(config.TABLES, None)
    assert list(g.select_tables(tables, "ops.tickets, sales.orders")) == ["ops.tickets", "sales.orders"]
    with pytest.raises(g.ConfigError, match="--TABLES names 'ops.nope'"):
        g.select_tables(tables, "ops.nope")


# ----- runtime arguments -------------------------------------------------------------


def test_args_are_read_with_getresolvedoptions():
    args = g.parse_args(["job.py", "--JOB_NAME", "j", "--SNOWFLAKE", "/sf", "--AFFILIATE", "/aff",
                         "--OPS", "/ops", "--OBJ", '{"a.b":"FULL"}', "--PARALLELISM", "3"])
    assert args.job_name == "j" and args.snowflake_path == "/sf"
    assert args.groups == {"AFFILIATE": "/aff", "OPS": "/ops"}
    assert args.obj == '{"a.b":"FULL"}' and args.parallelism == 3 and args.state_schema == "ETL_META"


def test_missing_and_bad_args():
    with pytest.raises(g.ConfigError, match="missing runtime argument --SNOWFLAKE"):
        g.parse_args(["job.py", "--JOB_NAME", "j"])
    with pytest.raises(g.ConfigError, match="--PARALLELISM must be a whole number"):
        g.parse_args(["job.py", "--JOB_NAME", "j", "--SNOWFLAKE", "/sf", "--PARALLELISM", "many"])
    with pytest.raises(g.ConfigError) as info:
        g.parse_args(["job.py", "--JOB_NAME", "j", "--SNOWFLAKE", "/sf", "--LEASE_SECONDS", "1",
                      "--LEASE_WAIT_SECONDS", "-5"])
    assert info.value.problems == ["--LEASE_SECONDS must be a whole number >= 2, got '1'",
                                   "--LEASE_WAIT_SECONDS must be a whole number >= 0, got '-5'"]


def test_lease_arguments_default_to_skip_after_a_two_minute_lease():
    args = g.parse_args(["job.py", "--JOB_NAME", "j", "--SNOWFLAKE", "/sf"])
    assert (args.lease_seconds, args.lease_wait_seconds) == (120, 0)
    args = g.parse_args(["job.py", "--JOB_NAME", "j", "--SNOWFLAKE", "/sf", "--LEASE_SECONDS", "30",
                         "--LEASE_WAIT_SECONDS", "600"])
    assert (args.lease_seconds, args.lease_wait_seconds) == (30, 600)


def test_lease_claim_only_takes_a_free_expired_or_own_lease():
    sql = g.lease_sqls(LEASE)
    assert sql["claim"].startswith(f'UPDATE {LEASE} SET "HOLDER" = %(holder)s')
    assert ('WHERE "TARGET_TABLE" = %(target)s AND ("HOLDER" IS NULL OR "HOLDER" = %(holder)s '
            'OR "EXPIRES_AT" <= CURRENT_TIMESTAMP()::TIMESTAMP_NTZ)') in sql["claim"]
    assert sql["release"].endswith('WHERE "TARGET_TABLE" = %(target)s AND "HOLDER" = %(holder)s')
    assert '"EXPIRES_AT" > CURRENT_TIMESTAMP()::TIMESTAMP_NTZ' in sql["hold_release"]


def test_plan_run_checks_groups_against_arguments():
    args = g.JobArgs(job_name="j", snowflake_path="/sf", groups={"AFFILIATE": "/a"})
    with pytest.raises(g.ConfigError) as info:
        g.plan_run(args, config.TABLES)
    assert any("'ssmKey' is 'OPS' but no --OPS runtime argument" in p for p in info.value.problems)


def test_config_file_json(tmp_path):
    path = tmp_path / "tables.json"
    path.write_text(json.dumps({"TABLES": {"sales.orders": entry()}}))
    args = g.JobArgs(job_name="j", snowflake_path="/sf", groups={"AFFILIATE": "/a"}, config_path=str(path))
    assert [t.key for t in g.plan_run(args, g.load_registry(args))] == ["sales.orders"]
    path.write_text("{oops")
    with pytest.raises(g.ConfigError, match="is not valid JSON"):
        g.load_registry(args)


# ----- secrets -------------------------------------------------------------------------


def test_source_settings():
    s = g.source_settings({"engine": "mariadb", "host": "h", "port": 3306, "database": "d", "user": "u",
                           "password": "pw", "driver": "org.mariadb.jdbc.Driver"}, "/p")
    assert (s.engine, s.url, s.driver) == ("mysql", "jdbc:mysql://h:3306/d", "org.mariadb.jdbc.Driver")
    assert "pw" not in repr(s)
    pg = g.source_settings({"engine": "postgres", "host": "h", "port": 5432, "database": "d", "user": "u",
                            "password": "pw"}, "/p")
    assert (pg.url, pg.driver) == ("jdbc:postgresql://h:5432/d", "org.postgresql.Driver")
    with pytest.raises(g.EtlError, match="SSM parameter /p lacks password"):
        g.source_settings({"engine": "postgres", "host": "h", "port": 1, "database": "d", "user": "u"}, "/p")
    with pytest.raises(g.EtlError, match="engine 'oracle' is not supported"):
        g.source_settings({"engine": "oracle", "host": "h", "port": 1, "database": "d", "user": "u",
                           "password": "x"}, "/p")


def test_snowflake_settings():
    s = g.snowflake_settings({"account": "a", "user": "u", "password": "pw", "database": "etl_db",
                              "warehouse": "wh", "stage": "ETL_DB.ETL_META.STAGE"}, "/sf")
    assert s.database == "ETL_DB" and s.stage == "ETL_DB.ETL_META.STAGE"
    assert s.connect_args["session_parameters"]["TIMEZONE"] == "UTC"
    assert "pw" not in repr(s)
    with pytest.raises(g.EtlError, match=r"SSM parameter /sf lacks account, password \(or private_key\)"):
        g.snowflake_settings({"user": "u", "database": "d"}, "/sf")
    with pytest.raises(g.EtlError, match="'stage' must be a"):
        g.snowflake_settings({"account": "a", "user": "u", "password": "p", "database": "d",
                              "stage": "X; DROP TABLE Y"}, "/sf")


# ----- type mapping --------------------------------------------------------------------


@pytest.mark.parametrize("spark_type, expected", [
    (T.ByteType(), "NUMBER(3,0)"), (T.ShortType(), "NUMBER(5,0)"), (T.IntegerType(), "NUMBER(10,0)"),
    (T.LongType(), "NUMBER(19,0)"), (T.DecimalType(12, 2), "NUMBER(12,2)"), (T.DecimalType(38, 18), "NUMBER(38,18)"),
    (T.FloatType(), "FLOAT"), (T.DoubleType(), "FLOAT"), (T.StringType(), "VARCHAR"), (T.BooleanType(), "BOOLEAN"),
    (T.DateType(), "DATE"), (T.TimestampType(), "TIMESTAMP_TZ(6)"), (T.TimestampNTZType(), "TIMESTAMP_NTZ(6)"),
    (T.BinaryType(), "BINARY"), (T.ArrayType(T.IntegerType()), "VARIANT"),
    (T.MapType(T.StringType(), T.StringType()), "VARIANT"), (T.StructType([]), "VARIANT"),
])
def test_type_mapping(spark_type, expected):
    assert g.snowflake_type(spark_type) == expected


def test_unsupported_type_and_bad_names_are_clear():
    with pytest.raises(g.EtlError) as info:
        g.columns_for([("id", T.LongType()), ("iv", T.DayTimeIntervalType()), ("my col", T.StringType())],
                      "sales.orders")
    text = str(info.value)
    assert text.startswith("sales.orders: ")
    assert "column iv has unsupported type DayTimeIntervalType" in text
    assert "column 'my col' is not a plain identifier" in text
    with pytest.raises(g.EtlError, match="columns Id and ID are the same in Snowflake"):
        g.columns_for([("Id", T.LongType()), ("ID", T.LongType())], "sales.orders")


def test_schema_changes():
    cols = g.columns_for([("id", T.LongType()), ("amount", T.DecimalType(12, 2)), ("note", T.StringType())], "t")
    assert [c.name for c in g.schema_changes(cols, {"ID": "NUMBER", "AMOUNT": "FLOAT"}, "t")] == ["NOTE"]
    with pytest.raises(g.EtlError, match="column ID is DATE in Snowflake but the source now gives NUMBER"):
        g.schema_changes(cols, {"ID": "DATE"}, "sales.orders")


def test_resolve_column_is_case_insensitive():
    assert g.resolve_column("UPDATED_AT", ["id", "updated_at"], "t", "timestamp_column") == "updated_at"
    with pytest.raises(g.EtlError, match="'timestamp_column' column CHANGED does not exist .*columns: id"):
        g.resolve_column("CHANGED", ["id"], "t", "timestamp_column")


# ----- SQL: every statement the job sends is valid Snowflake ---------------------------

COLS = [g.Column("id", "ID", "NUMBER(19,0)"), g.Column("line", "LINE", "NUMBER(10,0)"),
        g.Column("note", "NOTE", "VARCHAR"), g.Column("doc", "DOC", "VARIANT"), g.Column("raw", "RAW", "BINARY"),
        g.Column("updated_at", "UPDATED_AT", "TIMESTAMP_NTZ(6)")]
TARGET = g.fqn("ETL_DB", "RAW", "ORDERS")
STAGE = g.fqn("ETL_DB", "RAW", "ORDERS__ETL_STAGE")
STATE = g.fqn("ETL_DB", "ETL_META", g.STATE_TABLE)
LEASE = g.fqn("ETL_DB", "ETL_META", g.LEASE_TABLE)


def all_statements():
    return [
        g.create_stage_table_sql(STAGE, COLS), g.create_table_sql(TARGET, COLS), g.add_column_sql(TARGET, COLS[2]),
        g.copy_into_sql(STAGE, "s3://bucket/job/db/t/2026-01-01/x/", ["part-0.csv.deflate", "part-1.csv.deflate"],
                        "S3_INT"),
        g.copy_into_sql(STAGE, "@ETL_DB.ETL_META.STAGE/job/db/t/", ["part-0.csv.deflate"]),
        g.merge_sql(TARGET, STAGE, COLS, ["ID", "LINE"], "UPDATED_AT"), g.insert_sql(TARGET, STAGE, COLS),
        g.insert_sql(TARGET, g.deduplicated_sql(STAGE, COLS, ["ID"], None), COLS),
        g.delete_all_sql(TARGET), g.replace_table_sql(TARGET, STAGE, COLS),
        g.stage_stats_sql(STAGE, ["ID", "LINE"], "UPDATED_AT"), g.stage_stats_sql(STAGE, [], None),
        g.count_sql(TARGET), g.max_sql(TARGET, "UPDATED_AT"), g.drop_table_sql(STAGE),
        g.target_columns_sql("ETL_DB"), g.create_schema_sql("ETL_DB", "RAW"), g.create_state_table_sql(STATE),
        g.write_state_sql(STATE), g.read_state_sql(STATE),
        g.create_lease_table_sql(LEASE), *g.lease_sqls(LEASE).values(),
        *(sql for _, sql in g.target_ddl(TARGET, COLS, {"ID": "NUMBER(10,0)", "NOTE": "VARCHAR(10)"}, "t", "UPSERT")),
    ]


def bind(sql):
    """Bound parameters are sent separately; give sqlglot literals in their place."""
    import re
    return re.sub(r"%\((\w+)\)s", "'v'", sql)


@pytest.mark.parametrize("sql", all_statements())
def test_generated_sql_parses_as_snowflake(sql):
    parsed = sqlglot.parse(bind(sql), read="snowflake", error_level=ErrorLevel.RAISE)
    assert len(parsed) == 1
    assert not isinstance(parsed[0], exp.Command), f"sqlglot fell back to an opaque command: {sql}"


def test_copy_names_exact_files_and_the_csv_contract():
    sql = g.copy_into_sql(STAGE, "s3://b/p/", ["part-0.csv.deflate"], "S3_INT")
    assert "FILES = ('part-0.csv.deflate')" in sql and "STORAGE_INTEGRATION = S3_INT" in sql
    for option in ("NULL_IF = ()", "EMPTY_FIELD_AS_NULL = TRUE", "ESCAPE_UNENCLOSED_FIELD = NONE",
                   "FIELD_OPTIONALLY_ENCLOSED_BY = '\"'", "COMPRESSION = DEFLATE", "SKIP_HEADER = 1"):
        assert option in sql


def test_identifiers_and_literals_are_quoted():
    assert g.qi('A"B') == '"A""B"'
    assert g.sql_str("it's \\ here") == "'it''s \\\\ here'"


# ----- delta windows -----------------------------------------------------------------


def test_timestamp_window_is_inclusive_with_lookback_and_nulls():
    wm = g.Watermark("UPDATED_AT", "2026-01-02 03:04:05.000007")
    assert g.delta_predicate("postgres", "updated_at", wm, null_policy="exclude") == \
        "\"updated_at\" >= TIMESTAMP '2026-01-02 03:04:05.000007'"
    assert g.delta_predicate("mysql", "updated_at", wm, lookback_seconds=3600, null_policy="include") == \
        "(`updated_at` >= TIMESTAMP '2026-01-02 02:04:05.000007' OR `updated_at` IS NULL)"
    assert g.delta_predicate("postgres", "x", None) is None


def test_key_window_is_exclusive():
    assert g.delta_predicate("postgres", "id", g.Watermark("ID", "41"), null_policy="exclude") == '"id" > 41'


def test_watermark_text_keeps_microseconds_in_utc():
    aware = dt.datetime(2026, 1, 2, 5, 4, 5, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert g.watermark_text(aware) == "2026-01-02 03:04:05.000007"
    assert g.watermark_text(dt.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05.000000"
    assert g.watermark_text(dt.datetime(5, 1, 2)) == "0005-01-02 00:00:00.000000"
    assert g.watermark_text(dt.date(5, 1, 2)) == "0005-01-02 00:00:00.000000"
    assert g.watermark_text(Decimal("42")) == "42" and g.watermark_text(7) == "7"
    assert g.watermark_text(None) is None
    with pytest.raises(g.EtlError, match="neither a timestamp nor an integer"):
        g.watermark_text("abc")


def test_source_queries():
    assert g.source_query("postgres", "sales", "orders", ["id", "note"], '"id" > 3') == \
        'SELECT "id", "note" FROM "sales"."orders" WHERE "id" > 3'
    assert g.source_stats_query("mysql", "p", "m", None, "id", "ts") == \
        "SELECT COUNT(*) AS n, MIN(`id`) AS lo, MAX(`id`) AS hi, " \
        "SUM(CASE WHEN `ts` IS NULL THEN 1 ELSE 0 END) AS nulls FROM `p`.`m`"


@pytest.mark.parametrize("lo, hi, n, values", [
    (1, 100, 3, [None, -5, 1, 33, 34, 66, 67, 100, 10**12]),
    (Decimal("0.5"), Decimal("1000.25"), 4, [None, Decimal("-1"), Decimal("0.5"), Decimal("250.4375"),
                                             Decimal("500.375"), Decimal("1000.25"), Decimal("5000")]),
    (Decimal("1000"), Decimal("4000"), 3, [None, Decimal("1999"), Decimal("2000"), Decimal("4000")]),
    (dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, 0, 0, 0, 3), 3,
     [None, dt.datetime(1999, 1, 1), dt.datetime(2020, 1, 1, 0, 0, 0, 1), dt.datetime(2020, 1, 1, 0, 0, 0, 2),
      dt.datetime(2030, 1, 1)]),
    (dt.date(2020, 1, 1), dt.date(2020, 12, 31), 4, [None, dt.date(2019, 1, 1), dt.date(2020, 4, 1),
                                                     dt.date(2020, 12, 31), dt.date(2021, 1, 1)]),
])
def test_partition_predicates_select_every_row_exactly_once(lo, hi, n, values):
    import duckdb

    preds = g.partition_predicates("postgres", "c", lo, hi, n)
    assert 2 <= len(preds) <= n
    con = duckdb.connect()
    kind = {int: "BIGINT", Decimal: "DECIMAL(18,4)", dt.datetime: "TIMESTAMP", dt.date: "DATE"}[type(lo)]
    con.execute(f'CREATE TABLE t (c {kind})')
    con.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
    hits = " + ".join(f"CASE WHEN {p} THEN 1 ELSE 0 END" for p in preds)
    assert con.execute(f"SELECT c, {hits} FROM t WHERE {hits} <> 1").fetchall() == []
    for p in preds:
        sqlglot.parse_one(f"SELECT 1 FROM t WHERE {p}", read="postgres", error_level=ErrorLevel.RAISE)
        sqlglot.parse_one(f"SELECT 1 FROM t WHERE {p}".replace('"', "`"), read="mysql", error_level=ErrorLevel.RAISE)


def test_partition_predicates_fall_back_to_one_read():
    assert g.partition_predicates("postgres", "c", 5, 5, 3) == []
    assert g.partition_predicates("postgres", "c", None, None, 3) == []
    assert g.partition_predicates("postgres", "c", 1, 100, 1) == []
    assert g.partition_predicates("postgres", "c", dt.date(2020, 1, 1), dt.date(2020, 1, 2), 4) == []
    assert g.source_literal(dt.datetime(5, 1, 2, 3, 4, 5, 6)) == "TIMESTAMP '0005-01-02 03:04:05.000006'"
    assert g.source_literal(Decimal("1E+3")) == "1000"
    with pytest.raises(g.EtlError, match="neither numbers, dates nor timestamps"):
        g.partition_predicates("postgres", "c", "a", "b", 2)


def test_partition_count():
    assert g.partition_count(10, 8, None) == 1
    assert g.partition_count(1_200_000, 2, None, per_partition=500_000) == 2
    assert g.partition_count(1_200_000, 8, None, per_partition=500_000) == 3
    assert g.partition_count(5, 2, 4) == 4


def test_staging_prefix():
    started = dt.datetime(2026, 11, 26, 9, 8, 7, 123456, tzinfo=dt.UTC)
    assert g.staging_prefix("etl demo", "affiliate", "sales.orders", started) == \
        "etl_demo/affiliate/sales.orders/2026-11-26/20261126T090807123456Z/"


# ----- summary, metrics, redaction -----------------------------------------------------


def test_summary_and_metrics():
    ok = g.TableResult("sales.orders", "INCREMENTAL", "RAW.ORDERS", "OK", 10, 2, 10, 1, 1, 1.25)
    bad = g.TableResult("ops.tickets", "FULL", "RAW.TICKETS", error="boom")
    text = g.summary_table([ok, bad])
    assert "1/2 tables OK" in text and "ops.tickets: boom" in text
    assert text.splitlines()[2].split() == ["sales.orders", "INCREMENTAL", "RAW.ORDERS", "10", "2", "10", "0",
                                            "-", "1.2", "OK"]
    values = g.metric_values(ok)
    assert values["RowDifference"] == 0 and values["Success"] == 1 and values["Failure"] == 0
    assert g.metric_values(bad)["Failure"] == 1


def test_redactor_hides_registered_secrets(caplog):
    red = g.Redactor()
    red.add("s3cr3t-pw", None, "ab")
    assert red.clean("login failed for s3cr3t-pw") == "login failed for ***"
    logger = logging.getLogger("redaction-test")
    logger.addFilter(red)
    with caplog.at_level(logging.INFO, logger="redaction-test"):
        logger.info("password=%s", "s3cr3t-pw")
    assert "s3cr3t-pw" not in caplog.text and "password=***" in caplog.text


def test_older_runs_are_told_apart_from_this_one():
    folder = g.staging_folder("job", "db", "sales.orders")
    mine = g.staging_prefix("job", "db", "sales.orders", dt.datetime(2026, 11, 26, 9, 0, 0, tzinfo=dt.UTC))
    older = folder + "2026-11-25/20261125T230000000000Z/part-0.csv.deflate"
    newer = folder + "2026-11-26/20261126T090000000001Z/part-0.csv.deflate"
    assert g.is_older_run(older, folder, mine)
    assert not g.is_older_run(mine + "part-0.csv.deflate", folder, mine)
    assert not g.is_older_run(newer, folder, mine)
