"""--LOAD false (README "VERIFY without a load"): VERIFY and REPAIR of the targets as they are. Nothing is
staged or loaded and the state keeps its watermark: a row the source added or changed after the last load
is neither loaded nor reported as drift on a timestamp table; a FULL table is not reloaded (its whole source
is compared). Drift put into the targets is reported key by key, and REPAIR mends exactly it. A target that
was never loaded fails with the fix named; the history records each check as its own mode."""

from __future__ import annotations

import pytest

import glue_etl_job as g
from local import stack
from tests.e2e import helpers as h
from tests.e2e.test_verify import reported

JOB = "e2e-checkonly"
HISTORY = g.fqn("ETL_DB", "ETL_META", g.HISTORY_TABLE)
STATE = g.fqn("ETL_DB", "ETL_META", g.STATE_TABLE)
COLS = ["ID", "V", "UPDATED_AT"]


def registry(*names: str) -> dict:
    every = {
        "inc": {"ssmKey": "AFFILIATE", "target_table": "CHECKONLY.INC", "primary_key": "ID",
                "timestamp_column": "UPDATED_AT", "operations": {"type": "INCREMENTAL"}},
        "full": {"ssmKey": "AFFILIATE", "target_table": "CHECKONLY.FULL_T", "primary_key": "ID",
                 "operations": {"type": "FULL"}},
        "never": {"ssmKey": "AFFILIATE", "target_table": "CHECKONLY.NEVER", "primary_key": "ID",
                  "operations": {"type": "UPSERT"}},
        "gone": {"ssmKey": "AFFILIATE", "target_table": "CHECKONLY.GONE", "primary_key": "ID",
                 "operations": {"type": "FULL"}},       # no such source table
    }
    return {f"checkonly.{n}": every[n] for n in names}


def run(tmp, name: str, *names: str, extra: tuple = ()):
    return h.run_job(tmp, registry(*names), *extra, job_name=f"{JOB}-{name}")


def pg(*sqls: str) -> None:
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        for sql in sqls:
            cur.execute(sql)


def source(table: str) -> list[tuple]:
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id, v, updated_at FROM checkonly.{table} ORDER BY id")
        return cur.fetchall()


def target(table: str) -> list[tuple]:
    return h.sf_rows(f"ETL_DB.CHECKONLY.{table}", COLS, '"ID"')


def watermark() -> tuple:
    return tuple(h.sf_query(f'SELECT "WATERMARK", "RUN_ID" FROM {STATE} WHERE "TARGET_TABLE" = \'CHECKONLY.INC\''))


def history(job: str) -> list[tuple]:
    """The runs' own rows (a REPAIR's are apart: ``repairs``)."""
    return h.sf_query(f'SELECT "TABLE_KEY", "MODE", "STATUS", "LOADED", "ROWS_INSERTED" FROM {HISTORY} '
                      f"WHERE \"JOB_NAME\" = '{job}' AND \"RUN_ID\" NOT LIKE '%/repair' ORDER BY \"TABLE_KEY\"")


def repairs(job: str) -> list[tuple]:
    return h.sf_query(f'SELECT "TABLE_KEY", "MODE", "STATUS", "LOADED", "ROWS_INSERTED" + "ROWS_UPDATED", '
                      f'"ROWS_DELETED" FROM {HISTORY} WHERE "JOB_NAME" = \'{job}\' AND "RUN_ID" LIKE \'%/repair\' '
                      f'ORDER BY "TABLE_KEY"')


@pytest.fixture(scope="module")
def loaded(stack_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("checkonly")
    h.reset_target_schema("CHECKONLY")
    h.sf_execute(g.create_history_table_sql(HISTORY),                    # an earlier run on this stack
                 f"DELETE FROM {HISTORY} WHERE \"JOB_NAME\" LIKE '{JOB}-%'")
    h.recreate_pg_schema("checkonly", ["inc", "full", "never"])
    for t in ("inc", "full", "never"):
        pg(f"INSERT INTO checkonly.{t} SELECT i, 'v' || i, TIMESTAMP '2026-01-01' + i * INTERVAL '1 second' "
           f"FROM generate_series(1, 20) i")
    first = run(tmp, "load", "inc", "full")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    return tmp


def test_verify_and_repair_without_a_load_check_the_targets_as_they_are(loaded):
    tmp = loaded
    # The source moves on after the load: a new row and an update, both after the committed watermark.
    pg("INSERT INTO checkonly.inc VALUES (21, 'new', TIMESTAMP '2026-06-01')",
       "UPDATE checkonly.inc SET v = 'later', updated_at = TIMESTAMP '2026-06-02' WHERE id = 5",
       "INSERT INTO checkonly.full VALUES (21, 'new', TIMESTAMP '2026-06-01')")
    # Drift in the targets.
    h.sf_execute("DELETE FROM ETL_DB.CHECKONLY.INC WHERE ID = 3",
                 "UPDATE ETL_DB.CHECKONLY.INC SET V = 'drift' WHERE ID = 7",
                 "INSERT INTO ETL_DB.CHECKONLY.FULL_T (ID, V) VALUES (50, 'extra')")
    inc_before, full_before, wm_before = target("INC"), target("FULL_T"), watermark()

    check = run(tmp, "verify", "inc", "full", "never", "gone", extra=("--LOAD", "false", "--VERIFY", "true"))
    out = check.stdout
    assert check.returncode == 1, out[-4000:] + check.stderr[-2000:]
    got = {k: (v["mode"], v["status"]) for k, v in h.summary(check).items()}
    assert got == {"checkonly.inc": ("VERIFY", "DRIFT"), "checkonly.full": ("VERIFY", "DRIFT"),
                   "checkonly.never": ("VERIFY", "FAILED"), "checkonly.gone": ("VERIFY", "FAILED")}, out[-4000:]
    # INC: compared at its committed watermark: 21 and the update of 5 came later, so they are not drift.
    assert reported(check, "checkonly.inc") == {"missing_in_target": {3}, "extra_in_target": set(),
                                                "different": {7}}
    assert ("checkonly.inc: VERIFY 2 mismatched of 19 rows (missing 1, extra 0, different 1; 1 changed since the "
            "last load, not compared)") in out, out[-3000:]
    # FULL: no watermark, its whole source: the row the source added is missing, not loaded.
    assert reported(check, "checkonly.full") == {"missing_in_target": {21}, "extra_in_target": {50},
                                                 "different": set()}
    assert ("checkonly.never: --LOAD false checks CHECKONLY.NEVER, which does not exist yet: load it first "
            "(a run without --LOAD false)") in out
    assert ("checkonly.gone: the source has no table gone in checkonly (information_schema lists no column of it "
            "on jdbc:postgresql://") in out, out[-3000:]
    # a check reads no load's facts: no JDBC schema, no scan of the read window (the whole of a FULL table)
    assert "step=extract" not in out and "predicate=" not in out
    assert (target("INC"), target("FULL_T"), watermark()) == (inc_before, full_before, wm_before)
    assert "step=copy" not in out and "step=load" not in out                  # nothing staged or loaded
    assert history(f"{JOB}-verify") == [("checkonly.full", "VERIFY", "DRIFT", False, 0),
                                        ("checkonly.gone", "VERIFY", "FAILED", False, 0),
                                        ("checkonly.inc", "VERIFY", "DRIFT", False, 0),
                                        ("checkonly.never", "VERIFY", "FAILED", False, 0)]

    mend = run(tmp, "repair", "inc", "full", extra=("--LOAD", "false", "--REPAIR", "true"))
    out = mend.stdout
    assert mend.returncode == 0, out[-4000:] + mend.stderr[-2000:]
    assert {k: (v["mode"], v["status"]) for k, v in h.summary(mend).items()} == {
        "checkonly.inc": ("REPAIR", "OK"), "checkonly.full": ("REPAIR", "OK")}
    assert "checkonly.inc: REPAIR 2 key(s): 2 row(s) written from the source, 0 deleted" in out, out[-3000:]
    assert "checkonly.full: REPAIR 2 key(s): 1 row(s) written from the source, 1 deleted" in out
    # INC now equals its source as of the last load: 3 and 7 mended, 5 as loaded, 21 not there.
    expected = [r for r in source("inc") if r[0] not in (5, 21)] + [next(r for r in inc_before if r[0] == 5)]
    h.assert_same_rows(sorted(expected), target("INC"), "inc after REPAIR without a load")
    h.assert_same_rows(source("full"), target("FULL_T"), "full after REPAIR without a load")
    assert watermark() == wm_before
    assert history(f"{JOB}-repair") == [("checkonly.full", "REPAIR", "OK", False, 0),
                                        ("checkonly.inc", "REPAIR", "OK", False, 0)]
    # and each repair its own row, written by its transaction: what it wrote, the watermark as it stands
    assert repairs(f"{JOB}-repair") == [("checkonly.full", "REPAIR", "OK", True, 1, 1),
                                        ("checkonly.inc", "REPAIR", "OK", True, 2, 0)]
