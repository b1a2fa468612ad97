"""The CSV text ``stage_dataframe`` writes, read back byte for byte from its zlib part files.

Snowflake documents 'NaN', 'inf' and '-inf' as FLOAT's special values (Numeric data types,
"Special values") and a +hh:mm offset among TIMESTAMP_TZ's AUTO forms (Date and time input and
output formats); Spark's own spellings (Infinity, Z) are not among them. A row whose only value
is NULL is a blank line, which Spark's writer drops: a one-column table gets a pad column.

One local SparkSession (file:// output, no stack needed), about 10 s with JVM start.
"""

from __future__ import annotations

import datetime as dt
import os
import zlib
from pathlib import Path

import pytest
from pyspark.sql import types as T

import glue_etl_job as g
from local import stack


@pytest.fixture(scope="module")
def spark():
    home = stack.java_home()
    if home is None:
        pytest.fail("no Java 17 for Spark: run `make setup`")
    saved = {k: os.environ.get(k) for k in ("JAVA_HOME", "SPARK_LOCAL_IP", "PYSPARK_PYTHON", "ETL_SPARK_JARS")}
    os.environ.update(JAVA_HOME=home, SPARK_LOCAL_IP=stack.HOST, PYSPARK_PYTHON=stack._python())
    os.environ.pop("ETL_SPARK_JARS", None)              # plain local files: no S3A or JDBC jars
    session, _ = g.spark_session("test-staging-forms")
    yield session
    session.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def staged_lines(spark, tmp_path: Path, schema: T.StructType, rows: list[tuple]) -> list[str]:
    out = tmp_path / "staged"
    g.stage_dataframe(spark.createDataFrame(rows, schema).coalesce(1), out.as_uri())
    parts = sorted(out.glob(f"*{g.STAGED_SUFFIX}"))
    assert len(parts) == 1
    return zlib.decompress(parts[0].read_bytes()).decode("utf-8").split("\n")


def test_floats_and_timestamps_are_staged_in_snowflakes_documented_forms(spark, tmp_path):
    schema = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("d", T.DoubleType()),
                           T.StructField("f", T.FloatType()), T.StructField("tz", T.TimestampType()),
                           T.StructField("ntz", T.TimestampNTZType())])
    utc = dt.UTC
    rows = [(1, float("nan"), float("nan"), dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=utc),
             dt.datetime(2024, 1, 2, 3, 4, 5, 123456)),
            (2, float("inf"), float("inf"), dt.datetime(1970, 1, 1, tzinfo=utc), dt.datetime(9999, 12, 31, 23, 59, 59)),
            (3, float("-inf"), float("-inf"), dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
             None),
            (4, -0.0, 0.1, None, None), (5, 1e-7, 3.4028235e38, None, None), (6, None, None, None, None),
            (7, 1.7976931348623157e308, -1.4e-45, None, None), (8, 0.1, 1.5, None, None)]
    assert staged_lines(spark, tmp_path, schema, rows) == [
        "id,d,f,tz,ntz",
        "1,NaN,NaN,2024-01-02T03:04:05.123456+00:00,2024-01-02T03:04:05.123456",
        "2,inf,inf,1970-01-01T00:00:00.000000+00:00,9999-12-31T23:59:59.000000",
        "3,-inf,-inf,2024-06-01T10:00:00.000000+00:00,",       # an instant, in UTC with its offset
        "4,-0.0,0.1,,",
        "5,1.0E-7,3.4028235E38,,",
        "6,,,,",
        "7,1.7976931348623157E308,-1.4E-45,,",
        "8,0.1,1.5,,",
        "",
    ]


def test_a_one_column_table_keeps_its_null_rows(spark, tmp_path):
    schema = T.StructType([T.StructField("v", T.StringType())])
    lines = staged_lines(spark, tmp_path, schema, [(None,), ("",), ("x",), (None,)])
    # Without the pad Spark writes 'v\n""\nx\n': both NULL rows gone (its writer skips blank lines).
    assert lines == ["v,_etl_pad", ",1", '"",1', "x,1", ",1", ""]
    cols = g.columns_for([("v", T.StringType())], "t")
    assert [c.name for c in g.staged_columns(cols)] == ["V", "_ETL_PAD"]
    assert g.staged_columns(g.columns_for([("a", T.StringType()), ("b", T.StringType())], "t")) == \
        g.columns_for([("a", T.StringType()), ("b", T.StringType())], "t")
    # A table whose only column is called _ETL_PAD still gets two distinct columns.
    assert [c.name for c in g.staged_columns([g.Column("_etl_pad", "_ETL_PAD", "VARCHAR")])] == \
        ["_ETL_PAD", "_ETL_PAD_"]


def test_the_padded_staging_table_parses_as_snowflake():
    import sqlglot
    from sqlglot.errors import ErrorLevel

    sql = g.create_stage_table_sql('"ETL_DB"."ETL_META"."STAGE__RAW__ONE"',
                                   g.staged_columns([g.Column("v", "V", "VARCHAR")]))
    parsed = sqlglot.parse_one(sql, read="snowflake", error_level=ErrorLevel.RAISE)
    assert [c.name for c in parsed.find_all(sqlglot.exp.ColumnDef)] == ["V", "_ETL_PAD"]
