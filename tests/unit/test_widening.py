"""Type widening: the DDL ``target_ddl`` plans before a load, each widening Snowflake can do in place,
and each refusal (with the table, column, both types and the fix).

Snowflake's rules: "ALTER TABLE ... ALTER COLUMN" (docs/SNOWFLAKE.md section 7). Every statement is
parsed with sqlglot's snowflake dialect.
"""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

import glue_etl_job as g

TARGET = '"DB"."SALES"."ORDERS"'


def cols(**types: str) -> list[g.Column]:
    return [g.Column(name.lower(), name, t) for name, t in types.items()]


def parses_as_snowflake(sql: str) -> exp.Expr:
    parsed = sqlglot.parse(sql, read="snowflake", error_level=ErrorLevel.RAISE)
    assert len(parsed) == 1 and not isinstance(parsed[0], exp.Command), sql
    return parsed[0]


# ----- what can be widened, and to what ------------------------------------------------------


@pytest.mark.parametrize("source, target, wider", [
    ("NUMBER(19,0)", "NUMBER(10,0)", "NUMBER(19,0)"),      # PostgreSQL integer -> bigint (IntegerType -> LongType)
    ("NUMBER(10,0)", "NUMBER(5,0)", "NUMBER(10,0)"),       # smallint -> integer
    ("NUMBER(5,0)", "NUMBER(3,0)", "NUMBER(5,0)"),         # tinyint -> smallint
    ("NUMBER(14,2)", "NUMBER(10,2)", "NUMBER(14,2)"),      # numeric(10,2) -> numeric(14,2)
    ("NUMBER(38,0)", "NUMBER(19,0)", "NUMBER(38,0)"),
    ("NUMBER(10,2)", "NUMBER(10,4)", "NUMBER(12,4)"),      # the target's larger scale stays; 8 integer digits
    ("NUMBER(19,0)", "NUMBER(12,2)", "NUMBER(21,2)"),
    ("VARCHAR", "VARCHAR(10)", "VARCHAR"),                 # the job's text columns have no length
    ("VARCHAR(50)", "VARCHAR(10)", "VARCHAR(50)"),
    ("VARCHAR(16777216)", "VARCHAR(200)", "VARCHAR"),
])
def test_a_column_snowflake_can_widen_in_place_is_widened(source, target, wider):
    assert g.widening(source, target) == wider
    assert g.incompatibility(source, wider) is None        # the wider column holds every source value


@pytest.mark.parametrize("source, target", [
    ("NUMBER(10,0)", "NUMBER(10,0)"), ("NUMBER(10,0)", "NUMBER(19,0)"), ("NUMBER(10,4)", "NUMBER(12,6)"),
    ("NUMBER(19,0)", "NUMBER"), ("VARCHAR", "VARCHAR"), ("VARCHAR(10)", "VARCHAR(50)"), ("VARCHAR(10)", "VARCHAR"),
    ("NUMBER(19,0)", "VARCHAR(5)"),       # not text into text: a text target takes any value's text, as before
    ("FLOAT", "FLOAT"), ("TIMESTAMP_TZ(6)", "TIMESTAMP_TZ"), ("DATE", "DATE"),
])
def test_a_column_that_holds_the_source_is_left_alone(source, target):
    assert g.widening(source, target) is None


@pytest.mark.parametrize("source, target, why", [
    ("NUMBER(10,4)", "NUMBER(10,2)", "it keeps 2 decimal place(s), the source has 4"),     # a scale change
    ("NUMBER(10,4)", "NUMBER(12,0)", "it keeps 0 decimal place(s), the source has 4"),
    ("NUMBER(38,0)", "NUMBER(38,2)", "it holds 36 integer digit(s), the source up to 38"),  # would need 40 digits
    ("NUMBER(38,0)", "FLOAT", "FLOAT keeps 15 significant digits, the source up to 38"),
    ("TIMESTAMP_TZ(6)", "TIMESTAMP_NTZ", "TIMESTAMP_NTZ is not TIMESTAMP_TZ"),
    ("TIMESTAMP_NTZ(6)", "TIMESTAMP_TZ", "TIMESTAMP_TZ is not TIMESTAMP_NTZ"),
    ("TIMESTAMP_NTZ(6)", "TIMESTAMP_NTZ(3)", "it keeps 3 fractional second digit(s), the source has 6"),
    ("VARCHAR", "NUMBER(38,0)", ""), ("FLOAT", "NUMBER(38,0)", ""), ("NUMBER(10,0)", "DATE", ""),
    ("BOOLEAN", "NUMBER(1,0)", ""),
])
def test_what_snowflake_cannot_widen_stays_refused(source, target, why):
    assert g.widening(source, target) is None
    reason = g.incompatibility(source, target)
    assert reason is not None and (reason.startswith(why) if why else reason == "")
    with pytest.raises(g.EtlError) as info:
        g.target_ddl(TARGET, cols(C=source), {"C": target}, "sales.orders", "UPSERT")
    assert f"column C is {target} in Snowflake but the source now gives {source}" in str(info.value)


# ----- target_ddl: the plan's DDL --------------------------------------------------------------


def test_ddl_widens_then_adds_and_every_statement_parses_as_snowflake():
    source = cols(ID="NUMBER(19,0)", AMOUNT="NUMBER(14,2)", NOTE="VARCHAR", AT="TIMESTAMP_TZ(6)", NEW="DATE")
    target = {"ID": "NUMBER(10,0)", "AMOUNT": "NUMBER(10,2)", "NOTE": "VARCHAR(10)", "AT": "TIMESTAMP_TZ"}
    ddl = g.target_ddl(TARGET, source, target, "sales.orders", "INCREMENTAL")
    assert ddl == [
        ("widened ID NUMBER(10,0)->NUMBER(19,0)",
         f'ALTER TABLE {TARGET} ALTER COLUMN "ID" SET DATA TYPE NUMBER(19,0)'),
        ("widened AMOUNT NUMBER(10,2)->NUMBER(14,2)",
         f'ALTER TABLE {TARGET} ALTER COLUMN "AMOUNT" SET DATA TYPE NUMBER(14,2)'),
        ("widened NOTE VARCHAR(10)->VARCHAR", f'ALTER TABLE {TARGET} ALTER COLUMN "NOTE" SET DATA TYPE VARCHAR'),
        ("added_column NEW DATE", f'ALTER TABLE {TARGET} ADD COLUMN "NEW" DATE'),
    ]
    for _, sql in ddl:
        parses_as_snowflake(sql)
    alter = parses_as_snowflake(ddl[0][1])
    action = alter.args["actions"][0]
    assert isinstance(action, exp.AlterColumn) and action.this.name == "ID"
    assert action.args["dtype"].sql("snowflake") == "DECIMAL(19, 0)"        # sqlglot's spelling of NUMBER(19,0)


def test_a_missing_target_is_created_and_full_needs_no_ddl():
    source = cols(ID="NUMBER(19,0)", NOTE="VARCHAR")
    ddl = g.target_ddl(TARGET, source, {}, "sales.orders", "UPSERT")
    assert ddl == [("created", f'CREATE TABLE IF NOT EXISTS {TARGET} ("ID" NUMBER(19,0), "NOTE" VARCHAR)')]
    parses_as_snowflake(ddl[0][1])
    # FULL redefines the target from the source schema (CREATE OR REPLACE ... AS SELECT), whatever it holds
    assert g.target_ddl(TARGET, source, {"ID": "DATE"}, "sales.orders", "FULL") == []
    assert g.target_ddl(TARGET, source, {}, "sales.orders", "FULL") == []


def test_a_target_that_holds_the_source_needs_no_ddl():
    source = cols(ID="NUMBER(10,0)", NOTE="VARCHAR", AMOUNT="NUMBER(10,2)")
    target = {"ID": "NUMBER(38,0)", "NOTE": "VARCHAR", "AMOUNT": "NUMBER(20,6)"}
    assert g.target_ddl(TARGET, source, target, "sales.orders", "APPEND") == []


def test_every_refusal_is_named_at_once_with_the_fix_and_nothing_is_widened():
    source = cols(ID="NUMBER(19,0)", AMOUNT="NUMBER(12,4)", AT="TIMESTAMP_TZ(6)", FLAG="BOOLEAN", NEW="DATE")
    target = {"ID": "NUMBER(10,0)", "AMOUNT": "NUMBER(12,2)", "AT": "TIMESTAMP_NTZ", "FLAG": "VARCHAR(5)"}
    with pytest.raises(g.EtlError) as info:
        g.target_ddl(TARGET, source, target, "sales.orders", "UPSERT")
    text = str(info.value)
    assert text.startswith("sales.orders: the source schema changed incompatibly with the target: ")
    assert ("column AMOUNT is NUMBER(12,2) in Snowflake but the source now gives NUMBER(12,4) "
            "(it keeps 2 decimal place(s), the source has 4); column AT is TIMESTAMP_NTZ in Snowflake but the "
            "source now gives TIMESTAMP_TZ(6) (TIMESTAMP_NTZ is not TIMESTAMP_TZ") in text
    assert "column ID" not in text and "column FLAG" not in text and "NEW" not in text   # widenable, fine, new
    assert ("""Run it once with --OBJ '{"sales.orders": "FULL"}' to redefine the target, or alter the """
            """Snowflake column yourself (Snowflake changes a column in place only to a NUMBER of more """
            """precision and the same scale, or to a longer VARCHAR); the target was not changed""") in text


def test_schema_changes_still_lists_the_new_columns():
    source = cols(ID="NUMBER(19,0)", NEW="VARCHAR")
    assert [c.name for c in g.schema_changes(source, {"ID": "NUMBER(10,0)"}, "t")] == ["NEW"]


def test_alter_column_sql_quotes_the_column():
    sql = g.alter_column_sql(TARGET, 'A"B', "VARCHAR(50)")
    assert sql == f'ALTER TABLE {TARGET} ALTER COLUMN "A""B" SET DATA TYPE VARCHAR(50)'
    parses_as_snowflake(sql)


# ----- the emulator refuses what Snowflake refuses (local/fakesnow_server.py, item 9) ------------


@pytest.mark.parametrize("row, new, error", [
    (("NUMBER", None, 10, 0), "NUMBER(19,0)", None), (("NUMBER", None, 10, 2), "NUMBER(20,2)", None),
    (("NUMBER", None, 19, 0), "NUMBER(10,0)", None),          # allowed when the values fit: left to DuckDB's cast
    (("NUMBER", None, 38, 0), "INT", None), (("TEXT", 10, None, None), "VARCHAR(50)", None),
    (("TEXT", 10, None, None), "VARCHAR", None), (("TEXT", 10, None, None), "STRING", None),
    (("NUMBER", None, 10, 2), "NUMBER(12,4)",
     "cannot change column C from type NUMBER(10,2) to NUMBER(12,4) because changing the scale of a number is not "
     "supported."),
    (("TEXT", 50, None, None), "VARCHAR(5)",
     "cannot change column C from type VARCHAR(50) to VARCHAR(5) because reducing the byte-length of varchar is "
     "not supported."),
    (("TEXT", 16777216, None, None), "NUMBER(10,0)", "cannot change column C from type VARCHAR(16777216) to "
                                                     "NUMBER(10,0)"),
    (("NUMBER", None, 38, 0), "VARCHAR", "cannot change column C from type NUMBER(38,0) to VARCHAR(16777216)"),
    (("FLOAT", None, None, None), "NUMBER(10,0)", "cannot change column C from type FLOAT to NUMBER(10,0)"),
    (("TIMESTAMP_NTZ", None, None, None), "TIMESTAMP_TZ(6)",
     "cannot change column C from type TIMESTAMP_NTZ to TIMESTAMP_TZ"),
])
def test_the_emulators_alter_column_rules(row, new, error):
    from local import fakesnow_server as fs
    alter = sqlglot.parse_one(f'ALTER TABLE "DB"."S"."T" ALTER COLUMN "C" SET DATA TYPE {new}', read="snowflake")
    asked = []

    def lookup(table, column):
        asked.append((table.catalog, table.db, table.name, column))
        return row
    if error is None:
        fs.check_alter_column_types(alter, lookup)
    else:
        with pytest.raises(Exception) as info:
            fs.check_alter_column_types(alter, lookup)
        assert str(info.value).endswith("SQL compilation error: " + error)
    assert asked == [("DB", "S", "T", "C")]
