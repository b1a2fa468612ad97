"""VERIFY plans from the source-column facts the load already read (column_types_query, now in
column order) instead of its own information_schema query."""

from __future__ import annotations

import logging
import re

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

import glue_etl_job as g

LOG = logging.LoggerAdapter(logging.getLogger("test"), {})
FACTS = g.source_columns([   # as column_types_query returns them: in ordinal_position order
    {"name": "ID", "type": "integer", "column_type": "", "num_precision": 32, "num_scale": 0},
    {"name": "Amount", "type": "numeric", "column_type": "", "num_precision": 12, "num_scale": 2},
    {"name": "note", "type": "text", "column_type": ""},
    {"name": "updated_at", "type": "timestamp without time zone", "column_type": ""},
])
TARGET = {"ID": "NUMBER(38,0)", "AMOUNT": "NUMBER(12,2)", "NOTE": "VARCHAR", "UPDATED_AT": "TIMESTAMP_NTZ(6)"}


class Source:
    engine = "postgres"


class Warehouse:
    def __init__(self, state=()):
        self.state = list(state)

    def rows(self, sql, params=None):
        assert sql == g.read_state_sql("ETL_DB.ETL_META.ETL_LOAD_STATE") and params == {"target": "RAW.T"}
        return self.state


def cfg(**entry) -> g.TableConfig:
    return g.build_table_config("s.t", {"ssmKey": "AFFILIATE", "target_table": "RAW.T", "primary_key": "id",
                                        "operations": {"type": "UPSERT"}, **entry})


def planned(config: g.TableConfig, facts=FACTS, target=TARGET, state=()) -> g.Reconciler:
    r = g.Reconciler(Source(), Warehouse(state), config, "ETL_DB.RAW.T", facts, target,
                     "ETL_DB.ETL_META.ETL_LOAD_STATE", LOG)
    r._plan()
    return r


def test_column_types_query_is_in_column_order_and_parses():
    for engine in ("postgres", "mysql"):
        sql = g.column_types_query(engine, "sales", "orders")
        assert sql.endswith("ORDER BY ordinal_position")
        tree = sqlglot.parse_one(sql, read=engine, error_level=ErrorLevel.RAISE)
        assert [o.this.name for o in tree.args["order"].expressions] == ["ordinal_position"]
    assert not hasattr(g, "reconcile_columns_query")
    assert list(FACTS) == ["id", "amount", "note", "updated_at"]


def test_the_row_hash_covers_the_facts_in_column_order_on_both_sides():
    r = planned(cfg())
    canon = [("int", '"ID"', 0), ("decimal", '"Amount"', 2), ("text", '"note"', 0), ("ts_ntz", '"updated_at"', 0)]
    assert r.src_hash == g.row_hash_sql("postgres", [(k, g.canonical_sql("postgres", k, c, s, 2 if k == "decimal"
                                                                          else None)) for k, c, s in canon])
    assert 'COALESCE(CAST("Amount" AS TEXT), ' in r.src_hash       # numeric(12,2) at scale 2: its output text
    assert r.tgt_hash == g.row_hash_sql("snowflake", [(k, g.canonical_sql("snowflake", k, g.qi(c.strip('"').upper()),
                                                                          s)) for k, c, s in canon])
    assert (r.src_key, r.tgt_key, r.bound) == ('"ID"', '"ID"', None)


def test_the_row_hash_converts_to_utf8_only_for_a_postgresql_database_in_another_encoding():
    def with_charset(charset):
        return {k: g.SourceColumn(c.name, c.type, c.column_type, c.precision, c.scale, c.length, charset)
                for k, c in FACTS.items()}
    for charset, converts in (("LATIN1", True), ("WIN1252", True), ("UTF8", False), ("SQL_ASCII", False),
                              (None, False)):
        assert ("CONVERT_TO(" in planned(cfg(), facts=with_charset(charset)).src_hash) is converts, charset
    rows = [{"name": "note", "type": "text", "column_type": "", "charset": "LATIN1"}, {"name": "id", "type": "int"}]
    assert [c.charset for c in g.source_columns(rows).values()] == ["LATIN1", None]


def test_any_other_key_is_bisected_by_the_hash_of_its_canonical_text():
    """A composite key (and a text or timestamp one): the key is the 60-bit slice of the MD5 of the key
    columns' framed canonical texts, the same on both sides, and the leaves name it by that text."""
    r = planned(cfg(primary_key=["id", "note"]))
    pk = [("int", '"ID"'), ("text", '"note"')]
    assert r.src_label == g.row_text_sql("postgres", [(k, g.canonical_sql("postgres", k, c)) for k, c in pk])
    assert r.tgt_label == g.row_text_sql("snowflake", [(k, g.canonical_sql("snowflake", k, c.upper()))
                                                       for k, c in pk])
    assert r.src_key == g.hash_slice_sql("postgres", f"MD5({r.src_label})")
    assert r.tgt_key == g.hash_slice_sql("snowflake", f"MD5({r.tgt_label})")
    ranges = [(0, 2 ** 48 - 1), (2 ** 59, 2 ** 59)]
    for dialect, table, key, label, where in (("postgres", '"s"."t"', r.src_key, r.src_label, r.bound),
                                              ("snowflake", "ETL_DB.RAW.T", r.tgt_key, r.tgt_label, None)):
        for sql in (g.range_fingerprints_sql(dialect, table, key, "'h'", 0, 2 ** 48, ranges, where, hashed=True),
                    g.key_hashes_sql(dialect, table, key, "'h'", ranges, where, label)):
            sqlglot.parse_one(sql, read=dialect, error_level=ErrorLevel.RAISE)
    assert g.key_hashes_sql("postgres", "t", "k", "h", [(4, 7), (16, 31)], "w", "kt") == (
        "SELECT k AS k, h AS rh, kt AS kt FROM t WHERE (k >> 2) IN (1, 4, 5, 6, 7) AND (w)")
    assert planned(cfg(primary_key="updated_at")).src_label is not None
    # REPAIR narrows a hashed key's re-read by its first column, an integer or a text (``lead_in_sql``)
    assert [planned(cfg(primary_key=k)).src_lead for k in (["id", "note"], ["note", "id"], "updated_at", "id")] \
        == [("postgres", "int", '"ID"', "integer"), ("postgres", "text", '"note"', "text"), None, None]
    char = {**FACTS, "note": g.SourceColumn("note", "character", "", None, None, 3, None)}
    assert planned(cfg(primary_key=["note", "id"]), facts=char).src_lead is None
    assert planned(cfg()).src_label is None and planned(cfg()).src_key == '"ID"'
    with pytest.raises(g.EtlError, match=r"VERIFY compares rows by their primary_key, and \['id'\] is not among the "
                                         r"columns compared: add it to 'columns'"):
        planned(cfg(columns=["note", "updated_at"]))
    latin1 = {k: g.SourceColumn(c.name, c.type, c.column_type, c.precision, c.scale, c.length, "LATIN1")
              for k, c in FACTS.items()}
    assert "CONVERT_TO(" in planned(cfg(primary_key=["id", "note"]), facts=latin1).src_key
    # a database in another encoding: a text key is not narrowed (an extra key's character may not convert)
    assert planned(cfg(primary_key=["note", "id"]), facts=latin1).src_lead is None
    assert planned(cfg(primary_key=["id", "note"]), facts=latin1).src_lead.kind == "int"
    def mysql_lead(charset):
        facts = g.source_columns([{"name": "id", "type": "int", "column_type": "int(11)"},
                                  {"name": "note", "type": "varchar", "column_type": "", "charset": charset}])
        r = g.Reconciler(type("S", (), {"engine": "mysql"})(), Warehouse(), cfg(primary_key=["note", "id"]),
                         "ETL_DB.RAW.T", facts, {"ID": "NUMBER(38,0)", "NOTE": "VARCHAR"},
                         "ETL_DB.ETL_META.ETL_LOAD_STATE", LOG)
        r._plan()
        return r.src_lead
    assert mysql_lead("utf8mb4") == ("mysql", "text", "`note`", "varchar")
    assert mysql_lead("latin1") is None     # an extra key's character may not convert: an error for the read


def test_repair_names_a_hashed_key_over_its_staging_table_as_over_the_target():
    """REPAIR keeps the extra keys its re-read brought back by the key's text over the staged rows (s), where
    a BINARY key is hex text (``Column.stage_type``): its text there decodes it first, so both texts agree."""
    r = planned(cfg(primary_key=["id", "note"]))
    assert r.stage_label == r.tgt_label.replace('"ID"', 's."ID"').replace('"NOTE"', 's."NOTE"')
    facts = {**FACTS, "b": g.SourceColumn("b", "bytea")}
    r = planned(cfg(primary_key=["id", "b"]), facts=facts, target={**TARGET, "B": "BINARY"})
    assert r.tgt_label == g.row_text_sql("snowflake", [(k, g.canonical_sql("snowflake", k, f'"{n}"'))
                                                       for k, n in (("int", "ID"), ("binary", "B"))])
    assert r.stage_label == g.row_text_sql("snowflake", [("int", g.canonical_sql("snowflake", "int", 's."ID"')),
                                                         ("binary", g.canonical_sql("snowflake", "binary",
                                                                                    "TO_BINARY(s.\"B\", 'HEX')"))])
    sqlglot.parse_one(f"SELECT {r.stage_label} FROM t s", read="snowflake", error_level=ErrorLevel.RAISE)
    assert planned(cfg()).stage_label is None


def test_a_decimal_at_another_scale_than_its_column_is_compared_digit_by_digit():
    """numeric(12,2)::text is '1.50'; at the target's scale 4 the canonical text is '1.5000', so only a column
    at the target's own scale is compared as its output text. A numeric without a scale never is."""
    wider = planned(cfg(), target={**TARGET, "AMOUNT": "NUMBER(14,4)"})
    free = planned(cfg(), facts={**FACTS, "amount": g.SourceColumn("Amount", "numeric")})
    for r, scale in ((wider, 4), (free, 2)):
        assert 'CAST("Amount" AS TEXT)' not in r.src_hash
        assert g.canonical_sql("postgres", "decimal", '"Amount"', scale) in r.src_hash


def test_columns_setting_and_watermark_bound_use_the_facts_spelling():
    r = planned(cfg(columns=["id", "note", "updated_at"], timestamp_column="updated_at"),
                state=[("UPDATED_AT", "2026-01-02 03:04:05.000006")])
    assert r.src_hash == g.row_hash_sql("postgres", [("int", g.canonical_sql("postgres", "int", '"ID"')),
                                                     ("text", g.canonical_sql("postgres", "text", '"note"')),
                                                     ("ts_ntz", g.canonical_sql("postgres", "ts_ntz", '"updated_at"'))])
    assert r.bound == "\"updated_at\" <= TIMESTAMP '2026-01-02 03:04:05.000006' OR \"updated_at\" IS NULL"


def test_a_column_missing_in_the_target_is_named():
    with pytest.raises(g.EtlError, match=r"^s\.t: VERIFY cannot compare this table \(its load committed\): "
                                         r"column note is not in RAW\.T\. Leave the column out"):
        planned(cfg(), target={k: v for k, v in TARGET.items() if k != "NOTE"})


def test_a_hashed_key_is_computed_once_per_block_size_and_its_blocks_are_exactly_the_ranges():
    """The ranges VERIFY asks for (unions of aligned power-of-two buckets, of one or two levels) as
    (key >> n) IN (...): the key appears once per block size, never once per range, and a key is in the
    blocks exactly when it is in a range. The whole span needs no condition; buckets are key >> n."""
    import random
    rng = random.Random(7)
    lo, hi = g.HASHED_KEY_SPAN
    for _ in range(200):
        bits = rng.randrange(0, 48)
        starts = sorted(rng.sample(range(4096), rng.randint(1, 40)))
        ranges = g.merged([(i << bits, ((i + 1) << bits) - 1) for i in starts])
        if rng.random() < 0.3:       # leaves of a finer level beside them
            fine = bits - 4 if bits >= 4 else 0
            ranges = g.merged(ranges + [((4200 << bits) + (j << fine), (4200 << bits) + ((j + 1) << fine) - 1)
                                        for j in range(3)])
        sql = g.hashed_ranges_sql("postgres", "k", ranges)
        assert sql.count("k >>") == 1
        blocks = [(int(n), [int(i) for i in ids.split(", ")])
                  for n, ids in re.findall(r"\(k >> (\d+)\) IN \(([^)]*)\)", sql)]
        for k in [a for a, _ in ranges] + [b for _, b in ranges] + [b + 1 for _, b in ranges] + \
                 [a - 1 for a, _ in ranges if a] + [rng.randrange(hi) for _ in range(20)]:
            inside = any(a <= k <= b for a, b in ranges)
            assert inside == any((k >> n) in ids for n, ids in blocks), (ranges, k)
    assert g.hashed_ranges_sql("snowflake", "k", [g.HASHED_KEY_SPAN]) is None
    many = [(0, 2 ** 40 - 1), (2 ** 50, 2 ** 50)]     # a list of 2^40 blocks: one list per size instead
    assert g.hashed_ranges_sql("postgres", "k", many) == "((k >> 0) IN (1125899906842624) OR (k >> 40) IN (0))"
    sql = g.range_fingerprints_sql("snowflake", "t", "k", "h", 0, 2 ** 44, [(0, 2 ** 48 - 1)], None, True)
    assert sql.startswith("SELECT BITSHIFTRIGHT(k, 44) AS b,") and "WHERE BITSHIFTRIGHT(k, 48) IN (0)" in sql
    sqlglot.parse_one(sql, read="snowflake", error_level=ErrorLevel.RAISE)
    full = g.range_fingerprints_sql("postgres", "t", "k", "h", 0, 2 ** 48, [g.HASHED_KEY_SPAN], None, True)
    assert " WHERE " not in full and full.startswith("SELECT (k >> 48) AS b,")
