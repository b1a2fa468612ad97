"""Reconcile core (issue 15): canonical forms parse in each engine's dialect, kinds are chosen or refused
clearly, and the range splitting / bisection find exactly the differing keys."""

from __future__ import annotations

import hashlib
import random

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

import glue_etl_job as g

KINDS = ("int", "decimal", "float4", "float8", "text", "bool", "date", "ts_ntz", "ts_tz", "binary")
DIALECTS = {"postgres": "postgres", "mysql": "mysql", "snowflake": "snowflake"}


def quote(dialect: str, name: str) -> str:
    return g.source_quote(dialect, name) if dialect != "snowflake" else g.qi(name)


def parses(sql: str, dialect: str) -> None:
    tree = sqlglot.parse_one(sql, read=dialect)
    assert tree is not None


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_every_canonical_form_and_statement_parses(dialect):
    col = quote(dialect, "c")
    canon = [(k, g.canonical_sql(dialect, k, col, 10 if k == "decimal" else 0)) for k in KINDS]
    for _, c in canon:
        parses(f"SELECT {c} FROM t", dialect)
    row_hash = g.row_hash_sql(dialect, canon)
    table = "\"db\".\"s\".\"t\"" if dialect == "snowflake" else g.source_table_ref(dialect, "s", "t")
    key = quote(dialect, "id")
    where = f"{quote(dialect, 'ts')} <= TIMESTAMP '2026-01-01 00:00:00.000000'"
    for sql in (g.range_fingerprints_sql(dialect, table, key, row_hash, -5, 62_500_000_001, [(-5, 10**12)], where),
                g.range_fingerprints_sql(dialect, table, key, row_hash, -5, 77, [(1, 99), (7, 7), (500, 600)]),
                g.key_hashes_sql(dialect, table, key, row_hash, [(1, 2000)], where),
                g.key_bounds_sql(table, key, where),
                g.key_hashes_sql(dialect, table, key, row_hash, [(1, 2000), (2500, 2500), (3000, 3100)], where),
                f"SELECT {g.hash_slice_sql(dialect, row_hash)}"):
        parses(sql, dialect)


def test_snowflake_fingerprint_uses_the_documented_hex_format():
    sql = g.hash_slice_sql("snowflake", "h")
    node = sqlglot.parse_one(f"SELECT {sql}", read="snowflake").find(sqlglot.exp.ToNumber)
    assert node is not None and node.args["format"].this == "X" * g.HASH_HEX_DIGITS


def test_row_hash_marks_null_apart_from_empty_and_frames_free_text():
    sql = g.row_hash_sql("postgres", [("int", "a"), ("text", "b")])
    assert sql == "MD5(COALESCE(a, 'N') || '|' || COALESCE(CAST(OCTET_LENGTH(b) AS TEXT) || ':' || b, 'N'))"
    assert g.row_hash_sql("snowflake", [("json_array", "b")]) == (
        "MD5(COALESCE(TO_VARCHAR(OCTET_LENGTH(b)) || ':' || b, 'N'))")
    assert g.row_hash_sql("mysql", [("date", "a"), ("text", "b")]) == (
        "MD5(CONCAT_WS('|', COALESCE(CONVERT(a USING utf8mb4), 'N'), COALESCE(CONCAT(OCTET_LENGTH(CONVERT(b USING "
        "utf8mb4)), ':', CONVERT(b USING utf8mb4)), 'N')))")


def test_row_hash_of_a_non_utf8_postgresql_database_reads_the_texts_as_utf8():
    """LATIN1 bytes are not the UTF-8 Snowflake hashes: the length and the MD5 are of CONVERT_TO(.., 'UTF8')."""
    sql = g.row_hash_sql("postgres", [("int", "a"), ("text", "b")], to_utf8=True)
    assert sql == ("MD5(CONVERT_TO(COALESCE(a, 'N') || '|' || COALESCE(CAST(OCTET_LENGTH(CONVERT_TO(b, 'UTF8')) AS "
                   "TEXT) || ':' || b, 'N'), 'UTF8'))")
    sqlglot.parse_one(f"SELECT {sql}", read="postgres", error_level=ErrorLevel.RAISE)
    for dialect in ("mysql", "snowflake"):         # MySQL converts every text already; Snowflake is UTF-8
        assert g.row_hash_sql(dialect, [("text", "b")], to_utf8=True) == g.row_hash_sql(dialect, [("text", "b")])


def row_text(values: list[tuple[str, str | None]]) -> str:
    """What row_hash_sql hashes, computed in Python: the encoding's rules (a free text's length in UTF-8 bytes)."""
    return "|".join("N" if v is None else f"{len(v.encode())}:{v}" if k in g.FREE_TEXT_KINDS else v
                    for k, v in values)


def test_the_row_encoding_is_unambiguous():
    """Rows that differ give different texts: a '|' inside a text, NULL against 'N' or '', a value moved
    from one column to the next."""
    rows = [[("text", "a|b"), ("text", "c")], [("text", "a"), ("text", "b|c")], [("text", "N"), ("text", None)],
            [("text", None), ("text", "N")], [("text", ""), ("text", None)], [("text", None), ("text", "")],
            [("text", "1:a"), ("text", "")], [("text", "1"), ("text", "a|0:")], [("int", "1"), ("text", "2|3")],
            [("text", "a|1:b"), ("text", None)], [("text", "a"), ("text", "b"), ("text", None)],
            [("text", "é|1:a"), ("text", None)], [("text", "é"), ("text", "a")]]
    texts = [row_text(r) for r in rows]
    assert len(set(texts)) == len(texts)
    assert all(v is None or "|" not in v and v != "N" for k, v in
               [("int", "-12"), ("decimal", "-0.50"), ("float8", "-1022p4503599627370496"), ("float8", "NaN"),
                ("date", "2024-01-01"), ("binary", "00ff"), ("time", "23:59:59.000001"), ("inet", "::1")])


@pytest.mark.parametrize(("engine", "data_type", "column_type", "target", "kind"), [
    ("postgres", "integer", "", "NUMBER(10,0)", "int"),
    ("postgres", "numeric", "", "NUMBER(38,10)", "decimal"),
    ("postgres", "numeric", "", "NUMBER(12,0)", "int"),
    ("postgres", "double precision", "", "FLOAT", "float8"),
    ("postgres", "real", "", "FLOAT", "float4"),
    ("postgres", "jsonb", "", "VARCHAR", "text"),
    ("postgres", "timestamp with time zone", "", "TIMESTAMP_TZ(6)", "ts_tz"),
    ("postgres", "timestamp without time zone", "", "TIMESTAMP_NTZ(6)", "ts_ntz"),
    ("postgres", "bytea", "", "BINARY", "binary"),
    ("mysql", "tinyint", "tinyint(1)", "BOOLEAN", "bool"),
    ("mysql", "tinyint", "tinyint(1)", "NUMBER(3,0)", "int"),       # the type plan's mapping (issue 13)
    ("mysql", "bigint", "bigint(20) unsigned", "NUMBER(20,0)", "int"),
    ("mysql", "enum", "enum('a','b')", "VARCHAR", "text"),
    ("mysql", "timestamp", "timestamp(6)", "TIMESTAMP_TZ(6)", "ts_tz"),
    ("mysql", "longblob", "longblob", "BINARY", "binary"),
])
def test_kind_of_each_mapped_type(engine, data_type, column_type, target, kind):
    assert g.canon_kind(engine, data_type, column_type, target) == (kind, "")


@pytest.mark.parametrize(("engine", "data_type", "target", "why"), [
    ("postgres", "point", "VARCHAR", "no canonical form"),         # (time, money, YEAR, ...: test_reconcile_types)
    ("postgres", "tsvector", "VARCHAR", "no canonical form"),
    ("mysql", "geometry", "BINARY", "no canonical form"),
    ("postgres", "timestamp with time zone", "TIMESTAMP_NTZ(6)", "does not compare"),
    ("postgres", "integer", "VARCHAR", "does not compare"),
])
def test_unknown_or_reloaded_types_are_refused_by_name(engine, data_type, target, why):
    kind, message = g.canon_kind(engine, data_type, "", target)
    assert kind is None and why in message and data_type in message


@pytest.mark.parametrize(("lo", "hi", "n"), [(1, 1, 16), (1, 10, 16), (-7, 1000, 16), (0, 10**12, 16), (5, 21, 4)])
def test_buckets_cover_the_key_range_once(lo, hi, n):
    width = g.bucket_width(lo, hi, n)
    count = (hi - lo) // width + 1
    assert count <= n
    ranges = [g.bucket_range(lo, width, b, hi) for b in range(count)]
    assert ranges[0][0] == lo and ranges[-1][1] == hi
    assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def fingerprints(source: dict[int, str], target: dict[int, str], calls: list):
    """What range_fingerprints_sql answers on each side, computed in Python."""
    def side(rows, lo, width, ranges):
        out: dict[int, tuple[int, int]] = {}
        for k, v in rows.items():
            if any(a <= k <= b for a, b in ranges):
                b = (k - lo) // width
                n, h = out.get(b, (0, 0))
                out[b] = (n + 1, h + int(hashlib.md5(v.encode()).hexdigest()[:15], 16))
        return out

    def fn(lo, width, ranges):
        assert list(ranges) == g.merged(ranges)               # sorted, disjoint, not adjacent
        calls.append(list(ranges))
        return side(source, lo, width, ranges), side(target, lo, width, ranges)
    return fn


def test_bisection_finds_exactly_the_scattered_differences():
    rng = random.Random(15)
    source = {k: f"row {k}" for k in range(1, 200_001)}
    target = dict(source)
    gone = set(rng.sample(sorted(source), 40))
    changed = set(rng.sample(sorted(set(source) - gone), 40))
    for k in gone:
        del target[k]
    for k in changed:
        target[k] = "changed"
    target[300_000] = "extra"
    calls: list = []
    leaves, rows, n = g.differing_ranges(1, 300_000, fingerprints(source, target, calls), leaf_rows=100)
    assert rows == 200_000 and n == len(calls) == 2      # one call per level: 2344 buckets of 128 keys, then 81
    in_leaves = {k for k in set(source) | set(target) if any(a <= k <= b for a, b in leaves)}
    sub_s = {k: v for k, v in source.items() if k in in_leaves}
    sub_t = {k: v for k, v in target.items() if k in in_leaves}
    drift = g.compare_key_hashes(sub_s, sub_t)
    assert set(drift.missing) == gone and set(drift.different) == changed and drift.extra == [300_000]
    assert len(in_leaves) <= 81 * 100             # only small ranges (<= leaf_rows rows) are fetched key by key
    assert len(calls[1]) <= 81 and sum(b - a + 1 for a, b in calls[1]) <= 81 * 128    # level 2: differing only


def test_a_difference_the_first_level_finds_is_compared_key_by_key_at_once():
    """Scattered differences in a table of up to 8.4M keys cost one fingerprint call: the first level's buckets
    are as narrow as a leaf (VERIFY_BUCKET_KEYS), so each differing one is a leaf, with no level between."""
    rng = random.Random(7)
    source = {k: f"row {k}" for k in range(1, 3_000_001, 7)}     # a sparse key: fewer rows than keys
    target = dict(source)
    for k in rng.sample(sorted(source), 60):
        target[k] = "changed"
    calls: list = []
    hi = max(source)
    leaves, rows, n = g.differing_ranges(1, hi, fingerprints(source, target, calls))
    assert (rows, n) == (len(source), 1) and len(calls[0]) == 1
    assert g.top_buckets(1, hi) == -(-hi // 128) and all(b - a + 1 <= 128 for a, b in leaves) and len(leaves) <= 60
    inside = {k for k in source if any(a <= k <= b for a, b in leaves)}
    drift = g.compare_key_hashes({k: source[k] for k in inside}, {k: target[k] for k in inside})
    assert sorted(drift.different) == sorted(k for k in source if target[k] != source[k])
    assert g.top_buckets(1, 100_000_000) == g.VERIFY_TOP_BUCKETS == 65_536      # larger tables: wider buckets


@pytest.mark.parametrize("seed", range(12))
def test_bisection_is_exact_for_any_grid(seed):
    """Random key sets, bucket counts and leaf sizes: the grid of a level need not align with the one before
    (a bucket may straddle two ranges), and every difference still lands in a leaf."""
    rng = random.Random(seed)
    keys = rng.sample(range(-500, 20_000), rng.randint(1, 3_000))
    source = {k: f"v{k}" for k in keys}
    target = dict(source)
    for k in rng.sample(keys, rng.randint(0, min(30, len(keys)))):
        if rng.random() < 0.5:
            del target[k]
        else:
            target[k] = "x"
    for k in rng.sample(range(-500, 20_000), rng.randint(0, 5)):
        target.setdefault(k, "extra")
    lo, hi = min(set(source) | set(target)), max(set(source) | set(target))
    calls: list = []
    leaves, _, n = g.differing_ranges(lo, hi, fingerprints(source, target, calls), buckets=rng.randint(2, 20),
                                      leaf_rows=rng.randint(1, 50), first=rng.randint(1, 300))
    inside = [k for k in set(source) | set(target) if any(a <= k <= b for a, b in leaves)]
    want = g.compare_key_hashes(source, target)
    got = g.compare_key_hashes({k: source[k] for k in inside if k in source},
                               {k: target[k] for k in inside if k in target})
    assert (got.missing, got.extra, got.different) == (want.missing, want.extra, want.different)
    assert leaves == sorted(leaves) and all(a <= b for a, b in leaves) and n == len(calls) <= 20


def test_first_level_buckets_follow_the_key_span():
    assert g.top_buckets(1, 10) == g.VERIFY_BUCKETS
    assert g.top_buckets(1, 200_000) == 1563                  # buckets as narrow as a leaf: 128 keys
    assert g.top_buckets(1, 5_000_000) == 39_063
    assert g.top_buckets(1, 10_000_000) == g.top_buckets(-10**15, 10**15) == g.VERIFY_TOP_BUCKETS


def test_ranges_are_merged_clipped_and_written_as_one_condition():
    assert g.merged([(5, 9), (1, 3), (4, 4), (20, 30), (25, 26)]) == [(1, 9), (20, 30)]
    assert g.clip((3, 22), [(1, 4), (8, 9), (20, 30), (40, 50)]) == [(3, 4), (8, 9), (20, 22)]
    assert g.clip((5, 7), [(1, 4), (8, 9)]) == []
    assert g.ranges_sql('"ID"', [(1, 9)]) == '"ID" >= 1 AND "ID" <= 9'
    assert g.ranges_sql('"ID"', [(1, 9), (12, 12)]) == '("ID" BETWEEN 1 AND 9 OR "ID" = 12)'
    assert g.ranges_sql('"ID"', [(12, 12)]) == '"ID" = 12'
    assert [list(b) for b in g.batches([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]


def test_no_difference_costs_one_fingerprint_call():
    source = {k: "v" for k in range(1, 10_001)}
    calls: list = []
    leaves, rows, n = g.differing_ranges(1, 10_000, fingerprints(source, dict(source), calls))
    assert (leaves, rows, n) == ([], 10_000, 1)


def test_compare_and_summary():
    d = g.compare_key_hashes({1: "a", 2: "b", 3: "c"}, {1: "a", 3: "x", 4: "d"})
    assert (d.missing, d.extra, d.different, d.count) == ([2], [4], [3], 3)
    d.rows = 3
    assert g.verify_summary(d) == "VERIFY 3 mismatched of 3 rows (missing 1, extra 1, different 1)"


def test_verify_setting_is_validated_and_parsed():
    entry = {"ssmKey": "AFFILIATE", "target_table": "S.T", "primary_key": "id", "operations": {"type": "FULL"}}
    assert g.validate_config({"s.t": {**entry, "verify": True}})["s.t"].verify is True
    with pytest.raises(g.ConfigError, match="'verify' must be true or false"):
        g.validate_config({"s.t": {**entry, "verify": "yes"}})
    args = g.parse_args(["job.py", "--JOB_NAME", "j", "--SNOWFLAKE", "/sf", "--VERIFY", "true"],
                        lambda argv, names: {n: argv[argv.index(f"--{n}") + 1] for n in names})
    assert args.verify is True


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_canonical_forms_keep_null_null(dialect):
    """Every form is NULL for NULL (the row hash marks it 'N'): no CASE ... ELSE turns NULL into a value."""
    for kind in KINDS:
        sql = g.canonical_sql(dialect, kind, "c", 3 if kind == "decimal" else 0)
        top = sqlglot.parse_one(f"SELECT {sql}", read=dialect).selects[0]
        if isinstance(top, sqlglot.exp.Case):     # (inner CASEs are joined with || / CONCAT: NULL in, NULL out)
            default = top.args.get("default")
            assert default is None or "c" in {c.name for c in default.find_all(sqlglot.exp.Column)}, (kind, sql)


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_bulk_rows_wrap_a_source_query_into_one_row(engine):
    inner = g.key_hashes_sql(engine, g.source_table_ref(engine, "s", "t"), quote(engine, "id"), "MD5('x')", [(1, 9)])
    sql = g.bulk_rows_sql(engine, inner, ("k", "rh"), texts=("rh",))
    parses(sql, engine)
    tree = sqlglot.parse_one(sql, read=engine)
    assert [e.alias for e in tree.expressions] == ["n", "j"]
    fenced = inner + (" OFFSET 0" if engine == "postgres" else "")       # planned as it is alone (docstring)
    assert tree.find(sqlglot.exp.Subquery).this.sql(engine) == sqlglot.parse_one(fenced, read=engine).sql(engine)


def test_bulk_rows_decode_every_value_and_refuse_a_cut_answer():
    texts = ["a,b;c", "", None, "-", "é😀", "v"]
    cells = [("-" if t is None else "v" + t.encode("utf-8").hex().upper()) for t in texts]
    answer = ";".join(",".join((f"d{i - 3}", c, ".")) for i, c in enumerate(cells))     # an integer, a free text
    rows = g.bulk_rows("mysql", ("k", "v"), len(texts), answer.encode("ascii"), "t")
    assert rows == [{"k": str(i - 3), "v": t} for i, t in enumerate(texts)]
    assert g.bulk_rows("postgres", ("k", "h"), 2, '[{"k": 1, "h": 123456789012345678901234}, {"K": 2, "h": null}]',
                       "t") == [{"k": 1, "h": 123456789012345678901234}, {"k": 2, "h": None}]
    assert g.bulk_rows("mysql", ("k",), 0, None, "t") == [] == g.bulk_rows("postgres", ("k",), 0, None, "t")
    # cut anywhere in the last row (inside a value, between values, before its end mark), or after a whole row
    cuts = [("mysql", answer[:n]) for n in range(answer.rindex(";"), len(answer))] + [("postgres", "[{}]")]
    for engine, cut in cuts:
        with pytest.raises(g.BulkCut, match=rf"^t: the source counted {len(texts)} row\(s\), and the text it sent "
                                            r"them in holds (fewer|\d+)$"):
            g.bulk_rows(engine, ("k", "v"), len(texts), cut, "t")
