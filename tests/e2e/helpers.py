"""Helpers for end-to-end tests: run the real job script, read sources and targets, compare."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pytest

import glue_etl_job as g
from local import stack

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "glue_etl_job.py"
GROUP_ARGS = ["--SNOWFLAKE", "/etl/local/snowflake", "--AFFILIATE", "/etl/local/affiliate",
              "--PROGRAM360", "/etl/local/program360", "--OPS", "/etl/local/ops",
              "--STAGING_BUCKET", "etl-staging"]

# ----- MySQL JDBC drivers (tests/e2e/conftest.py's mysql_driver fixture) ------------------

MYSQL_DRIVERS = {None: "com.mysql.cj.jdbc.Driver", "mariadb": "org.mariadb.jdbc.Driver"}
# Parametrize a test or module fixture with both: None is the job's default (MySQL Connector/J).
MYSQL_DRIVER_PARAMS = [pytest.param(None, id="connectorj"), pytest.param("mariadb", id="mariadb")]
_mysql = {"driver": None}


def use_mysql_driver(name: str | None) -> None:
    """Run the job's MySQL group (--PROGRAM360) through this driver's secret from now on."""
    assert name in MYSQL_DRIVERS, name
    _mysql["driver"] = name


def mysql_driver_in_use() -> str | None:
    return _mysql["driver"]


def group_args() -> list[str]:
    """GROUP_ARGS, with the MySQL secret of the driver in use (local.seed writes both)."""
    suffix = "" if _mysql["driver"] is None else "-" + _mysql["driver"]
    return [f"{a}{suffix}" if a == "/etl/local/program360" else a for a in GROUP_ARGS]


def both_mysql_drivers(fn):
    """Decorator: run the test once per MySQL driver (module fixtures that use mysql_driver too)."""
    return pytest.mark.usefixtures("mysql_driver")(
        pytest.mark.parametrize("mysql_driver", MYSQL_DRIVER_PARAMS, indirect=True, scope="module")(fn))


def job_command(tmp_path: Path, tables: dict | None, *extra: str, job_name: str = "e2e",
                launcher: list[str] | None = None) -> list[str]:
    """The command line Glue would run, with ``tables`` as its --CONFIG (config.py when None).

    ``launcher`` replaces ``glue_etl_job.py`` with a test wrapper that calls its main().
    """
    args = [sys.executable, *(launcher or [str(JOB)]), "--JOB_NAME", job_name, *group_args()]
    if tables is not None:
        path = tmp_path / f"tables-{uuid.uuid4().hex}.json"
        path.write_text(json.dumps({"TABLES": tables}))
        args += ["--CONFIG", str(path)]
    return args + list(extra)


def job_env(env: dict | None = None) -> dict:
    return {**os.environ, **stack.env(), **(env or {})}


def run_job(tmp_path: Path, tables: dict | None, *extra: str, job_name: str = "e2e",
            timeout: int = 600, env: dict | None = None, launcher: list[str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run glue_etl_job.py to the end (see job_command)."""
    return subprocess.run(job_command(tmp_path, tables, *extra, job_name=job_name, launcher=launcher),
                          cwd=ROOT, env=job_env(env), capture_output=True, text=True, timeout=timeout)


def summary(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    """The job's summary table, parsed by its header: table -> {mode, source, delta, target, diff, deleted, status}."""
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("table ") and "status" in line)
    head = re.split(r"\s{2,}", lines[start].strip())
    out = {}
    for line in lines[start + 2:]:
        parts = line.split()
        if len(parts) != len(head) or parts[-1] not in ("OK", "FAILED", "SKIPPED", "DRIFT"):
            break
        row = dict(zip(head, parts, strict=True))
        out[row["table"]] = {"mode": row["mode"], "target": row["target"], "source": _int(row["source"]),
                             "delta": _int(row["delta"]), "target_rows": _int(row["target rows"]),
                             "diff": _int(row["diff"]), "deleted": _int(row.get("deleted", "-")),
                             "status": row["status"]}
    return out


def _int(text: str) -> int | None:
    return None if text == "-" else int(text)


# ----- reading rows ------------------------------------------------------------------


def pg_rows(database: str, table: str, order_by: str) -> tuple[list[str], list[tuple]]:
    with stack.pg_connect(database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table} ORDER BY {order_by}")
        return [d[0].upper() for d in cur.description], cur.fetchall()


@contextmanager
def mysql_cursor(database: str | None = None) -> Iterator:
    """A MariaDB cursor; the work is committed when the block ends without an error."""
    conn = stack.mariadb_connect(database)
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    finally:
        conn.close()


def mysql_rows(database: str, table: str, order_by: str) -> tuple[list[str], list[tuple]]:
    with mysql_cursor(database) as cur:
        cur.execute(f"SELECT * FROM {table} ORDER BY {order_by}")
        return [d[0].upper() for d in cur.description], list(cur.fetchall())


def source_sql(engine: str, schema: str, *sqls: str, many: tuple[str, list] | None = None) -> None:
    """Run statements in a test's source (PostgreSQL: database affiliate; MariaDB: database ``schema``), then
    ``many`` = (statement, rows) for executemany; committed together."""
    if engine == "postgres":
        conn = stack.pg_connect("affiliate")
        try:
            with conn, conn.cursor() as cur:
                for sql in sqls:
                    cur.execute(sql)
                if many:
                    cur.executemany(*many)
        finally:
            conn.close()
        return
    with mysql_cursor(schema) as cur:
        for sql in sqls:
            cur.execute(sql)
        if many:
            cur.executemany(*many)


def fresh_source_schema(engine: str, schema: str, collation: str = "utf8mb4_general_ci") -> None:
    """An empty PostgreSQL schema (database affiliate) or MariaDB database (utf8mb4, ``collation``)."""
    if engine == "postgres":
        source_sql(engine, schema, f"DROP SCHEMA IF EXISTS {schema} CASCADE", f"CREATE SCHEMA {schema}")
        return
    with mysql_cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {schema}")
        cur.execute(f"CREATE DATABASE {schema} CHARACTER SET utf8mb4 COLLATE {collation}")


def source_rows(engine: str, schema: str, table: str) -> list[tuple]:
    """Every row of a test's source table (PostgreSQL: database affiliate; MariaDB: database ``schema``),
    sorted in Python: the engines' collations order texts differently."""
    if engine == "postgres":
        conn = stack.pg_connect("affiliate")
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM {schema}.{table}")
                return sorted(cur.fetchall())
        finally:
            conn.close()
    with mysql_cursor(schema) as cur:
        cur.execute(f"SELECT * FROM {table}")
        return sorted(cur.fetchall())


def sf_rows(table: str, columns: list[str], order_by: str) -> list[tuple]:
    conn = stack.snowflake_connect()
    try:
        cur = conn.cursor()
        cols = ", ".join(f'"{c}"' for c in columns)
        cur.execute(f"SELECT {cols} FROM {table} ORDER BY {order_by}")
        return cur.fetchall()
    finally:
        conn.close()


def recreate_pg_schema(schema: str, tables: Iterable[str],
                       columns: str = "id int PRIMARY KEY, v text, updated_at timestamp(6)") -> None:
    """A fresh PostgreSQL schema (database affiliate) with empty tables of the given columns."""
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
        for name in tables:
            cur.execute(f"CREATE TABLE {schema}.{name} ({columns})")


def reset_target_schema(schema: str) -> None:
    """Drop a test's Snowflake schema and forget its tables' watermarks."""
    state = g.fqn("ETL_DB", "ETL_META", g.STATE_TABLE)
    sf_execute(f"DROP SCHEMA IF EXISTS ETL_DB.{schema} CASCADE", "CREATE SCHEMA IF NOT EXISTS ETL_DB.ETL_META",
               g.create_state_table_sql(state), f"DELETE FROM {state} WHERE TARGET_TABLE LIKE '{schema}.%'")


def sf_query(sql: str) -> list[tuple]:
    conn = stack.snowflake_connect()
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchall()
    finally:
        conn.close()


def sf_scalar(sql: str):
    return sf_query(sql)[0][0]


def sf_execute(*sqls: str) -> None:
    conn = stack.snowflake_connect()
    try:
        for sql in sqls:
            conn.cursor().execute(sql)
    finally:
        conn.close()


# ----- comparing typed values ---------------------------------------------------------


def norm(value):
    """A typed value in a form both sides agree on, without turning it into a string."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if isinstance(value, (int, Decimal)):
        return Decimal(value).normalize() if Decimal(value) != 0 else Decimal(0)
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def assert_same_rows(source: list[tuple], target: list[tuple], context: str = "") -> None:
    """Row by row, value by value; the message shows the first differing rows."""
    assert len(source) == len(target), f"{context}: {len(source)} source rows vs {len(target)} target rows"
    diffs = []
    for i, (s, t) in enumerate(zip(source, target, strict=True)):
        ns, nt = tuple(map(norm, s)), tuple(map(norm, t))
        if ns != nt:
            diffs.append(f"row {i}:\n  source {ns}\n  target {nt}")
        if len(diffs) >= 3:
            break
    assert not diffs, f"{context}: rows differ\n" + "\n".join(diffs)


def assert_table_equal(engine: str, database: str, source_table: str, target: str, key: str,
                       json_columns: tuple[str, ...] = ()) -> int:
    """The Snowflake target holds exactly the source rows (all source columns, typed)."""
    read = pg_rows if engine == "postgres" else mysql_rows
    cols, src = read(database, source_table, key)
    tgt = sf_rows(target, cols, ", ".join(f'"{k.strip().upper()}"' for k in key.split(",")))
    if json_columns:
        idx = [cols.index(c) for c in json_columns]
        tgt = [tuple(json.loads(v) if i in idx and v is not None else v for i, v in enumerate(row)) for row in tgt]
    assert_same_rows(src, tgt, f"{source_table} -> {target}")
    return len(src)


def metric(job_name: str, table: str, name: str) -> float | None:
    """The latest value of a job metric, read back from CloudWatch."""
    cw = stack.boto3_client("cloudwatch")
    now = dt.datetime.now(dt.UTC)
    resp = cw.get_metric_statistics(
        Namespace="GlueETL", MetricName=name,
        Dimensions=[{"Name": "JobName", "Value": job_name}, {"Name": "Table", "Value": table}],
        StartTime=now - dt.timedelta(hours=1), EndTime=now + dt.timedelta(minutes=5),
        Period=60, Statistics=["Maximum", "SampleCount"])
    points = sorted(resp["Datapoints"], key=lambda p: p["Timestamp"])
    return points[-1]["Maximum"] if points else None
