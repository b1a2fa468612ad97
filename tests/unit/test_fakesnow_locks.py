"""The emulator's table locks (local/fakesnow_locks.py, local/fakesnow_server.py item 10), without a server.

What Snowflake locks ("Transactions", Resource locking): the table an UPDATE, DELETE or MERGE writes;
INSERT, COPY and queries take no lock. A session's own lock never blocks it; others wait in turn, up
to their LOCK_TIMEOUT. The e2e side (real connector, real server): tests/e2e/test_lock_conflict.py.
"""

from __future__ import annotations

import threading
import time

import pytest
from fakesnow.dialect import parse_one
from snowflake.connector.errors import ProgrammingError

from local import fakesnow_locks as fl


@pytest.mark.parametrize("sql, tables", [
    ('UPDATE "ETL_DB"."ETL_META"."ETL_LOAD_LEASE" SET "HOLDER" = NULL', [("ETL_DB", "ETL_META", "ETL_LOAD_LEASE")]),
    ("DELETE FROM raw.orders WHERE id = 1", [("DB", "RAW", "ORDERS")]),
    ('MERGE INTO etl_db.etl_meta."History" t USING (SELECT 1 AS k) s ON t.k = s.k '
     "WHEN MATCHED THEN UPDATE SET k = s.k", [("ETL_DB", "ETL_META", "History")]),
    ("TRUNCATE TABLE t", [("DB", "SCH", "T")]),
    ("INSERT INTO raw.orders VALUES (1)", []),
    ("COPY INTO raw.orders FROM 's3://b/k' FILE_FORMAT = (TYPE = CSV)", []),
    ("SELECT * FROM raw.orders WHERE note = 'UPDATE'", []),
])
def test_the_tables_a_statement_locks(sql, tables):
    assert fl.locked_tables(parse_one(sql), "DB", "SCH") == tables


def test_lock_timeout_comes_from_the_login_parameters():
    assert fl.lock_timeout_of({"lock_timeout": 3}) == 3
    assert fl.lock_timeout_of({}) == fl.DEFAULT_LOCK_TIMEOUT == 43200


class Conn:
    """What the locks read of a fakesnow connection."""

    _autocommit, _in_transaction = True, False

    def __init__(self, lock_timeout: float = 30):
        fl.session_of(self).lock_timeout = lock_timeout


def test_a_holder_never_waits_for_itself_and_others_wait_in_turn():
    locks, table = fl.TableLocks(), ("DB", "S", "T")
    a, b, c = Conn(), Conn(), Conn()
    locks.acquire(a, table)
    locks.acquire(a, table)                        # again: no wait
    order = []
    waiters = [threading.Thread(target=lambda x=x: (locks.acquire(x, table), order.append(x),
                                                   locks.release_all(x))) for x in (b, c)]
    waiters[0].start()
    time.sleep(0.3)
    waiters[1].start()
    time.sleep(0.3)
    assert order == [] and locks.holders() == {table: a}
    locks.release_all(a)
    for w in waiters:
        w.join(10)
    assert order == [b, c] and locks.holders() == {}


def test_a_wait_ends_with_000625_after_lock_timeout_and_zero_means_no_wait():
    locks, table = fl.TableLocks(), ("DB", "S", "T")
    holder = Conn()
    locks.acquire(holder, table)
    for timeout in (0.5, 0):
        started = time.monotonic()
        with pytest.raises(ProgrammingError) as info:
            locks.acquire(Conn(lock_timeout=timeout), table)
        assert info.value.errno == 625 and info.value.sqlstate == "57014"
        assert "has locked table 'T' in transaction" in info.value.msg
        assert timeout <= time.monotonic() - started < timeout + 2
    assert locks.holders() == {table: holder}
