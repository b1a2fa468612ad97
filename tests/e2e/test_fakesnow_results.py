"""The local Snowflake answers a result of more than a million rows, as Snowflake does (local/fakesnow_server.py
item 11): DuckDB hands fakesnow 0.11.22 at most 1,000,000 rows an Arrow batch, and its server could serialize one
batch only (HTTP 500, retried by the connector until its network timeout). Read back through the real connector,
every row is there."""

from __future__ import annotations

from tests.e2e import helpers as h

ROWS = 1_500_000


def test_a_result_of_more_than_a_million_rows_comes_back_whole(stack_env):
    h.sf_execute("CREATE SCHEMA IF NOT EXISTS ETL_DB.EMULATOR",
                 "CREATE OR REPLACE TABLE ETL_DB.EMULATOR.MANY (ID NUMBER(38,0))",
                 f"INSERT INTO ETL_DB.EMULATOR.MANY SELECT SEQ8() FROM TABLE(GENERATOR(ROWCOUNT => {ROWS}))")
    try:
        rows = h.sf_query("SELECT ID FROM ETL_DB.EMULATOR.MANY")
    finally:
        h.sf_execute("DROP TABLE IF EXISTS ETL_DB.EMULATOR.MANY")
    assert sorted(int(r[0]) for r in rows) == list(range(ROWS))
