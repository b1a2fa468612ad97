"""The shipped config.py against the seeded demo data: what `make demo` does, checked value by value."""

from __future__ import annotations

import pytest

from tests.e2e import helpers as h

DEMO = {  # table -> (engine, database, target, order by, json columns)
    "sales.orders": ("postgres", "affiliate", "ETL_DB.RAW.ORDERS", "id", ()),
    "sales.order_lines": ("postgres", "affiliate", "ETL_DB.RAW.ORDER_LINES", "order_id, line_no", ()),
    "sales.customers": ("postgres", "affiliate", "ETL_DB.RAW.CUSTOMERS", "id", ()),
    "ops.tickets": ("postgres", "ops", "ETL_DB.RAW.TICKETS", "id", ("PAYLOAD",)),
    "program360.members": ("mysql", "program360", "ETL_DB.RAW.MEMBERS", "id", ()),
    "program360.events": ("mysql", "program360", "ETL_DB.RAW.EVENTS",
                          "member_id, occurred_at, event_type, amount", ()),
}


@pytest.fixture(scope="module")
def fresh_targets(stack_env):
    h.reset_target_schema("RAW")


def test_demo_config_loads_every_table(fresh_targets, tmp_path):
    proc = h.run_job(tmp_path, None, job_name="e2e-demo")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    result = h.summary(proc)
    assert set(result) == set(DEMO)
    for key, (engine, database, target, order_by, json_cols) in DEMO.items():
        assert result[key]["status"] == "OK"
        rows = h.assert_table_equal(engine, database, key, target, order_by, json_cols)
        assert result[key]["source"] == result[key]["target_rows"] == rows and result[key]["diff"] == 0
        assert h.metric("e2e-demo", key, "TargetRecordCount") == rows
        assert h.metric("e2e-demo", key, "Success") == 1


def test_demo_types_follow_the_mapping(fresh_targets):
    conn_rows = h.sf_query(
        "SELECT TABLE_NAME || '.' || COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE "
        "FROM ETL_DB.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = 'RAW'")
    types = {name: (dtype, prec, scale) for name, dtype, prec, scale in conn_rows}
    assert types["ORDERS.AMOUNT"] == ("NUMBER", 12, 2)
    assert types["ORDERS.UPDATED_AT"][0] == "TIMESTAMP_NTZ"        # PostgreSQL timestamp
    assert types["ORDER_LINES.UPDATED_AT"][0] == "TIMESTAMP_TZ"    # PostgreSQL timestamptz
    assert types["ORDER_LINES.UNIT_PRICE"] == ("NUMBER", 14, 4)
    assert types["CUSTOMERS.VIP"][0] == "BOOLEAN"
    assert types["MEMBERS.JOINED_AT"][0] == "TIMESTAMP_NTZ"        # MySQL DATETIME
    assert types["EVENTS.AMOUNT"] == ("NUMBER", 10, 2)
    assert types["TICKETS.CLOSED_ON"][0] == "DATE"
