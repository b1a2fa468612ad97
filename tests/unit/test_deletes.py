"""Hard deletes for INCREMENTAL and UPSERT (issue 15 item 4): the settings are validated, the SQL parses as
Snowflake (and each source dialect), key sets are compared by range so that unchanged tables and new source
keys cost one aggregate per side, and the guard refuses a run that would delete too much."""

from __future__ import annotations

import random

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

import glue_etl_job as g
from tests.unit.test_reconcile import fingerprints

TARGET = '"ETL_DB"."RAW"."ORDERS"'
STAGE = '"ETL_DB"."ETL_META"."STG_RAW_ORDERS_X"'
ENTRY = {"ssmKey": "AFFILIATE", "target_table": "RAW.ORDERS", "primary_key": "id",
         "timestamp_column": "updated_at", "operations": {"type": "INCREMENTAL"}}


def snowflake(sql: str) -> exp.Expression:
    parsed = sqlglot.parse(sql, read="snowflake", error_level=ErrorLevel.RAISE)
    assert len(parsed) == 1 and not isinstance(parsed[0], exp.Command), sql
    return parsed[0]


# ----- config ---------------------------------------------------------------------------


def test_settings_default_to_ignore_and_are_parsed():
    cfg = g.validate_config({"s.t": ENTRY})["s.t"]
    assert (cfg.deletes, cfg.max_delete_fraction) == ("ignore", g.DEFAULT_MAX_DELETE_FRACTION) == ("ignore", 0.1)
    cfg = g.validate_config({"s.t": {**ENTRY, "deletes": "soft", "max_delete_fraction": 1}})["s.t"]
    assert (cfg.deletes, cfg.max_delete_fraction) == ("soft", 1.0)
    upsert = {**ENTRY, "operations": {"type": "UPSERT"}, "deletes": "delete"}
    assert g.validate_config({"s.t": upsert})["s.t"].deletes == "delete"


def test_every_problem_of_the_settings_is_reported_at_once():
    bad = {
        "a.policy": {**ENTRY, "deletes": "hard", "max_delete_fraction": 0},
        "a.full": {**ENTRY, "operations": {"type": "FULL"}, "deletes": "delete"},
        "a.truncating": {**ENTRY, "operations": {"type": "INCREMENTAL", "truncate_before_insert": True},
                         "deletes": "soft"},
        "a.composite": {**ENTRY, "primary_key": ["a", "b"], "deletes": "delete"},
        "a.keyless": {**ENTRY, "primary_key": None, "deletes": "delete"},
        "a.useless": {**ENTRY, "max_delete_fraction": 0.5},
        "a.flag": {**ENTRY, "deletes": "delete", "max_delete_fraction": True},
    }
    with pytest.raises(g.ConfigError) as err:
        g.validate_config({k: {**v, "target_table": f"RAW.{k.split('.')[1].upper()}"} for k, v in bad.items()})
    text = str(err.value)
    for expected in (
            "a.policy: 'deletes' is 'hard'; use one of ignore, delete, soft",
            "a.policy: 'max_delete_fraction' must be a number > 0 and <= 1",
            "a.full: 'deletes' applies to INCREMENTAL and UPSERT (a mode that merges); FULL replaces",
            "a.truncating: 'deletes' applies to INCREMENTAL and UPSERT (a mode that merges); INCREMENTAL with "
            "truncate_before_insert replaces",
            "a.keyless: 'deletes' compares the source's and the target's primary_key values, and the table has "
            "none; set a 'primary_key', or 'deletes' to 'ignore'",
            "a.flag: 'max_delete_fraction' must be a number > 0 and <= 1"):
        assert expected in text, (expected, text)
    assert "a.useless" not in text        # without 'deletes' it is REPAIR's guard (--REPAIR true)
    assert "a.composite" not in text      # any key: a composite one by its hash


# ----- SQL ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["postgres", "mysql", "snowflake"])
def test_key_fingerprint_statements_parse(dialect):
    key = g.qi("ID") if dialect == "snowflake" else g.source_quote(dialect, "id")
    table = TARGET if dialect == "snowflake" else g.source_table_ref(dialect, "sales", "orders")
    where = f'{g.qi(g.DELETED_AT)} IS NULL' if dialect == "snowflake" else None
    h = g.row_hash_sql(dialect, [("int", g.canonical_sql(dialect, "int", key))])      # the key-only hash
    for sql in (g.range_fingerprints_sql(dialect, table, key, h, 1, 62_500_000, [(1, 10**9)], where),
                g.key_hashes_sql(dialect, table, key, key, [(1, 2000), (3000, 4000)], where),
                g.key_bounds_sql(table, key, where)):
        tree = sqlglot.parse_one(sql, read=dialect)
        assert isinstance(tree, exp.Select), sql
    if dialect == "snowflake":
        snowflake(g.range_fingerprints_sql(dialect, table, key, h, 1, 62_500_000, [(1, 10**9)], where))


def test_delete_statements_parse_and_batch():
    keys = list(range(1, 2 * g.DELETE_BATCH + 2))
    hard = g.delete_statements(TARGET, '"ID"', keys, soft=False)
    assert [k for k, _ in hard] == ["deleted"] * 3
    trees = [snowflake(sql) for _, sql in hard]
    assert all(isinstance(t, exp.Delete) for t in trees)
    listed = [int(n.this) for t in trees for n in t.find(exp.In).expressions]
    assert listed == keys                                    # every key once, in order, as integer literals
    (kind, soft), = g.delete_statements(TARGET, '"ID"', [3, 1], soft=True)
    tree = snowflake(soft)
    assert isinstance(tree, exp.Update) and '"_DELETED_AT" IS NULL' in soft and "CURRENT_TIMESTAMP()" in soft
    assert g.delete_statements(TARGET, '"ID"', [], soft=True) == []
    # A hashed key's texts: string literals, batched by their text's size as well as by their number
    texts = [f"{i}:" + "x" * 1000 for i in range(1200)]
    label = "K_TEXT"
    by_size = g.delete_statements(TARGET, label, texts, soft=False)
    assert len(by_size) == 3 and all(len(sql) < g.DELETE_BATCH_BYTES + 200 for _, sql in by_size)
    listed = [s.this for _, sql in by_size for s in snowflake(sql).find(exp.In).expressions]
    assert listed == texts
    wide = [f"{i}:" + "é" * 1000 for i in range(600)]          # 2 bytes a character: bytes decide, not characters
    by_bytes = g.delete_statements(TARGET, label, wide, soft=False)
    assert len(by_bytes) == 3 and all(len(sql.encode()) < g.DELETE_BATCH_BYTES + 200 for _, sql in by_bytes)
    assert [s.this for _, sql in by_bytes for s in snowflake(sql).find(exp.In).expressions] == wide
    snowflake(g.add_column_sql(TARGET, g.Column(g.DELETED_AT, g.DELETED_AT, g.DELETED_AT_TYPE)))


def test_soft_merge_revives_a_deleted_key():
    cols = [g.Column("id", "ID", "NUMBER(10,0)"), g.Column("v", "V", "VARCHAR")]
    plain = g.merge_sql(TARGET, STAGE, cols, ["ID"], None)
    soft = g.merge_sql(TARGET, STAGE, cols, ["ID"], None, soft=True)
    assert "_DELETED_AT" not in plain
    assert 'OR t."_DELETED_AT" IS NOT NULL) THEN UPDATE SET "V" = s."V", "_DELETED_AT" = NULL' in soft
    key_only = g.merge_sql(TARGET, STAGE, cols[:1], ["ID"], None, soft=True)
    assert 'WHEN MATCHED AND (t."_DELETED_AT" IS NOT NULL) THEN UPDATE SET "_DELETED_AT" = NULL' in key_only
    for sql in (soft, key_only):
        assert isinstance(snowflake(sql), exp.Merge)
    (kind, sql), = g.load_statements("UPSERT", False, TARGET, STAGE, cols, ["ID"], None, soft=True)
    assert kind == "merge" and sql == soft


def test_deleted_count_reads_the_statement_result():
    assert g.deleted_count(["number of rows deleted"], (7,)) == 7
    assert g.deleted_count(["number of rows updated", "number of multi-joined rows updated"], (4, 0)) == 4
    assert g.deleted_count([], None) == 0


# ----- detection ------------------------------------------------------------------------


def key_sets(source: set, target: set, fetched: list):
    def fn(ranges):
        fetched.extend(ranges)
        inside = [k for k in source | target if any(lo <= k <= hi for lo, hi in ranges)]
        return {k for k in inside if k in source}, {k for k in inside if k in target}
    return fn


def no_guard(deletes, rows, at_least):
    return None


def detect(source: set, target: set, guard=no_guard):
    calls: list = []
    fetched: list = []
    lo, hi = min(target), max(target)
    found = g.find_deletes(lo, hi, fingerprints({k: str(k) for k in source}, {k: str(k) for k in target}, calls),
                           key_sets(source, target, fetched), guard)
    return found, calls, fetched


def test_scattered_deletes_are_found_exactly_fetching_few_keys():
    rng = random.Random(4)
    target = set(range(1, 100_001))
    gone = set(rng.sample(sorted(target), 25))
    found, calls, fetched = detect(target - gone, target)
    assert found.keys == sorted(gone) and found.target_rows == 100_000 and found.ranges_queried == len(calls)
    fetched_keys = sum(min(hi, 100_000) - lo + 1 for lo, hi in fetched)
    assert fetched_keys <= 25 * g.VERIFY_LEAF_ROWS              # only small ranges are read key by key


def test_unchanged_table_costs_one_aggregate_per_side():
    target = set(range(1, 50_001))
    found, calls, fetched = detect(target, target)
    assert (found.keys, len(calls), fetched) == ([], 1, [])


def test_new_source_keys_beyond_the_target_cost_nothing_and_yield_no_deletes():
    """An INCREMENTAL target lags by the new rows: keys above its range are never compared, and buckets
    holding only new keys (gaps in the target) are not looked into."""
    target = set(range(1, 20_001)) - set(range(5_000, 9_001))        # a gap the source has since filled
    source = set(range(1, 20_001)) | set(range(20_001, 500_001))
    found, calls, fetched = detect(source, target)
    assert found.keys == []
    assert fetched == [] or all(any(k in target for k in range(lo, hi + 1)) for lo, hi in fetched)
    assert len(calls) <= 3
    # the same with a delete inside the lagging range: found, and nothing else
    found, _, _ = detect(source - {7, 15_000}, target)
    assert found.keys == [7, 15_000]


def test_guard_refuses_an_emptied_source_after_one_aggregate():
    seen = []

    def guard(deletes, rows, at_least):
        seen.append((deletes, rows, at_least))
        problem = g.delete_guard("s.t", "RAW.T", deletes, rows, 0.1, at_least)
        if problem:
            raise g.EtlError(problem)

    target = set(range(1, 10_001))
    with pytest.raises(g.EtlError) as err:
        detect(set(), target, guard)
    assert seen == [(10_000, 10_000, True)]
    assert str(err.value).startswith("s.t: at least 10000 of the 10000 rows of RAW.T would be deleted (100.0%), "
                                     "more than max_delete_fraction 0.1; nothing was written.")
    assert "raise 'max_delete_fraction'" in str(err.value)
    # a delete offset by an insert is not bounded from below: the exact count after fetching decides
    seen.clear()
    evens = set(range(2, 20_001, 2))
    with pytest.raises(g.EtlError, match=r"s.t: 1001 of the 10000 rows of RAW.T would be deleted \(10.0%\)"):
        detect((evens - set(range(2, 2003, 2))) | set(range(1, 2002, 2)), evens, guard)
    assert seen[0][0] < 1001 and seen[-1] == (1001, 10_000, False)
    seen.clear()
    found, _, _ = detect(target - set(range(1, 1001)), target, guard)      # exactly 10%: allowed
    assert len(found.keys) == 1000 and seen[-1] == (1000, 10_000, False)


def test_guard_message_and_limits():
    assert g.delete_guard("s.t", "RAW.T", 0, 0, 0.1) is None
    assert g.delete_guard("s.t", "RAW.T", 5, 50, 0.1) is None
    assert g.delete_guard("s.t", "RAW.T", 6, 50, 0.1) == (
        "s.t: 6 of the 50 rows of RAW.T would be deleted (12.0%), more than max_delete_fraction 0.1; nothing was "
        "written. Check the source read (an empty or partial source must not wipe the target); if the rows "
        "really are gone, raise 'max_delete_fraction' for the table for one run (e.g. 1.0)")
    assert g.delete_guard("s.t", "RAW.T", 50, 50, 1.0) is None


def test_summary_and_metric_show_deleted_rows():
    r = g.TableResult("s.t", "UPSERT", "RAW.T", "OK", 8, 8, 8, 0, 0, 1.0)
    r.deleted = 2
    assert g.summary_table([r]).splitlines()[2].split()[7] == "2"
    assert g.summary_table([r]).splitlines()[0].split()[8] == "deleted"
    assert g.metric_values(r)["RowsDeleted"] == 2


class FakeSource:
    """A source DeleteDetector._plan must not need: it plans from the facts it is given."""

    def __init__(self, engine: str, rows: list[dict]):
        self.engine, self.rows, self.queries = engine, rows, []

    def query(self, sql: str) -> list[dict]:
        self.queries.append(sql)
        return self.rows


def detector(engine: str, rows: list[dict], target_cols: dict, **entry) -> g.DeleteDetector:
    cfg = g.validate_config({"s.t": {**ENTRY, "deletes": "delete", **entry}})["s.t"]
    facts = g.source_columns([{"name": r["name"], "type": r["type"], "column_type": r["ctype"]} for r in rows])
    return g.DeleteDetector(FakeSource(engine, rows), None, cfg, TARGET, facts, target_cols, "STATE", None)


def test_a_key_the_comparison_does_not_support_is_refused_by_name_before_anything_is_written():
    gone = [{"name": "id", "type": "integer", "ctype": ""}, {"name": "v", "type": "text", "ctype": ""}]
    with pytest.raises(g.EtlError, match=r"s.t: deletes 'delete' compares the source's and the target's keys, and "
                                         r"cannot compare them: column id is not in RAW.ORDERS; nothing was loaded. "
                                         r"Set 'deletes' to 'ignore'"):
        detector("postgres", gone, {"V": "VARCHAR"})._plan()
    retyped = [{"name": "id", "type": "integer", "ctype": ""}]
    with pytest.raises(g.EtlError, match="column id: source type integer was loaded as VARCHAR"):
        detector("postgres", retyped, {"ID": "VARCHAR"})._plan()
    clash = [{"name": "id", "type": "integer", "ctype": ""}, {"name": "_deleted_at", "type": "date", "ctype": ""}]
    with pytest.raises(g.EtlError, match="deletes 'soft' adds a column _DELETED_AT to RAW.ORDERS, and the source "
                                         "has a column of that name"):
        detector("postgres", clash, {}, deletes="soft").detect()       # at the first load already


def test_integer_keys_are_compared_and_soft_tables_leave_marked_rows_out():
    d = detector("mysql", [{"name": "Id", "type": "bigint", "ctype": "bigint(20) unsigned"}], {"ID": "NUMBER(20,0)"})
    d._plan()
    assert (d.src_key, d.tgt_key, d.tgt_where, d.bound, d.src_label) == ("`Id`", '"ID"', None, None, None)
    assert d.src_hash == g.row_hash_sql("mysql", [("int", g.canonical_sql("mysql", "int", "`Id`"))])
    first = detector("postgres", [{"name": "id", "type": "numeric", "ctype": ""}], {}, deletes="soft").detect()
    assert (first.keys, first.ranges_queried, first.key, first.add_column) == ([], 0, '"ID"', True)
    soft = detector("postgres", [{"name": "id", "type": "integer", "ctype": ""}],
                    {"ID": "NUMBER(10,0)", "_DELETED_AT": "TIMESTAMP_TZ(6)"}, deletes="soft")
    soft._plan()
    assert soft.tgt_where == '"_DELETED_AT" IS NULL'
