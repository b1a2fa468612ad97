"""The lease's worst interleavings, set up row by row against the emulator (docs/GUARANTEES.md).

Snowflake promises less than a lock manager would: no key is enforced, INSERTs run in parallel,
and an UPDATE that waited for a lock is not promised to re-read the winner's commit. Instead of
hoping two processes happen to race into these cases, each test writes the lease rows such an
interleaving leaves behind, then runs the job's own lease statements (``Leases``, ``lease_sqls``,
``plan_read_sql``) on real connections to fakesnow and checks who may load.
"""

from __future__ import annotations

import threading
import time

import pytest

import glue_etl_job as g
from local import stack
from tests.e2e import helpers as h

SCHEMA = "LEASE_PROTO"
LEASE = g.fqn("ETL_DB", SCHEMA, g.LEASE_TABLE)
STATE = g.fqn("ETL_DB", SCHEMA, g.STATE_TABLE)
TARGET = "T.ORDERS"


def warehouse() -> g.Warehouse:
    return g.Warehouse(stack.snowflake_connect())


def leases(holder: str, wait: int = 0) -> g.Leases:
    return g.Leases(warehouse, LEASE, holder, seconds=60, wait=wait)


def rows() -> list[tuple]:
    return h.sf_query(f'SELECT "HOLDER", "EXPIRES_AT" > CURRENT_TIMESTAMP()::TIMESTAMP_NTZ FROM {LEASE} '
                      f"WHERE \"TARGET_TABLE\" = '{TARGET}' ORDER BY \"HOLDER\" NULLS FIRST")


def put_row(holder: str | None, live: bool = True) -> None:
    """A lease row as a claim (or a parallel seed) may have left it."""
    if holder is None:
        h.sf_execute(f"INSERT INTO {LEASE} (\"TARGET_TABLE\") SELECT '{TARGET}'")
        return
    seconds = 60 if live else -60
    h.sf_execute(f'INSERT INTO {LEASE} ("TARGET_TABLE", "HOLDER", "ACQUIRED_AT", "EXPIRES_AT") '
                 f"SELECT '{TARGET}', '{holder}', CURRENT_TIMESTAMP()::TIMESTAMP_NTZ, "
                 f"DATEADD(SECOND, {seconds}, CURRENT_TIMESTAMP()::TIMESTAMP_NTZ)")


def plan(lease: g.Leases) -> g.PlanRead:
    wh = warehouse()
    try:
        params = {**lease.params(TARGET), "schema": "T", "table": "ORDERS"}
        return g.PlanRead.from_rows(wh.rows(g.plan_read_sql("ETL_DB", STATE, LEASE, None), params), False)
    finally:
        wh.close()


def claimed(lease: g.Leases) -> bool:
    """Did ``acquire`` and the re-read after it (``confirm``) both give this run the lease?"""
    wh = warehouse()
    try:
        if lease.acquire(wh, TARGET) is not None:
            return False
    finally:
        wh.close()
    try:
        lease.confirm(TARGET, plan(lease))
    except g.LeaseTaken:
        return False
    return True


def holds(lease: g.Leases, release: bool = False) -> bool:
    wh = warehouse()
    try:
        return lease.hold(wh, TARGET, release)
    finally:
        wh.close()


@pytest.fixture()
def fresh(stack_env):
    h.sf_execute(f"CREATE SCHEMA IF NOT EXISTS ETL_DB.{SCHEMA}", f"DROP TABLE IF EXISTS {LEASE}",
                 g.create_lease_table_sql(LEASE), g.create_state_table_sql(STATE))


def test_two_rows_for_one_target_a_second_holder_cannot_claim_while_the_first_is_live(fresh):
    # Two first-time seeds ran in parallel: two free rows for one target.
    put_row(None)
    put_row(None)
    a, b = leases("run-a"), leases("run-b")
    assert claimed(a)
    assert rows() == [("run-a", True), ("run-a", True)]           # the claim took every free row
    assert not claimed(b)
    assert holds(a) and not holds(b)


def test_a_free_second_row_does_not_let_a_second_holder_in(fresh):
    # run-a holds the target's row; a parallel seed left a second, free row.
    put_row("run-a")
    put_row(None)
    b = leases("run-b")
    wh = warehouse()
    try:
        assert wh.execute(g.lease_sqls(LEASE)["claim"], b.params(TARGET)).rowcount == 0
        assert b.acquire(wh, TARGET).startswith("run run-a (since ")
    finally:
        wh.close()
    assert not holds(b) and holds(leases("run-a"))


def test_a_claim_that_did_not_see_the_winners_commit_is_caught_by_the_re_read_and_the_load_check(fresh):
    # run-b's claim waited for run-a's and then wrote as if run-a's commit were not there: both
    # rows now say "live" for different holders. Neither run may load.
    put_row("run-a")
    put_row("run-b")
    a, b = leases("run-a"), leases("run-b")
    with pytest.raises(g.LeaseTaken, match="run run-a claimed T.ORDERS at the same time"):
        b.confirm(TARGET, plan(b))
    with pytest.raises(g.LeaseTaken, match="run run-b claimed"):
        a.confirm(TARGET, plan(a))
    assert not holds(a, release=True) and not holds(b, release=True)
    assert rows() == [("run-a", True), ("run-b", True)]            # the failed checks changed nothing


def test_the_load_check_after_another_holders_claim_fails_and_a_late_heartbeat_does_not_revive(fresh):
    put_row("run-a", live=False)                # run-a stalled past its lease ...
    b = leases("run-b")
    assert claimed(b)                           # ... and run-b took the target over
    a = leases("run-a")
    assert not holds(a) and not holds(a, release=True)
    wh = warehouse()
    try:
        assert wh.execute(g.lease_sqls(LEASE)["renew"], a.params()).rowcount == 0
    finally:
        wh.close()
    assert rows() == [("run-b", True)]
    assert holds(b)


def test_an_expired_lease_is_not_renewed_by_its_old_holder(fresh):
    put_row("run-a", live=False)
    a = leases("run-a")
    wh = warehouse()
    try:
        assert wh.execute(g.lease_sqls(LEASE)["renew"], a.params()).rowcount == 0
    finally:
        wh.close()
    assert rows() == [("run-a", False)]
    assert not holds(a)


def test_the_load_check_locks_the_lease_until_commit_and_commit_releases_it(fresh):
    a, b = leases("run-a"), leases("run-b", wait=30)
    assert claimed(a)
    loader = warehouse()
    got: dict = {}
    try:
        with loader.transaction():
            assert a.hold(loader, TARGET, release=True)
            started = time.monotonic()

            def claim_b():
                got["claimed"] = claimed(b)
                got["after"] = time.monotonic() - started

            competitor = threading.Thread(target=claim_b)
            competitor.start()
            time.sleep(2)
            assert "claimed" not in got          # waiting on the load's lock
        competitor.join(timeout=60)
    finally:
        loader.close()
    assert got["claimed"] is True and got["after"] >= 2
    assert rows() == [("run-b", True)]


def test_the_heartbeat_waits_for_the_load_transaction_instead_of_failing(fresh):
    # The heartbeat renews on a connection of its own (autocommit) while a load transaction of the
    # same run holds the lease rows' lock: Snowflake makes the renewal wait for the COMMIT.
    a = leases("run-a")
    assert claimed(a)
    loader, beat = warehouse(), warehouse()
    got: dict = {}

    def renew():
        started = time.monotonic()
        try:
            got["rows"] = beat.execute(g.lease_sqls(LEASE)["renew"], a.params()).rowcount
        except g.EtlError as exc:
            got["error"] = str(exc)
        got["after"] = time.monotonic() - started

    try:
        with loader.transaction():
            assert a.hold(loader, TARGET, release=False)
            heartbeat = threading.Thread(target=renew)
            heartbeat.start()
            time.sleep(2)
            assert not got, got                  # neither renewed nor failed: waiting for the COMMIT
        heartbeat.join(timeout=60)
    finally:
        loader.close()
        beat.close()
    assert got.get("rows") == 1 and got["after"] >= 2, got
    assert rows() == [("run-a", True)]


def test_a_rolled_back_load_keeps_the_lease_with_its_holder(fresh):
    a = leases("run-a")
    assert claimed(a)
    wh = warehouse()
    try:
        with pytest.raises(RuntimeError), wh.transaction():
            assert a.hold(wh, TARGET, release=True)
            raise RuntimeError("the load failed")
    finally:
        wh.close()
    assert rows() == [("run-a", True)]


def test_an_error_that_is_no_lock_conflict_fails_the_claim_with_its_message(fresh):
    missing = g.Leases(warehouse, g.fqn("ETL_DB", SCHEMA, "NO_SUCH_LEASE_TABLE"), "run-a", 60)
    wh = warehouse()
    try:
        with pytest.raises(g.EtlError, match=r"cannot claim the lease of T.ORDERS in .*NO_SUCH_LEASE_TABLE.*: "
                                             r"Snowflake: 002003"):
            missing.acquire(wh, TARGET)
    finally:
        wh.close()
