"""Partitioned reads: Spark splits the source read on a numeric, timestamp or timestamptz column
(PostgreSQL) or a DATETIME column (MySQL, with each MySQL driver).

Each table is read in 3 partitions (``partition_predicates``) on a different kind of column, with
NULLs in it (read by the first partition). Spark's own partitioning rejects TimestampNTZ columns,
which every source timestamp is. The numeric and timestamp columns are staged as the source's
text (VERBATIM_TYPES), and every value must arrive unchanged.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from local import stack
from tests.e2e import helpers as h

TABLES = {
    # name: (DDL columns, partition_column or None for the numeric primary key, verbatim columns expected)
    "by_ts": ("id int PRIMARY KEY, amount numeric(12,2), created timestamp(6), note text", "created", 2),
    "by_tstz": ("id int PRIMARY KEY, amount numeric(38,10), happened timestamptz(6), wall timestamp(6)",
                "happened", 2),
    "by_num": ("id numeric(12,0) PRIMARY KEY, tiny numeric(5,5), wall timestamp(0), big numeric", None, 4),
}
ROWS = 300


def fill(name: str) -> str:
    """ROWS rows: timestamps spread over 1999-2030 with microseconds, every 7th NULL, edge decimals."""
    base = "TIMESTAMP '1999-12-31 23:59:59.999999' + (g * INTERVAL '1 day 1 hour 1.000001 second') * 37"
    ts = f"CASE WHEN g % 7 = 0 THEN NULL ELSE {base} END"
    if name == "by_ts":
        cols = f"g, (g * 1234.56 - 99999) / 100, {ts}, 'n' || g"
    elif name == "by_tstz":
        cols = (f"g, CASE WHEN g % 5 = 0 THEN 0 ELSE g * -1.0000000001 * power(10::numeric, g % 17) END, "
                f"({ts}) AT TIME ZONE 'Asia/Kolkata', {ts}")
    else:
        cols = (f"g * 1000, CASE WHEN g % 3 = 0 THEN -0.00001 ELSE 0.99999 END, date_trunc('second', {base}), "
                f"CASE WHEN g % 4 = 0 THEN NULL ELSE g::numeric / 8 END")
    return f"INSERT INTO parts.{name} SELECT {cols} FROM generate_series(1, {ROWS}) g"


@pytest.fixture(scope="module")
def run(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("partitions")
    h.reset_target_schema("PARTS")
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS parts CASCADE; CREATE SCHEMA parts")
        for name, (ddl, _, _) in TABLES.items():
            cur.execute(f"CREATE TABLE parts.{name} ({ddl})")
            cur.execute(fill(name))
    registry = {}
    for name, (_, column, _) in TABLES.items():
        entry = {"ssmKey": "AFFILIATE", "target_table": f"PARTS.{name.upper()}", "primary_key": "id",
                 "num_partitions": 3, "operations": {"type": "FULL"}}
        if column:
            entry["partition_column"] = column
        registry[f"parts.{name}"] = entry
    return h.run_job(tmp, registry, job_name="e2e-partitions")


@pytest.mark.parametrize("name", list(TABLES))
def test_partitioned_read_loads_every_value(run, name):
    assert run.returncode == 0, run.stdout[-3000:]
    extract = re.search(rf"table=parts\.{name} step=extract .*", run.stdout).group(0)
    assert "partitions=3" in extract, extract
    assert f"verbatim={TABLES[name][2]} " in extract, extract
    assert h.assert_table_equal("postgres", "affiliate", f"parts.{name}", f"ETL_DB.PARTS.{name.upper()}", "id") == ROWS


# ----- MySQL: a DATETIME partition column, with each MySQL driver --------------------------------
# MySQL Connector/J returns the DATETIME bounds as java.time.LocalDateTime, MariaDB's driver as
# java.sql.Timestamp: both must split the read into 3 ranges that together hold every row.

MY_DDL = "CREATE TABLE parts.by_dt (id int PRIMARY KEY, amount decimal(12,2), created datetime(6), note text)"


def my_rows() -> list[tuple]:
    base = dt.datetime(1999, 12, 31, 23, 59, 59, 999999)
    step = dt.timedelta(days=1, hours=1, seconds=1, microseconds=1) * 37
    return [(g, Decimal(g * 123456 - 9999999) / 100, None if g % 7 == 0 else base + g * step, f"n{g}")
            for g in range(1, ROWS + 1)]


@pytest.fixture(scope="module")
def my_run(stack_env, mysql_driver, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("partitions-my")
    h.reset_target_schema("PARTS_MY")
    with h.mysql_cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS parts")
        cur.execute("CREATE DATABASE parts")
        cur.execute(MY_DDL)
        cur.executemany("INSERT INTO parts.by_dt VALUES (%s, %s, %s, %s)", my_rows())
    registry = {"parts.by_dt": {"ssmKey": "PROGRAM360", "target_table": "PARTS_MY.BY_DT", "primary_key": "id",
                                "partition_column": "created", "num_partitions": 3,
                                "operations": {"type": "FULL"}}}
    return h.run_job(tmp, registry, job_name="e2e-partitions-my")


@h.both_mysql_drivers
def test_a_mysql_datetime_partition_column_splits_the_read(my_run):
    assert my_run.returncode == 0, my_run.stdout[-3000:]
    extract = re.search(r"table=parts\.by_dt step=extract .*", my_run.stdout).group(0)
    assert "partitions=3" in extract, extract
    assert h.assert_table_equal("mysql", "parts", "parts.by_dt", "ETL_DB.PARTS_MY.BY_DT", "id") == ROWS
