"""Snowflake connection and session settings, and what a Warehouse does when a statement or ROLLBACK fails.

Facts relied on (docs/SNOWFLAKE.md has the sources): snowflake-connector-python 4.8.1 arms a
per-statement cancel timer of ``timeout or connection.network_timeout`` (cursor._execute_helper),
so the connect arguments must carry no network_timeout by default.
"""

from __future__ import annotations

import logging

import pytest
import sqlglot
from snowflake.connector.errors import ProgrammingError
from sqlglot.errors import ErrorLevel

import glue_etl_job as g

SECRET = {"account": "acme-prod", "user": "etl", "password": "pw", "database": "etl_db", "warehouse": "wh"}


def test_no_per_statement_client_timeout_by_default():
    args = g.snowflake_settings(SECRET, "/sf").connect_args
    assert "network_timeout" not in args          # the connector's cancel timer stays unarmed
    assert args["socket_timeout"] == 120          # a stalled HTTP request fails and is retried
    assert args["login_timeout"] == 60
    assert args["client_session_keep_alive"] is True


def test_session_parameters_bound_statements_and_lock_waits_on_the_server():
    params = g.snowflake_settings(SECRET, "/sf").connect_args["session_parameters"]
    assert params == {
        "TIMEZONE": "UTC", "TIMESTAMP_INPUT_FORMAT": "AUTO", "DATE_INPUT_FORMAT": "AUTO",
        "STATEMENT_TIMEOUT_IN_SECONDS": 6 * 3600, "LOCK_TIMEOUT": 600,
        "TRANSACTION_ABORT_ON_ERROR": True, "CLIENT_SESSION_KEEP_ALIVE": True,
    }


def test_limits_are_configurable_and_the_csv_contract_wins():
    secret = {**SECRET, "statement_timeout_seconds": 86400, "lock_timeout_seconds": "120", "socket_timeout": 300,
              "network_timeout": 90000,
              "session_parameters": {"timezone": "Europe/Berlin", "DATE_INPUT_FORMAT": "DD.MM.YYYY",
                                     "TRANSACTION_ABORT_ON_ERROR": False, "QUERY_TAG": "etl"}}
    args = g.snowflake_settings(secret, "/sf").connect_args
    params = args["session_parameters"]
    assert params["STATEMENT_TIMEOUT_IN_SECONDS"] == 86400 and params["LOCK_TIMEOUT"] == 120
    assert (params["TIMEZONE"], params["DATE_INPUT_FORMAT"]) == ("UTC", "AUTO")
    assert params["TRANSACTION_ABORT_ON_ERROR"] is True and params["QUERY_TAG"] == "etl"
    assert args["socket_timeout"] == 300 and args["network_timeout"] == 90000      # opt-in only
    # The secret's own session_parameters may set the two limits when the documented keys are absent.
    own = g.snowflake_settings({**SECRET, "session_parameters": {"LOCK_TIMEOUT": 30}}, "/sf")
    assert own.connect_args["session_parameters"]["LOCK_TIMEOUT"] == 30


@pytest.mark.parametrize("key, value", [("statement_timeout_seconds", 10), ("lock_timeout_seconds", 0),
                                        ("socket_timeout", 30), ("lock_timeout_seconds", "ten"),
                                        ("network_timeout", True)])
def test_bad_limits_are_refused_with_the_key(key, value):
    with pytest.raises(g.EtlError, match=f"SSM parameter /sf: '{key}' must be a whole number of seconds"):
        g.snowflake_settings({**SECRET, key: value}, "/sf")


def test_connect_passes_exactly_the_settings(monkeypatch):
    seen = {}
    monkeypatch.setattr("snowflake.connector.connect", lambda **kw: seen.update(kw) or FakeConnection())
    g.connect_snowflake(g.snowflake_settings(SECRET, "/sf"))
    assert "network_timeout" not in seen and seen["client_session_keep_alive"] is True
    assert seen["session_parameters"]["LOCK_TIMEOUT"] == 600


# ----- a Warehouse over a fake connection ------------------------------------------------


class FakeCursor:
    def __init__(self, conn: FakeConnection):
        self.conn = conn
        self.rowcount = 0

    def execute(self, sql, params=None):
        if self.conn.closed:
            raise AssertionError(f"statement on a closed connection: {sql}")
        self.conn.sent.append(sql)
        failure = self.conn.fail.get(sql.split()[0].upper())
        if failure:
            raise failure
        return self

    def fetchall(self):
        return []


class FakeConnection:
    def __init__(self, fail: dict[str, Exception] | None = None):
        self.fail = fail or {}
        self.sent: list[str] = []
        self.closed = False

    def cursor(self):
        return FakeCursor(self)

    def close(self):
        self.closed = True


def test_a_failed_rollback_closes_the_connection_and_it_is_never_used_again(caplog):
    conn = FakeConnection({"DELETE": ProgrammingError(msg="disk on fire", errno=1),
                           "ROLLBACK": ProgrammingError(msg="connection reset", errno=2)})
    wh = g.Warehouse(conn)
    with caplog.at_level(logging.WARNING), pytest.raises(g.EtlError, match="disk on fire"):
        with wh.transaction():
            wh.execute('DELETE FROM "T"')            # the original error propagates, not the ROLLBACK's
    assert conn.closed and wh.broken == "a failed ROLLBACK"
    assert conn.sent == ["BEGIN", 'DELETE FROM "T"', "ROLLBACK"]
    with pytest.raises(g.EtlError, match="this connection was closed after a failed ROLLBACK; it is not used again"):
        wh.execute('DROP TABLE IF EXISTS "STAGE"')   # the DDL that would have committed the DELETE alone
    assert conn.sent[-1] == "ROLLBACK"               # nothing more reached Snowflake
    assert "connection reset" in caplog.text and "never reused" in caplog.text


def test_a_python_error_inside_the_transaction_also_rolls_back_and_propagates():
    conn = FakeConnection({"ROLLBACK": ProgrammingError(msg="gone", errno=2)})
    wh = g.Warehouse(conn)
    with pytest.raises(KeyError):
        with wh.transaction():
            raise KeyError("lease lost")
    assert conn.closed and wh.broken


def test_a_good_rollback_keeps_the_connection():
    conn = FakeConnection({"INSERT": ProgrammingError(msg="bad value", errno=100038)})
    wh = g.Warehouse(conn)
    with pytest.raises(g.EtlError, match="bad value"):
        with wh.transaction():
            wh.execute('INSERT INTO "T" SELECT 1')
    assert not conn.closed and wh.broken is None
    wh.execute("SELECT 1")
    assert conn.sent[-2:] == ["ROLLBACK", "SELECT 1"]


def test_a_failed_commit_closes_the_connection():
    conn = FakeConnection({"COMMIT": ProgrammingError(msg="network", errno=3)})
    wh = g.Warehouse(conn)
    with pytest.raises(g.EtlError, match="COMMIT failed; the connection was closed"):
        with wh.transaction():
            wh.execute('INSERT INTO "T" SELECT 1')
    assert conn.closed and wh.broken == "a failed COMMIT"


def test_thread_connections_give_a_new_connection_after_discard():
    made = []
    pool = g.ThreadConnections(lambda: made.append(g.Warehouse(FakeConnection())) or made[-1])
    first = pool.get()
    first.broken = "a failed ROLLBACK"
    pool.discard()
    assert pool.get() is not first and len(made) == 2


LOCK_TEXT = ("000625 (57014): Statement '01b43b22-0509-2fce-0003-29019743c0af' has locked table 'ORDERS' in "
             "transaction 1715330074481000000 and this lock has not yet been released.")


def test_a_lock_wait_that_times_out_names_the_table_and_the_fix():
    conn = FakeConnection({"UPDATE": ProgrammingError(msg=LOCK_TEXT, errno=625, sqlstate="57014")})
    with pytest.raises(g.LockConflict) as info:
        g.Warehouse(conn).execute('UPDATE "ETL_DB"."RAW"."ORDERS" SET "V" = 1')
    text = str(info.value)
    assert "could not lock table ORDERS within LOCK_TIMEOUT" in text
    assert "SELECT SYSTEM$ABORT_TRANSACTION(1715330074481000000)" in text and "run again" in text
    assert LOCK_TEXT in text                       # Snowflake's own words are kept


def test_the_emulators_lock_conflict_is_the_same_error():
    err = g.snowflake_error(ProgrammingError(msg="Statement aborted: transaction conflict", errno=625))
    assert isinstance(err, g.LockConflict) and "could not lock a table within LOCK_TIMEOUT" in str(err)


def test_a_statement_timeout_says_which_key_raises_it():
    err = g.snowflake_error(ProgrammingError(
        msg="Statement reached its statement or warehouse timeout of 21,600 second(s) and was canceled.", errno=630))
    assert "raise 'statement_timeout_seconds' in the Snowflake SSM parameter" in str(err)
    assert not isinstance(err, g.LockConflict)


def test_errors_are_masked():
    g.REDACTOR.add("s3cr3t-pw")
    conn = FakeConnection({"SELECT": ProgrammingError(msg="login s3cr3t-pw failed", errno=1)})
    with pytest.raises(g.EtlError) as info:
        g.Warehouse(conn).execute("SELECT 1")
    assert "s3cr3t-pw" not in str(info.value)


def test_target_columns_sql_parses_as_snowflake():
    sql = g.target_columns_sql("ETL_DB").replace("%(schema)s", "'RAW'").replace("%(table)s", "'T'")
    parsed = sqlglot.parse_one(sql, read="snowflake", error_level=ErrorLevel.RAISE)
    assert [c.alias_or_name for c in parsed.expressions] == [
        "COLUMN_NAME", "DATA_TYPE", "CHARACTER_MAXIMUM_LENGTH", "NUMERIC_PRECISION", "NUMERIC_SCALE"]
