"""The table plan as a value: facts in, a TablePlan out - no Spark session, no service."""

import json

import pytest
import sqlglot
from pyspark.sql import types as T
from sqlglot.errors import ErrorLevel

import glue_etl_job as g

TARGET = '"ETL_DB"."RAW"."ORDERS"'
STAGE = '"ETL_DB"."ETL_META"."ETL_STAGE_RAW_ORDERS_X"'
FIELDS = {"id": T.IntegerType(), "amount": T.DecimalType(12, 2), "updated_at": T.TimestampNTZType()}
COLUMNS = g.source_columns([
    {"name": "id", "type": "integer"},
    {"name": "amount", "type": "numeric", "num_precision": 12, "num_scale": 2},
    {"name": "updated_at", "type": "timestamp without time zone"},
])
TARGET_COLS = {"ID": "NUMBER(10,0)", "AMOUNT": "NUMBER(12,2)", "UPDATED_AT": "TIMESTAMP_NTZ(6)"}


def cfg(mode="INCREMENTAL", truncate=False, **over):
    entry = {"ssmKey": "AFFILIATE", "target_table": "RAW.ORDERS", "primary_key": "ID",
             "timestamp_column": "UPDATED_AT", "operations": {"type": mode, "truncate_before_insert": truncate}}
    entry.update(over)
    return g.build_table_config("sales.orders", entry)


def read(state=("UPDATED_AT", "2026-11-30 10:00:00.000000"), rows=5, cols=TARGET_COLS):
    return g.PlanRead(1, None, state[0] if state else None, state[1] if state else None, rows, dict(cols))


def facts(r=None, stats=None, **over):
    return g.TableFacts("postgres", FIELDS, COLUMNS, r or read(), stats=stats or {"n": 3, "lo": 4, "hi": 9}, **over)


def test_incremental_plan_reads_from_the_state_watermark_and_loads_with_one_merge():
    c = cfg()
    plan = g.plan_table(c, facts(), cores=2, target=TARGET)
    assert plan.window.watermark == g.Watermark("UPDATED_AT", "2026-11-30 10:00:00.000000")
    assert plan.window.predicate == ("(\"updated_at\" >= TIMESTAMP '2026-11-30 10:00:00.000000' "
                                     "OR \"updated_at\" IS NULL)")
    assert sorted(plan.types.text) == ["amount", "updated_at"]       # read as the source's text (type_plan)
    assert plan.source_sql == f'SELECT "id", "amount", "updated_at" FROM "sales"."orders" WHERE {plan.window.predicate}'
    assert (plan.rows, plan.stages, plan.loads, plan.windowed, plan.partitions) == (3, True, True, True, ())
    assert plan.ddl == () and plan.statements == ()              # the load half is not planned yet
    full = g.plan_load(plan, c, list(FIELDS.items()), FIELDS, STAGE)
    assert [c.name for c in full.columns] == ["ID", "AMOUNT", "UPDATED_AT"]
    assert full.ddl == ()                                         # the target has every column
    assert [k for k, _ in full.statements] == ["merge"]
    assert full.statements[0][1] == g.merge_sql(TARGET, STAGE, full.columns, ["ID"], "UPDATED_AT")
    for _, sql in full.statements:
        sqlglot.parse_one(sql, read="snowflake", error_level=ErrorLevel.RAISE)


def test_no_state_starts_at_the_targets_max_and_an_empty_target_reads_everything():
    c = cfg()
    assert g.needs_target_max(c, list(FIELDS), read()) is None               # the state has a watermark
    assert g.needs_target_max(c, list(FIELDS), read(state=None)) == "UPDATED_AT"
    assert g.needs_target_max(c, list(FIELDS), read(state=None, rows=0)) is None
    assert g.needs_target_max(cfg("UPSERT"), list(FIELDS), read(state=None)) is None
    w = g.plan_window(c, "postgres", FIELDS, read(state=None), "2026-11-01 00:00:00.000000")
    assert w.watermark.value == "2026-11-01 00:00:00.000000"
    assert w.notes == ("no state yet, starting from the target's MAX(UPDATED_AT)",)
    empty = g.plan_window(c, "postgres", FIELDS, read(rows=0, cols={}))
    assert (empty.watermark, empty.predicate, empty.notes) == (None, None, ("target missing or empty, "
                                                                             "loading every row",))


def test_a_missing_target_is_created_before_the_load_and_full_needs_no_ddl():
    plan = g.plan_table(cfg(), facts(read(state=None, rows=None, cols={})), 2, TARGET)
    loaded = g.plan_load(plan, cfg(), list(FIELDS.items()), FIELDS, STAGE)
    assert [sql for _, sql in loaded.ddl] == [g.create_table_sql(TARGET, loaded.columns)]
    full = g.plan_table(cfg("FULL"), facts(), 2, TARGET)
    assert full.target_columns == {} and not full.windowed
    full = g.plan_load(full, cfg("FULL"), list(FIELDS.items()), FIELDS, STAGE)
    assert full.ddl == () and [k for k, _ in full.statements] == ["replace"]


def test_a_new_source_column_is_added_and_an_incompatible_one_refused_before_anything_runs():
    fields = {**FIELDS, "note": T.StringType()}
    plan = g.plan_table(cfg(), facts(), 2, TARGET)
    added = g.plan_load(plan, cfg(), list(fields.items()), fields, STAGE)
    assert [sql for _, sql in added.ddl] == [f'ALTER TABLE {TARGET} ADD COLUMN "NOTE" VARCHAR']
    narrow = g.plan_table(cfg(), facts(read(cols={**TARGET_COLS, "AMOUNT": "NUMBER(14,1)"})), 2, TARGET)
    with pytest.raises(g.EtlError, match=r"sales.orders: .*AMOUNT is NUMBER\(14,1\)"):
        g.plan_load(narrow, cfg(), list(FIELDS.items()), FIELDS, STAGE)


def test_no_rows_for_a_mode_that_only_adds_plans_no_load_but_replacing_ones_do():
    none = g.plan_table(cfg(), facts(stats={"n": 0}), 2, TARGET)
    assert (none.stages, none.loads) == (False, False)
    assert g.plan_load(none, cfg(), list(FIELDS.items()), FIELDS, STAGE).statements == ()
    trunc = g.plan_table(cfg(truncate=True), facts(stats={"n": 0}), 2, TARGET)
    assert (trunc.stages, trunc.loads) == (False, True)
    empty_ti = g.plan_table(cfg("TRUNCATE_INSERT"), facts(stats={"n": 0}), 2, TARGET)
    assert (empty_ti.stages, empty_ti.loads) == (True, True)     # an empty source empties the target


def test_value_problems_and_null_timestamps_fail_the_plan_with_the_value_named():
    wide = {**COLUMNS, "amount": g.SourceColumn("amount", "numeric")}       # numeric without precision
    f = g.TableFacts("postgres", FIELDS, wide, read(), stats={"n": 3, "bad_0": "0.1234567890123456789"})
    with pytest.raises(g.EtlError, match=r"sales.orders: nothing was loaded: column amount holds "
                                         r"0.1234567890123456789, which does not fit NUMBER\(38,18\)"):
        g.plan_table(cfg(), f, 2, TARGET)
    with pytest.raises(g.EtlError, match="2 row\\(s\\) have NULL in timestamp_column updated_at"):
        g.plan_table(cfg(null_timestamps="fail"), facts(null_rows=2), 2, TARGET)
    noted = g.plan_table(cfg(null_timestamps="include"), facts(stats={"n": 3, "nulls": 1}), 2, TARGET)
    assert noted.warnings == ("null_timestamps=1 policy=include",)


def test_a_large_window_is_split_on_the_key():
    plan = g.plan_table(cfg("UPSERT"), facts(stats={"n": 1_200_000, "lo": 1, "hi": 1_200_000}), 2, TARGET)
    assert plan.window.part_col == "id"
    assert plan.partitions == ('("id" < 600000 OR "id" IS NULL)', '"id" >= 600000')


def test_the_plan_prints_as_a_block_and_as_json():
    c = cfg()
    plan = g.plan_load(g.plan_table(c, facts(), 2, TARGET), c, list(FIELDS.items()), FIELDS, STAGE)
    doc = json.loads(json.dumps(plan.as_dict()))
    assert doc["watermark"] == "2026-11-30 10:00:00.000000" and doc["rows"] == 3 and doc["target_rows"] == 5
    assert doc["source_sql"] == plan.source_sql and doc["statements"] == [plan.statements[0][1]]
    text = plan.describe()
    assert text.splitlines()[0] == f"== sales.orders (INCREMENTAL -> {TARGET})"
    assert f"   read:      {plan.source_sql}" in text and "   rows:      3 in the window; target has 5" in text
    assert "   load:      MERGE INTO" in text
