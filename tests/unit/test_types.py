"""Unit tests of the type plan: which source columns travel as text, their target types, the value checks."""

from decimal import Decimal

import pytest
import sqlglot
from pyspark.sql import types as T
from sqlglot.errors import ErrorLevel

import glue_etl_job as g

PG = {
    "id": g.SourceColumn("id", "integer", precision=32, scale=0),
    "amount": g.SourceColumn("Amount", "numeric", precision=12, scale=2),
    "free": g.SourceColumn("free", "numeric"),                        # numeric without precision
    "wide": g.SourceColumn("wide", "numeric", precision=50, scale=10),
    "ts": g.SourceColumn("ts", "timestamp without time zone"),
    "tstz": g.SourceColumn("tstz", "timestamp with time zone"),
    "d": g.SourceColumn("d", "date"),
    "t": g.SourceColumn("t", "time without time zone"),
    "ttz": g.SourceColumn("ttz", "time with time zone"),
    "c": g.SourceColumn("c", "character"),
    "m": g.SourceColumn("m", "money"),
    "vb": g.SourceColumn("vb", "bit varying", length=10),
    "b1": g.SourceColumn("b1", "bit", length=1),
    "b5": g.SourceColumn("b5", "bit", length=5),
    "iv": g.SourceColumn("iv", "interval"),
    "arr": g.SourceColumn("arr", "array"),
    "u": g.SourceColumn("u", "uuid"),
    "txt": g.SourceColumn("txt", "text"),
}
MY = {
    "id": g.SourceColumn("id", "int", "int(11)", 10, 0),
    "flag": g.SourceColumn("flag", "tinyint", "tinyint(1)", 3, 0),
    "uflag": g.SourceColumn("uflag", "tinyint", "tinyint(1) unsigned", 3, 0),
    "small": g.SourceColumn("small", "tinyint", "tinyint(4)", 3, 0),
    "y": g.SourceColumn("y", "year", "year(4)"),
    "dur": g.SourceColumn("dur", "time", "time(6)"),
    "b1": g.SourceColumn("b1", "bit", "bit(1)", 1),
    "b8": g.SourceColumn("b8", "bit", "bit(8)", 8),
    "dt": g.SourceColumn("dt", "datetime", "datetime(6)"),
    "d": g.SourceColumn("d", "date", "date"),
    "d65": g.SourceColumn("d65", "decimal", "decimal(65,30)", 65, 30),
    "d38": g.SourceColumn("d38", "decimal", "decimal(38,10)", 38, 10),
    "ts": g.SourceColumn("ts", "timestamp", "timestamp(6)"),
    "en": g.SourceColumn("en", "enum", "enum('a','b')"),
}


def travel(engine, facts, name):
    return g.type_plan(engine, facts, [facts[name].name], "s.t").text.get(facts[name].name)


@pytest.mark.parametrize("name, sf_type", [
    ("flag", "NUMBER(3,0)"), ("uflag", "NUMBER(3,0)"), ("y", "NUMBER(4,0)"), ("dur", "VARCHAR"),
    ("b8", "NUMBER(20,0)")])
def test_mysql_awkward_types_travel_as_the_servers_text_with_a_fixed_type(name, sf_type):
    t = travel("mysql", MY, name)
    assert t.sf_type == sf_type and t.expr.startswith("CAST(") and not t.typed_ok


def test_mysql_types_the_drivers_read_exactly_stay_typed():
    for name in ("id", "small", "b1", "d65", "d38", "ts", "en"):
        assert travel("mysql", MY, name) is None, name


@pytest.mark.parametrize("name, sf_type", [
    ("tstz", "TIMESTAMP_TZ(6)"), ("t", "TIME(6)"), ("ttz", "VARCHAR"), ("c", "VARCHAR"), ("m", "NUMBER(19,2)"),
    ("vb", "VARCHAR"), ("b5", "VARCHAR"), ("iv", "VARCHAR"), ("arr", "VARIANT")])
def test_postgres_awkward_types_travel_as_text_with_a_fixed_type(name, sf_type):
    assert travel("postgres", PG, name).sf_type == sf_type


def test_postgres_verbatim_types_are_the_column_itself_typed_as_spark_reads_it():
    for name in ("amount", "free", "ts", "d"):
        t = travel("postgres", PG, name)
        assert (t.expr, t.sf_type, t.typed_ok) == (None, None, True)
    for name in ("id", "u", "txt", "b1"):                     # bit(1) stays typed (BOOLEAN)
        assert travel("postgres", PG, name) is None


def test_timestamptz_is_utc_text_with_a_full_offset():
    expr = travel("postgres", PG, "tstz").expr
    assert expr == "((\"tstz\" AT TIME ZONE 'UTC')::text || '+00:00')"


def test_a_transform_gets_typed_values_where_they_are_exact():
    plan = g.type_plan("postgres", PG, [c.name for c in PG.values()], "s.t", transform=True)
    assert sorted(plan.text) == ["b5", "c", "iv", "m", "t", "ttz", "vb"]
    plan = g.type_plan("mysql", MY, [c.name for c in MY.values()], "s.t", transform=True)
    assert sorted(plan.text) == ["b8", "dur", "flag", "uflag", "y"]


def test_the_partition_column_stays_typed_or_is_refused():
    plan = g.type_plan("mysql", MY, ["id", "dt", "d"], "s.t", partition_column="dt")
    assert sorted(plan.text) == ["d"]
    plan = g.type_plan("postgres", PG, ["Amount", "tstz"], "s.t", partition_column="Amount")
    assert sorted(plan.text) == ["Amount", "tstz"]         # its text is the column itself: predicates still work
    assert "tstz" not in g.type_plan("postgres", PG, ["tstz"], "s.t", partition_column="tstz").text
    with pytest.raises(g.EtlError, match="partition_column y is year.*travels as text"):
        g.type_plan("mysql", MY, ["y"], "s.t", partition_column="y")


def test_names_match_in_any_case_and_unknown_columns_stay_typed():
    plan = g.type_plan("postgres", PG, ["AMOUNT", "nope"], "s.t")
    assert list(plan.text) == ["AMOUNT"]


def test_source_query_selects_each_text_under_its_own_name():
    plan = g.type_plan("mysql", MY, ["id", "flag", "y", "dur", "dt"], "p.m")
    sql = g.source_query("mysql", "p", "m", ["id", "flag", "y", "dur", "dt"], "`id` > 3", plan.exprs)
    assert sql == ("SELECT `id`, CAST(`flag` AS CHAR) AS `flag`, CAST(`y` + 0 AS CHAR) AS `y`, "
                   "CAST(`dur` AS CHAR) AS `dur`, NULLIF(DATE_FORMAT(`dt`, '%Y-%m-%d %H:%i:%s.%f'), "
                   "'0000-00-00 00:00:00.000000') AS `dt` FROM `p`.`m` WHERE `id` > 3")
    parsed = sqlglot.parse_one(sql, read="mysql", error_level=ErrorLevel.RAISE)
    assert [e.alias_or_name for e in parsed.expressions] == ["id", "flag", "y", "dur", "dt"]
    names = [c.name for c in PG.values()]
    sql = g.source_query("postgres", "s", "t", names, None, g.type_plan("postgres", PG, names, "s.t").exprs)
    parsed = sqlglot.parse_one(sql, read="postgres", error_level=ErrorLevel.RAISE)
    assert [e.alias_or_name for e in parsed.expressions] == names
    assert '"Amount", "free"' in sql                        # verbatim numerics: the column itself


def test_column_types_query_parses_in_both_engines():
    for engine in ("postgres", "mysql"):
        parsed = sqlglot.parse_one(g.column_types_query(engine, "sales", "orders"), read=engine,
                                   error_level=ErrorLevel.RAISE)
        assert [e.alias for e in parsed.expressions] == ["name", "type", "column_type", "num_precision",
                                                         "num_scale", "length", "charset"]


def test_source_columns_reads_the_facts():
    facts = g.source_columns([{"name": "Flag", "type": "tinyint", "column_type": "tinyint(1)",
                               "num_precision": Decimal(3), "num_scale": 0, "length": None},
                              {"name": "n", "type": "numeric", "column_type": "", "num_precision": None,
                               "num_scale": None, "length": None},
                              {"name": "b", "type": "bit", "column_type": "", "num_precision": None,
                               "num_scale": None, "length": 4}])
    assert facts == {"flag": g.SourceColumn("Flag", "tinyint", "tinyint(1)", 3, 0),
                     "n": g.SourceColumn("n", "numeric", "", None, None),
                     "b": g.SourceColumn("b", "bit", "", None, None, 4)}


def test_planned_target_types():
    plan = g.type_plan("mysql", MY, ["id", "flag", "y", "dt"], "p.m")
    fields = [("id", T.IntegerType()), ("flag", T.StringType()), ("y", T.StringType()), ("dt", T.StringType())]
    typed = {"id": T.IntegerType(), "flag": T.BooleanType(), "y": T.DateType(), "dt": T.TimestampNTZType()}
    cols = plan.columns(fields, typed, "p.m")
    assert [(c.name, c.sf_type) for c in cols] == [("ID", "NUMBER(10,0)"), ("FLAG", "NUMBER(3,0)"),
                                                   ("Y", "NUMBER(4,0)"), ("DT", "TIMESTAMP_NTZ(6)")]
    # A transform that cast the flag to boolean opts in to BOOLEAN.
    cols = plan.columns([("flag", T.BooleanType())], typed, "p.m")
    assert cols[0].sf_type == "BOOLEAN"
    arr = g.type_plan("postgres", PG, ["arr"], "s.t").columns([("arr", T.StringType())], {}, "s.t")
    assert (arr[0].stage_type, arr[0].load_expr) == ("VARCHAR", 'PARSE_JSON(s."ARR")')


def test_value_checks_for_numbers_wider_than_number_38():
    plan = g.type_plan("postgres", PG, ["free", "wide", "amount", "t", "m"], "s.t")
    assert [c.column for c in plan.checks] == ["free", "wide", "t", "m"]
    free, wide = plan.checks[0], plan.checks[1]
    assert free.bad == '"free" <> ROUND("free", 18) OR ABS("free") >= 1' + "0" * 20
    assert "NUMBER(38,18)" in free.why and "NUMBER(38,10)" in wide.why
    my = g.type_plan("mysql", MY, ["d65", "d38"], "p.m").checks
    assert [c.bad for c in my] == ["`d65` <> ROUND(`d65`, 30) OR ABS(`d65`) >= 100000000"]


def test_value_checks_ride_in_the_window_scan_and_name_the_values():
    checks = g.type_plan("postgres", PG, ["free", "t"], "s.t").checks
    sql = g.source_stats_query("postgres", "s", "t", '"id" > 3', "id", None, checks)
    assert sql.startswith('SELECT COUNT(*) AS n, MIN("id") AS lo, MAX("id") AS hi, MIN(CASE WHEN "free" <> ')
    assert sql.endswith(' FROM "s"."t" WHERE "id" > 3') and sql.count("FROM") == 1     # one scan, no subquery
    parsed = sqlglot.parse_one(sql, read="postgres", error_level=ErrorLevel.RAISE)
    assert [e.alias for e in parsed.expressions] == ["n", "lo", "hi", "bad_0", "bad_1"]
    my = g.type_plan("mysql", MY, ["d65"], "p.m").checks
    sqlglot.parse_one(g.source_stats_query("mysql", "p", "m", None, None, None, my), read="mysql",
                      error_level=ErrorLevel.RAISE)
    assert "bad_" not in g.source_stats_query("mysql", "p", "m", None, None, None, [])
    problems = g.value_problems({"bad_0": "1.1234567890123456789012", "bad_1": None}, checks)
    assert problems == ["column free holds 1.1234567890123456789012, which does not fit NUMBER(38,18) (at most 18 "
                        "decimals and 20 integer digits); declare it numeric(p,s) with p <= 38, or load a view that "
                        "casts it, or leave it out with 'columns'"]
