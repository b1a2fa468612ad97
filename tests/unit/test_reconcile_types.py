"""VERIFY's canonical forms for every type of the fidelity (torture) tables' extra columns (issue 15):
each source type gets the kind that matches how the job loads it (its type plan), the Snowflake side
parses with sqlglot's snowflake dialect, NULL stays NULL, and a type still without a form is refused
by name. The forms are run on the real servers in tests/e2e/test_verify.py."""

from __future__ import annotations

import logging

import duckdb
import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

import glue_etl_job as g
from local.fakesnow_reconcile import date_format_to_strftime

NEW_KINDS = ("time", "money", "inet", "json_array", "bit_bool", "plus0")
# Where each kind occurs (the Snowflake side always).
SOURCES = {"time": ("postgres",), "money": ("postgres",), "inet": ("postgres",), "json_array": ("postgres",),
           "bit_bool": ("postgres", "mysql"), "plus0": ("mysql",)}


def col(engine: str, data_type: str, column_type: str = "", length: int | None = None) -> g.SourceColumn:
    return g.SourceColumn("c", data_type, column_type, length=length)


def loaded_as(engine: str, c: g.SourceColumn, typed: str | None) -> str:
    """The target type the job gives ``c``: its type plan's, else the typed one given (Spark's schema)."""
    travel = g.column_travel(engine, c)
    return travel.sf_type if travel is not None and travel.sf_type else typed


# (engine, data_type, column_type, bit length, the Snowflake type when the column travels typed, kind):
# the extra columns of tests/e2e/test_fidelity.py (PG_EXTRA, MY_EXTRA).
EXTRA = [
    ("postgres", "time without time zone", "", None, None, "time"),
    ("postgres", "time with time zone", "", None, None, "text"),
    ("postgres", "numeric", "", None, "NUMBER(38,18)", "decimal"),       # numeric without precision
    ("postgres", "money", "", None, None, "money"),
    ("postgres", "character", "", None, None, "text"),
    ("postgres", "uuid", "", None, "VARCHAR", "text"),
    ("postgres", "inet", "", None, "VARCHAR", "inet"),
    ("postgres", "interval", "", None, None, "text"),
    ("postgres", "array", "", None, None, "json_array"),                # int[] and text[]
    ("postgres", "xml", "", None, "VARCHAR", "text"),
    ("postgres", "bit varying", "", 10, None, "text"),
    ("postgres", "bit", "", 5, None, "text"),
    ("postgres", "bit", "", 1, "BOOLEAN", "bit_bool"),
    ("postgres", "smallint", "", None, "NUMBER(5,0)", "int"),           # smallserial
    ("mysql", "tinyint", "tinyint(1)", None, None, "int"),              # -1, 2, 127 stay numbers
    ("mysql", "time", "time(6)", None, None, "text"),                   # a duration, as its text
    ("mysql", "year", "year(4)", None, None, "plus0"),
    ("mysql", "bit", "bit(1)", None, "BOOLEAN", "bit_bool"),
    ("mysql", "bit", "bit(64)", None, None, "plus0"),
    ("mysql", "tinyint", "tinyint(3) unsigned", None, "NUMBER(5,0)", "int"),
    ("mysql", "smallint", "smallint(5) unsigned", None, "NUMBER(10,0)", "int"),
    ("mysql", "mediumint", "mediumint(9)", None, "NUMBER(10,0)", "int"),
    ("mysql", "mediumint", "mediumint(8) unsigned", None, "NUMBER(10,0)", "int"),
    ("mysql", "int", "int(10) unsigned", None, "NUMBER(19,0)", "int"),
    ("mysql", "set", "set('a','b','c')", None, "VARCHAR", "text"),
    ("mysql", "decimal", "decimal(65,30)", None, "NUMBER(38,30)", "decimal"),
    ("mysql", "varchar", "varchar(20)", None, "VARCHAR", "text"),       # latin1: converted to UTF-8 by the hash
    ("mysql", "char", "char(5)", None, "VARCHAR", "text"),
]


@pytest.mark.parametrize(("engine", "data_type", "column_type", "length", "typed", "kind"), EXTRA)
def test_each_extra_torture_type_gets_the_kind_of_how_it_loads(engine, data_type, column_type, length, typed,
                                                                kind):
    target = loaded_as(engine, col(engine, data_type, column_type, length), typed)
    assert target is not None
    assert g.canon_kind(engine, data_type, column_type, target) == (kind, "")


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_new_forms_parse_in_each_dialect_and_keep_null_null(kind):
    for dialect in (*SOURCES[kind], "snowflake"):
        c = g.qi("C") if dialect == "snowflake" else g.source_quote(dialect, "c")
        sql = g.canonical_sql(dialect, kind, c, 2)
        tree = sqlglot.parse_one(f"SELECT {sql} FROM t", read=dialect, error_level=ErrorLevel.RAISE)
        top = tree.selects[0]
        if isinstance(top, sqlglot.exp.Case):         # no ELSE that turns NULL into a value
            assert top.args.get("default") is None, (kind, dialect, sql)
        row_hash = g.row_hash_sql(dialect, [(kind, sql)])
        sqlglot.parse_one(f"SELECT {row_hash} FROM t", read=dialect, error_level=ErrorLevel.RAISE)


def test_the_forms_are_the_texts_the_job_loads():
    pg, sf = "postgres", "snowflake"
    assert g.canonical_sql(pg, "time", '"c"') == "TO_CHAR(\"c\", 'HH24:MI:SS.US')"
    assert g.canonical_sql(sf, "time", '"C"') == "TO_VARCHAR(\"C\", 'HH24:MI:SS.FF6')"
    # inet: the output text the driver reads (CAST(inet AS text) would add '/32')
    assert "FORMAT('%s', \"c\")" in g.canonical_sql(pg, "inet", '"c"')
    # the array's JSON exactly as the job stages it (column_travel), against TO_JSON of the VARIANT
    staged = g.column_travel(pg, col(pg, "array")).expr
    assert g.canonical_sql(pg, "json_array", '"c"').upper() == staged.upper()
    assert g.canonical_sql(sf, "json_array", '"C"') == 'TO_JSON("C")'
    # MySQL YEAR / BIT(n): the number c + 0, exactly as staged
    for data_type, column_type in (("year", "year(4)"), ("bit", "bit(64)")):
        assert g.canonical_sql("mysql", "plus0", "`c`") == g.column_travel("mysql", col("mysql", data_type,
                                                                                       column_type)).expr
    # money: as the decimal of its numeric, at the target's scale; the same decimal form on Snowflake
    assert g.canonical_sql(pg, "money", '"c"', 2) == g.canonical_sql(pg, "decimal", 'CAST("c" AS NUMERIC)', 2)
    assert g.canonical_sql(sf, "money", '"C"', 2) == g.canonical_sql(sf, "decimal", '"C"', 2)
    # bit(1) as BOOLEAN: '1'/'0' on every side, the Snowflake side that of a boolean
    assert g.canonical_sql(sf, "bit_bool", '"C"') == g.canonical_sql(sf, "bool", '"C"')
    with pytest.raises(ValueError, match="does not occur on mysql"):
        g.canonical_sql("mysql", "time", "`c`")


class _Source:
    engine = "postgres"


def test_money_is_compared_at_the_targets_scale():
    facts = g.source_columns([{"name": "id", "type": "integer"}, {"name": "m", "type": "money"},
                              {"name": "t", "type": "time without time zone"}])
    cfg = g.build_table_config("s.t", {"ssmKey": "AFFILIATE", "target_table": "RAW.T", "primary_key": "id",
                                       "operations": {"type": "UPSERT"}})
    r = g.Reconciler(_Source(), None, cfg, "ETL_DB.RAW.T", facts,
                     {"ID": "NUMBER(10,0)", "M": "NUMBER(19,2)", "T": "TIME"}, "S", logging.LoggerAdapter(
                         logging.getLogger("test"), {}))
    r._bound = lambda: None
    r._plan()
    assert r.src_hash == g.row_hash_sql("postgres", [("int", g.canonical_sql("postgres", "int", '"id"')),
                                                     ("money", g.canonical_sql("postgres", "decimal",
                                                                               'CAST("m" AS NUMERIC)', 2)),
                                                     ("time", g.canonical_sql("postgres", "time", '"t"'))])
    assert r.tgt_hash == g.row_hash_sql("snowflake", [("int", g.canonical_sql("snowflake", "int", '"ID"')),
                                                      ("money", g.canonical_sql("snowflake", "decimal", '"M"', 2)),
                                                      ("time", g.canonical_sql("snowflake", "time", '"T"'))])


@pytest.mark.parametrize(("engine", "data_type", "column_type", "target", "why"), [
    ("postgres", "point", "", "VARCHAR", "source type point has no canonical form for VERIFY yet"),
    ("mysql", "geometry", "geometry", "BINARY", "source type geometry has no canonical form for VERIFY yet"),
    ("postgres", "time without time zone", "", "VARCHAR", "was loaded as VARCHAR, which VERIFY does not compare"),
    ("postgres", "array", "", "VARCHAR", "was loaded as VARCHAR, which VERIFY does not compare"),
    ("postgres", "money", "", "FLOAT", "was loaded as FLOAT, which VERIFY does not compare"),
    ("postgres", "money", "", "NUMBER(19,0)", "was loaded as NUMBER(19,0), which VERIFY does not compare"),
    ("mysql", "year", "year(4)", "DATE", "was loaded as DATE, which VERIFY does not compare"),
])
def test_types_without_a_form_or_loaded_otherwise_are_refused_by_name(engine, data_type, column_type, target, why):
    kind, message = g.canon_kind(engine, data_type, column_type, target)
    assert kind is None and why in message


def test_reconciler_names_the_refused_column():
    facts = g.source_columns([{"name": "id", "type": "integer"}, {"name": "spot", "type": "point"}])
    cfg = g.build_table_config("s.t", {"ssmKey": "AFFILIATE", "target_table": "RAW.T", "primary_key": "id",
                                       "operations": {"type": "UPSERT"}})
    r = g.Reconciler(_Source(), None, cfg, "ETL_DB.RAW.T", facts, {"ID": "NUMBER(10,0)", "SPOT": "VARCHAR"}, "S",
                     logging.LoggerAdapter(logging.getLogger("test"), {}))
    with pytest.raises(g.EtlError, match=r"^s\.t: VERIFY cannot compare this table \(its load committed\): column "
                                         r"spot: source type point has no canonical form for VERIFY yet\. Leave"):
        r._plan()


@pytest.mark.parametrize(("value", "text"), [("00:00:00", "00:00:00.000000"),
                                             ("23:59:59.999999", "23:59:59.999999"), ("12:34:56.5", "12:34:56.500000")])
def test_emulator_translation_writes_times_with_six_fraction_digits(value, text):
    """local/fakesnow_reconcile.py: TO_VARCHAR(<time>, 'HH24:MI:SS.FF6') keeps '.000000' on DuckDB, as on
    Snowflake (fakesnow alone writes midnight as '00:00:00')."""
    sql = sqlglot.parse_one(f"SELECT {g.canonical_sql('snowflake', 'time', 'c')} FROM t", read="snowflake")
    duck = sql.transform(date_format_to_strftime).sql("duckdb")
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT TIME '{value}' AS c")
    assert con.execute(duck).fetchall() == [(text,)]


@pytest.mark.parametrize(("precision", "scale", "value"), [
    (5, 5, "-0.00001"), (19, 2, "-92233720368547758.08"), (38, 10, "-9999999999999999999999999999.9999999999"),
    (38, 18, "12345678901234567890.123456789012345678"), (38, 19, "1234567890123456789.1234567890123456789"),
    (38, 20, "-123456789012345678.12345678901234567891"), (38, 30, "12345678.123456789012345678901234567890"),
    (38, 30, "-0.000000000000000000000000000001"), (38, 30, "0.5"),
    (38, 37, "-0.1234567890123456789012345678901234567"),
])
def test_decimal_form_is_the_number_at_its_scale_without_overflow(precision, scale, value):
    """NUMBER(38,30) * 10^30 overflows 38 digits (Snowflake keeps a product's scale; DuckDB fails the same
    way): the Snowflake form takes the fraction's digits in pieces. Run on DuckDB, as sqlglot writes it."""
    sql = sqlglot.transpile(f"SELECT {g.canonical_sql('snowflake', 'decimal', 'c', scale)} FROM t",
                            read="snowflake", write="duckdb")[0]
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT CAST('{value}' AS DECIMAL({precision},{scale})) AS c")
    whole, _, digits = value.lstrip("-").partition(".")
    assert con.execute(sql).fetchall() == [(f"{'-' if value.startswith('-') else ''}{whole}."
                                            f"{digits.ljust(scale, '0')}",)]
