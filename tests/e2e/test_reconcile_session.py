"""VERIFY's PostgreSQL session settings (RECONCILE_SESSION) run on the real server and take effect (work_mem raised
to 16MB, never lowered); the jit setting is skipped on a server older than 11, where ``SET jit`` is an error."""

from __future__ import annotations

import pytest

import glue_etl_job as g
from local import stack


def show(cur, name: str) -> str:
    cur.execute(f"SHOW {name}")
    return cur.fetchone()[0]


def test_the_settings_take_effect(stack_env):
    conn = stack.pg_connect("affiliate")
    conn.autocommit = True                       # as the job's JDBC connection runs them
    try:
        with conn.cursor() as cur:
            cur.execute("SET DateStyle = 'SQL, DMY'")      # a role's or database's other style
            assert show(cur, "jit") == "on" and show(cur, "enable_sort") == "on"
            for statement in g.RECONCILE_SESSION["postgres"]:
                cur.execute(statement)
            assert (show(cur, "jit"), show(cur, "enable_sort"), show(cur, "DateStyle")) == ("off", "off", "ISO, DMY")
            assert show(cur, "work_mem") == "16MB"                 # raised from the default 4MB
            assert (show(cur, "parallel_setup_cost"), show(cur, "parallel_tuple_cost")) == ("0", "0")
            cur.execute("SET work_mem = '64MB'")
            for statement in g.RECONCILE_SESSION["postgres"]:
                cur.execute(statement)
            assert show(cur, "work_mem") == "64MB"                 # a larger one is kept
            cur.execute("SELECT CAST(TIMESTAMP '2026-01-02 03:04:05.5' AS TEXT), CAST(DATE '2026-01-02' AS TEXT)")
            assert cur.fetchone() == ("2026-01-02 03:04:05.5", "2026-01-02")
    finally:
        conn.close()


@pytest.mark.parametrize("version, jit", [("100023", "on"), ("110000", "off")])
def test_jit_is_left_alone_below_postgresql_11(stack_env, version, jit):
    """The guard, with the server's version number replaced by a 10.23 or an 11.0 one."""
    statement = g.PG_JIT_OFF.replace("current_setting('server_version_num')", f"'{version}'")
    assert statement != g.PG_JIT_OFF
    conn = stack.pg_connect("affiliate")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            assert show(cur, "jit") == jit
    finally:
        conn.close()
