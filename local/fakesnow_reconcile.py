"""Snowflake functions VERIFY uses that fakesnow 0.11.22 (on DuckDB 1.5.5) cannot run, translated.

- ``TO_NUMBER(<text>, 'XXX...')``: Snowflake's hexadecimal format model (one X per hex digit; Snowflake
  docs, "SQL format models", Numeric formats: "X ... hexadecimal digit") turns hex text into a number.
  fakesnow rejects any TO_NUMBER with a format ("not implemented"). The translation reads it as DuckDB's
  ``CAST('0x' || text AS UBIGINT)``, the same value for the at most 16 digits the job sends.

- ``TO_VARCHAR(<date or timestamp>, '<format>')`` (Snowflake docs, "TO_CHAR , TO_VARCHAR": "for date and
  time values, the format is a date/time format"): sqlglot 30.22 cannot tell the argument's type and
  drops the format ("Argument 'format' is not supported for expression 'ToChar'"), so DuckDB casts the
  value to text instead: '2026-01-01 00:00:01' loses the '.000000' that FF6 asks for. A format made of
  date/time elements (it has YYYY) becomes DuckDB's STRFTIME with the same elements.

- ``TO_VARCHAR(<time>, 'HH24:MI:SS.FF6')`` (the same page, docs.snowflake.com/en/sql-reference/functions/
  to_char: ``date_or_time_expr`` is "an expression of type DATE, TIME, or TIMESTAMP"): the same dropped
  format makes DuckDB write midnight as '00:00:00' without '.000000', and DuckDB's STRFTIME takes no TIME.
  A format of time elements only (HH24, no YYYY) becomes STRFTIME of the time on the day 1970-01-01
  (DuckDB's DATE + TIME is a TIMESTAMP).

- ``OCTET_LENGTH(<text>)`` (Snowflake docs, "OCTET_LENGTH": "Returns the length of a string or binary value
  in bytes"): sqlglot 30.22 keeps the name, and DuckDB's ``octet_length`` takes only BLOB and BIT, so the
  call fails to bind. The row hash frames a text by its byte length; DuckDB's ``STRLEN`` is the byte
  length of a VARCHAR (its UTF-8). The job takes OCTET_LENGTH of text only.

- ``RTRIM(<text>, '<characters>')`` (Snowflake docs, "RTRIM": removes the trailing characters named, each
  one individually): fakesnow 0.11.22's ``trim_cast_varchar`` (Snowflake's TRIM casts its input to
  VARCHAR) rebuilds the call from its input alone, dropping both the characters and the side, so DuckDB
  trims blanks from both ends instead ('12:00:00.000000' stays as it is). The fix casts the input the
  same way and keeps the rest of the call. A timestamp's canonical text drops its fraction's trailing
  zeros with it.

``install()`` wraps fakesnow's statement transform and replaces its TRIM cast; called from
``local/fakesnow_server.py``.
"""

from __future__ import annotations

import re

from fakesnow import transforms
from fakesnow.cursor import FakeSnowflakeCursor
from sqlglot import exp
from sqlglot.dialects.snowflake import Snowflake

_HEX_FORMAT = re.compile(r"^[Xx]{1,16}$")


def hex_to_number(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.ToNumber):
        fmt = node.args.get("format")
        if isinstance(fmt, exp.Literal) and fmt.is_string and _HEX_FORMAT.match(fmt.this):
            text = exp.DPipe(this=exp.Literal.string("0x"), expression=node.this.copy())
            return exp.Cast(this=exp.Paren(this=text), to=exp.DataType.build("UBIGINT", dialect="duckdb"))
    return node


def date_format_to_strftime(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.ToChar):
        fmt = node.args.get("format")
        if isinstance(fmt, exp.Literal) and fmt.is_string and "YYYY" in fmt.this.upper():
            return exp.TimeToStr(this=node.this.copy(), format=Snowflake.format_time(fmt))
        if isinstance(fmt, exp.Literal) and fmt.is_string and "HH24" in fmt.this.upper():
            day = exp.Add(this=exp.cast(exp.Literal.string("1970-01-01"), "DATE"),
                          expression=exp.cast(node.this.copy(), "TIME"))
            return exp.TimeToStr(this=day, format=Snowflake.format_time(fmt))
    return node


def octet_length_to_strlen(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.ByteLength):
        return exp.Anonymous(this="STRLEN", expressions=[node.this.copy()])
    return node


def trim_cast_varchar(node: exp.Expression) -> exp.Expression:
    """TRIM's input cast to VARCHAR, as Snowflake casts it; the characters and the side kept."""
    if not isinstance(node, exp.Trim):
        return node
    operand = node.this
    if isinstance(operand, exp.Cast) and operand.to.this in (exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT):
        return node
    out = node.copy()
    out.set("this", exp.Cast(this=operand.copy(), to=exp.DataType.build("VARCHAR")))
    return out


def install() -> None:
    original = FakeSnowflakeCursor._transform

    def _transform(self, expression, params):
        fixed = expression.transform(hex_to_number).transform(date_format_to_strftime).transform(
            octet_length_to_strlen)
        return original(self, fixed, params)

    FakeSnowflakeCursor._transform = _transform
    transforms.trim_cast_varchar = trim_cast_varchar
