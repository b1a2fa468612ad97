"""The target-type check: a narrower target column is refused before anything is written, a wider one loads.

Target types come from INFORMATION_SCHEMA.COLUMNS (DATA_TYPE, CHARACTER_MAXIMUM_LENGTH,
NUMERIC_PRECISION, NUMERIC_SCALE), turned into text by ``target_type``.
"""

from __future__ import annotations

import pytest

import glue_etl_job as g


@pytest.mark.parametrize("row, text", [
    (("NUMBER", None, 5, 2), "NUMBER(5,2)"), (("NUMBER", None, 38, 0), "NUMBER(38,0)"),
    (("TEXT", 16777216, None, None), "VARCHAR"), (("TEXT", 10, None, None), "VARCHAR(10)"),
    (("FLOAT", None, None, None), "FLOAT"), (("TIMESTAMP_NTZ", None, None, None), "TIMESTAMP_NTZ"),
    (("TIMESTAMP_TZ", None, None, None), "TIMESTAMP_TZ"), (("BOOLEAN", None, None, None), "BOOLEAN"),
])
def test_information_schema_rows_become_type_text(row, text):
    assert g.target_type(*row) == text


@pytest.mark.parametrize("source, target", [
    ("NUMBER(10,4)", "NUMBER(10,4)"), ("NUMBER(10,4)", "NUMBER(12,4)"), ("NUMBER(10,4)", "NUMBER(11,5)"),
    ("NUMBER(19,0)", "NUMBER(38,0)"), ("NUMBER(10,0)", "NUMBER"), ("NUMBER(5,0)", "NUMBER(38,2)"),
    ("NUMBER(12,2)", "FLOAT"), ("NUMBER(15,0)", "FLOAT"), ("FLOAT", "FLOAT"),
    ("TIMESTAMP_NTZ(6)", "TIMESTAMP_NTZ"), ("TIMESTAMP_NTZ(6)", "TIMESTAMP_NTZ(9)"),
    ("TIMESTAMP_NTZ(6)", "TIMESTAMP"), ("TIMESTAMP_NTZ(6)", "DATETIME"),
    ("TIMESTAMP_TZ(6)", "TIMESTAMP_TZ"), ("TIMESTAMP_TZ(6)", "TIMESTAMP_TZ(6)"),
    ("VARCHAR", "VARCHAR"), ("VARCHAR", "VARCHAR(10)"),       # a longer value fails the INSERT loudly
    ("NUMBER(19,0)", "VARCHAR"), ("VARIANT", "VARIANT"), ("DATE", "DATE"), ("BINARY", "BINARY"),
])
def test_same_or_wider_targets_are_accepted(source, target):
    assert g.incompatibility(source, target) is None and g.compatible(source, target)


@pytest.mark.parametrize("source, target, why", [
    ("NUMBER(10,4)", "NUMBER(5,2)", "it keeps 2 decimal place(s), the source has 4"),
    ("NUMBER(10,4)", "NUMBER(10,2)", "it keeps 2 decimal place(s), the source has 4"),
    ("NUMBER(10,4)", "NUMBER(8,4)", "it holds 4 integer digit(s), the source up to 6"),
    ("NUMBER(10,2)", "NUMBER(10,4)", "it holds 6 integer digit(s), the source up to 8"),
    ("NUMBER(19,0)", "NUMBER(10,0)", "it holds 10 integer digit(s), the source up to 19"),
    ("NUMBER(38,0)", "FLOAT", "FLOAT keeps 15 significant digits, the source up to 38"),
    ("TIMESTAMP_NTZ(6)", "TIMESTAMP_TZ", "TIMESTAMP_TZ is not TIMESTAMP_NTZ"),
    ("TIMESTAMP_TZ(6)", "TIMESTAMP_NTZ", "TIMESTAMP_NTZ is not TIMESTAMP_TZ"),
    ("TIMESTAMP_TZ(6)", "TIMESTAMP_LTZ", "TIMESTAMP_LTZ is not TIMESTAMP_TZ"),
    ("TIMESTAMP_NTZ(6)", "TIMESTAMP_NTZ(0)", "it keeps 0 fractional second digit(s), the source has 6"),
    ("TIMESTAMP_TZ(6)", "TIMESTAMP_TZ(3)", "it keeps 3 fractional second digit(s), the source has 6"),
    ("FLOAT", "NUMBER(38,0)", ""), ("VARCHAR", "NUMBER(38,0)", ""), ("DATE", "TIMESTAMP_NTZ", ""),
])
def test_narrower_or_other_targets_are_refused(source, target, why):
    reason = g.incompatibility(source, target)
    assert reason is not None and not g.compatible(source, target)
    assert reason.startswith(why) if why else reason == ""     # "": a different kind of value altogether


def test_a_narrowing_fails_the_table_with_the_column_and_the_fix():
    cols = [g.Column("id", "ID", "NUMBER(10,0)"), g.Column("amount", "AMOUNT", "NUMBER(10,4)"),
            g.Column("at", "AT", "TIMESTAMP_NTZ(6)"), g.Column("note", "NOTE", "VARCHAR")]
    target = {"ID": "NUMBER(38,0)", "AMOUNT": "NUMBER(5,2)", "AT": "TIMESTAMP_TZ"}
    with pytest.raises(g.EtlError) as info:
        g.schema_changes(cols, target, "sales.orders")
    text = str(info.value)
    assert text.startswith("sales.orders: the source schema changed incompatibly with the target: ")
    assert ("column AMOUNT is NUMBER(5,2) in Snowflake but the source now gives NUMBER(10,4) "
            "(it keeps 2 decimal place(s), the source has 4)") in text
    assert "column AT is TIMESTAMP_TZ in Snowflake but the source now gives TIMESTAMP_NTZ(6)" in text
    assert "column ID" not in text
    assert """Run it once with --OBJ '{"sales.orders": "FULL"}' to redefine the target""" in text


def test_a_wider_target_only_adds_new_columns():
    cols = [g.Column("id", "ID", "NUMBER(10,0)"), g.Column("amount", "AMOUNT", "NUMBER(10,4)"),
            g.Column("note", "NOTE", "VARCHAR")]
    added = g.schema_changes(cols, {"ID": "NUMBER(38,0)", "AMOUNT": "NUMBER(20,6)"}, "sales.orders")
    assert [c.name for c in added] == ["NOTE"]
