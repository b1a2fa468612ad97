"""The local Snowflake reads a string constant as its characters, as Snowflake does (local/fakesnow_server.py item
12): fakesnow 0.11.22 substituted session variables anywhere in a statement's text, so a literal holding '$k$'
(a text key REPAIR or ``deletes`` writes into a DELETE) failed with "Session variable '$K' does not exist". A
variable named outside a string is still read, and one never set is still refused. Through the real connector."""

from __future__ import annotations

import pytest
from snowflake.connector.errors import ProgrammingError

from local import stack


def test_a_string_constant_is_its_characters_and_variables_are_read_outside_them(stack_env):
    conn = stack.snowflake_connect()
    try:
        cur = conn.cursor()
        cur.execute("SET ETL_PROBE = 5")
        cur.execute("SELECT $etl_probe, '$etl_probe', 'it''s $k$', '3:$k$|1', 'a\\\\$x' AS b")
        assert cur.fetchone() == (5, "$etl_probe", "it's $k$", "3:$k$|1", "a\\$x")
        cur.execute("SELECT COUNT(*) FROM (SELECT 'x' AS k) WHERE k IN ('$k$', 'x')")
        assert cur.fetchone() == (1,)
        with pytest.raises(ProgrammingError, match=r"Session variable '\$NEVER_SET' does not exist"):
            cur.execute("SELECT $never_set, '$k$'")
    finally:
        conn.close()
