"""The target-type check against INFORMATION_SCHEMA: a narrower existing target fails the table
before anything is written, with the column and the fix; a wider one loads value by value.
"""

from __future__ import annotations

import pytest

from local import stack
from tests.e2e import helpers as h

SOURCE = ("INSERT INTO ttypes.{t} VALUES (1, 123456.7891, '2026-05-01 10:00:00.123456+00'), "
          "(2, -0.0001, '1999-12-31 23:59:59.999999+00'), (3, NULL, NULL)")
TARGETS = {
    "NARROW": '"ID" NUMBER(10,0), "AMOUNT" NUMBER(5,2), "AT" TIMESTAMP_TZ(6)',
    "WIDE": '"ID" NUMBER(38,0), "AMOUNT" NUMBER(20,6), "AT" TIMESTAMP_TZ(6)',
    "WALL": '"ID" NUMBER(10,0), "AMOUNT" NUMBER(10,4), "AT" TIMESTAMP_NTZ(6)',
}


def entry(target: str) -> dict:
    return {"ssmKey": "AFFILIATE", "target_table": f"TTYPES.{target}", "primary_key": "ID",
            "operations": {"type": "UPSERT"}}


TABLES = {f"ttypes.{t.lower()}": entry(t) for t in TARGETS}


@pytest.fixture(scope="module")
def run(stack_env, tmp_path_factory):
    h.reset_target_schema("TTYPES")
    h.sf_execute("CREATE SCHEMA IF NOT EXISTS ETL_DB.TTYPES",
                 *[f"CREATE TABLE ETL_DB.TTYPES.{t} ({cols})" for t, cols in TARGETS.items()])
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS ttypes CASCADE; CREATE SCHEMA ttypes")
        for t in TARGETS:
            cur.execute(f"CREATE TABLE ttypes.{t.lower()} (id int PRIMARY KEY, amount numeric(10,4), "
                        f"at timestamptz(6))")
            cur.execute(SOURCE.format(t=t.lower()))
    proc = h.run_job(tmp_path_factory.mktemp("ttypes"), TABLES, job_name="e2e-target-types")
    return proc, h.summary(proc)


def test_a_narrower_number_fails_the_table_naming_the_column_and_the_fix(run):
    proc, summary = run
    assert summary["ttypes.narrow"]["status"] == "FAILED"
    assert ("ttypes.narrow: the source schema changed incompatibly with the target: column AMOUNT is "
            "NUMBER(5,2) in Snowflake but the source now gives NUMBER(10,4) (it keeps 2 decimal place(s), "
            "the source has 4)") in proc.stdout
    assert """Run it once with --OBJ '{"ttypes.narrow": "FULL"}' to redefine the target""" in proc.stdout
    assert h.sf_scalar("SELECT COUNT(*) FROM ETL_DB.TTYPES.NARROW") == 0          # nothing written
    assert proc.returncode == 1


def test_a_wall_clock_target_for_instants_is_refused(run):
    proc, summary = run
    assert summary["ttypes.wall"]["status"] == "FAILED"
    assert ("column AT is TIMESTAMP_NTZ in Snowflake but the source now gives TIMESTAMP_TZ(6) "
            "(TIMESTAMP_NTZ is not TIMESTAMP_TZ") in proc.stdout
    assert h.sf_scalar("SELECT COUNT(*) FROM ETL_DB.TTYPES.WALL") == 0


def test_a_wider_target_loads_every_value(run):
    proc, summary = run
    assert summary["ttypes.wide"]["status"] == "OK", proc.stdout[-3000:]
    assert h.assert_table_equal("postgres", "affiliate", "ttypes.wide", "ETL_DB.TTYPES.WIDE", "id") == 3
    types = h.sf_query("SELECT COLUMN_NAME, NUMERIC_PRECISION, NUMERIC_SCALE FROM ETL_DB.INFORMATION_SCHEMA.COLUMNS "
                       "WHERE TABLE_SCHEMA = 'TTYPES' AND TABLE_NAME = 'WIDE' ORDER BY ORDINAL_POSITION")
    assert types[:2] == [("ID", 38, 0), ("AMOUNT", 20, 6)]                        # the target kept its definition
