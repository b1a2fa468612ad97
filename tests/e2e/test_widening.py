"""Type widening, end to end: one job run against the local stack.

``widen.grow``'s source columns widened since the target was loaded (integer -> bigint, numeric(10,2)
-> numeric(14,2), varchar(10) -> varchar(50) into a target sized VARCHAR(10)); the job widens the
target columns in place, adds the new column and loads values that need the new types. ``widen.scale``'s numeric(10,2)
became numeric(12,4): Snowflake cannot change a column's scale, so the table fails naming the column,
both types and the fix, and its target keeps its rows and its types.
The emulator refuses the changes Snowflake refuses (local/fakesnow_server.py, item 9).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from local import stack
from tests.e2e import helpers as h

BIG = 2**62 + 1                     # needs NUMBER(19,0): NUMBER(10,0) holds 10 digits
LONG_TEXT = "x" * 45 + "yzzy!"     # 50 characters
# The rows an earlier run loaded (when the source was integer, numeric(10,2), varchar(10)).
OLD_ROWS = [(1, 2147483647, Decimal("12345678.12"), "ten chars!"), (2, -5, Decimal("-0.01"), None)]
TYPES_SQL = ("SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE "
             "FROM ETL_DB.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = 'WIDEN' AND TABLE_NAME = '{t}' "
             "ORDER BY ORDINAL_POSITION")
TABLES = {f"widen.{t}": {"ssmKey": "AFFILIATE", "target_table": f"WIDEN.{t.upper()}", "primary_key": "ID",
                         "operations": {"type": "UPSERT"}} for t in ("grow", "scale")}


def sf_literal(value) -> str:
    return "NULL" if value is None else f"'{value}'" if isinstance(value, str) else str(value)


@pytest.fixture(scope="module")
def run(stack_env, tmp_path_factory):
    h.reset_target_schema("WIDEN")
    old = ", ".join("(" + ", ".join(map(sf_literal, r)) + ")" for r in OLD_ROWS)
    h.sf_execute("CREATE SCHEMA IF NOT EXISTS ETL_DB.WIDEN",
                 # what the job created for integer and numeric(10,2); a user sized V
                 'CREATE TABLE ETL_DB.WIDEN.GROW ("ID" NUMBER(10,0), "N" NUMBER(10,0), "AMOUNT" NUMBER(10,2), '
                 '"V" VARCHAR(10))', f"INSERT INTO ETL_DB.WIDEN.GROW VALUES {old}",
                 'CREATE TABLE ETL_DB.WIDEN.SCALE ("ID" NUMBER(10,0), "AMOUNT" NUMBER(10,2))',
                 "INSERT INTO ETL_DB.WIDEN.SCALE VALUES (1, 12345678.12), (2, -0.01)")
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS widen CASCADE; CREATE SCHEMA widen")
        cur.execute("CREATE TABLE widen.grow (id int PRIMARY KEY, n int, amount numeric(10,2), v varchar(10))")
        cur.executemany("INSERT INTO widen.grow VALUES (%s, %s, %s, %s)", OLD_ROWS)
        cur.execute("ALTER TABLE widen.grow ALTER COLUMN n TYPE bigint, ALTER COLUMN amount TYPE numeric(14,2), "
                    "ALTER COLUMN v TYPE varchar(50)")
        cur.executemany("INSERT INTO widen.grow VALUES (%s, %s, %s, %s)", [
            (3, BIG, Decimal("123456789012.34"), LONG_TEXT), (4, -(2**63), Decimal("-999999999999.99"), "short")])
        cur.execute("UPDATE widen.grow SET v = 'now longer than ten' WHERE id = 1")
        cur.execute("ALTER TABLE widen.grow ADD COLUMN since date")                 # a new column: ADD COLUMN
        cur.execute("UPDATE widen.grow SET since = DATE '2026-12-01' WHERE id IN (1, 3)")
        cur.execute("CREATE TABLE widen.scale (id int PRIMARY KEY, amount numeric(10,2))")
        cur.execute("INSERT INTO widen.scale VALUES (1, 12345678.12), (2, -0.01)")
        cur.execute("ALTER TABLE widen.scale ALTER COLUMN amount TYPE numeric(12,4)")
        cur.execute("INSERT INTO widen.scale VALUES (3, 1.2345)")
    proc = h.run_job(tmp_path_factory.mktemp("widen"), TABLES, job_name="e2e-widening")
    return proc, h.summary(proc)


def test_widened_source_columns_widen_the_target_and_load_value_by_value(run):
    proc, summary = run
    assert summary["widen.grow"]["status"] == "OK", proc.stdout[-3000:] + proc.stderr[-3000:]
    assert h.assert_table_equal("postgres", "affiliate", "widen.grow", "ETL_DB.WIDEN.GROW", "id") == 4
    assert h.sf_scalar('SELECT "N" FROM ETL_DB.WIDEN.GROW WHERE "ID" = 3') == BIG
    assert h.sf_scalar('SELECT "V" FROM ETL_DB.WIDEN.GROW WHERE "ID" = 3') == LONG_TEXT
    assert h.sf_query(TYPES_SQL.format(t="GROW")) == [
        ("ID", "NUMBER", None, 10, 0), ("N", "NUMBER", None, 19, 0), ("AMOUNT", "NUMBER", None, 14, 2),
        ("V", "TEXT", 16777216, None, None), ("SINCE", "DATE", None, None, None)]
    log = proc.stdout + proc.stderr
    for what in ("widened N NUMBER(10,0)->NUMBER(19,0)", "widened AMOUNT NUMBER(10,2)->NUMBER(14,2)",
                 "widened V VARCHAR(10)->VARCHAR", "added_column SINCE DATE"):
        assert f"step=ddl {what}" in log


def test_a_scale_change_fails_the_table_and_leaves_the_target_unchanged(run):
    proc, summary = run
    assert summary["widen.scale"]["status"] == "FAILED"
    assert ("widen.scale: the source schema changed incompatibly with the target: column AMOUNT is NUMBER(10,2) "
            "in Snowflake but the source now gives NUMBER(12,4) (it keeps 2 decimal place(s), the source has 4). "
            """Run it once with --OBJ '{"widen.scale": "FULL"}' to redefine the target, or alter the Snowflake """
            "column yourself") in proc.stdout
    assert h.sf_query('SELECT "ID", "AMOUNT" FROM ETL_DB.WIDEN.SCALE ORDER BY "ID"') == \
        [(1, Decimal("12345678.12")), (2, Decimal("-0.01"))]
    assert h.sf_query(TYPES_SQL.format(t="SCALE")) == [("ID", "NUMBER", None, 10, 0), ("AMOUNT", "NUMBER", None, 10, 2)]
    assert proc.returncode == 1                     # one table failed


@pytest.mark.parametrize("change, error", [
    ('"AMOUNT" SET DATA TYPE NUMBER(12,4)', "because changing the scale of a number is not supported"),
    ('"V" SET DATA TYPE VARCHAR(5)', "because reducing the byte-length of varchar is not supported"),
    ('"V" SET DATA TYPE NUMBER(10,0)', "cannot change column V from type VARCHAR(16777216) to NUMBER(10,0)"),
    ('"N" SET DATA TYPE FLOAT', "cannot change column N from type NUMBER(19,0) to FLOAT"),
])
def test_the_emulator_refuses_what_snowflake_refuses(run, change, error):
    with pytest.raises(Exception, match=error.replace("(", r"\(").replace(")", r"\)")):
        h.sf_execute(f"ALTER TABLE ETL_DB.WIDEN.GROW ALTER COLUMN {change}")
