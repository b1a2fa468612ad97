"""A one-column table whose value is NULL: the staged line must not be blank.

Spark's CSV writer skips blank lines, and Snowflake's COPY rejects them by default
(SKIP_BLANK_LINES = FALSE), so a row whose only value is NULL was lost. The job stages such a
table with a constant pad column (``staged_columns``); the target has only the real column.
"""

from __future__ import annotations

import pytest

from local import stack
from tests.e2e import helpers as h

ROWS = "INSERT INTO one_col.{t} VALUES (NULL), (''), ('x'), (NULL), ('NULL'), (' ')"
TABLES = {
    "one_col.full_t": {"ssmKey": "AFFILIATE", "target_table": "ONE_COL.FULL_T", "operations": {"type": "FULL"}},
    "one_col.append_t": {"ssmKey": "AFFILIATE", "target_table": "ONE_COL.APPEND_T",
                         "operations": {"type": "APPEND"}},
}


@pytest.fixture(scope="module")
def run(stack_env, tmp_path_factory):
    h.reset_target_schema("ONE_COL")
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS one_col CASCADE; CREATE SCHEMA one_col")
        for t in ("full_t", "append_t"):
            cur.execute(f"CREATE TABLE one_col.{t} (v text)")
            cur.execute(ROWS.format(t=t))
    proc = h.run_job(tmp_path_factory.mktemp("one_col"), TABLES, job_name="e2e-one-col")
    return proc, h.summary(proc)


@pytest.mark.parametrize("table", ["full_t", "append_t"])
def test_null_empty_and_text_rows_all_arrive(run, table):
    proc, summary = run
    assert summary[f"one_col.{table}"]["status"] == "OK", proc.stdout[-3000:]
    assert summary[f"one_col.{table}"]["delta"] == 6
    cols, src = h.pg_rows("affiliate", f"one_col.{table}", "v NULLS FIRST")
    assert cols == ["V"]
    tgt = h.sf_rows(f"ETL_DB.ONE_COL.{table.upper()}", cols, '"V" NULLS FIRST')
    h.assert_same_rows(src, tgt, table)
    assert [r[0] for r in tgt] == [None, None, "", " ", "NULL", "x"]
    # The pad column exists only in the staging CSV and table, never in the target.
    names = h.sf_query("SELECT COLUMN_NAME FROM ETL_DB.INFORMATION_SCHEMA.COLUMNS "
                       f"WHERE TABLE_SCHEMA = 'ONE_COL' AND TABLE_NAME = '{table.upper()}'")
    assert [n[0] for n in names] == ["V"]
