"""Load history rows and freshness (LagSeconds): the SQL builders and the pure values behind them."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

import glue_etl_job as g
from tests.unit.test_core import bind

HISTORY = g.fqn("DB", "ETL_META", g.HISTORY_TABLE)
NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def parse(sql: str) -> exp.Expression:
    parsed = sqlglot.parse(bind(sql), read="snowflake", error_level=ErrorLevel.RAISE)
    assert len(parsed) == 1 and not isinstance(parsed[0], exp.Command), sql
    return parsed[0]


def result(**kw) -> g.TableResult:
    base = {"key": "s.t", "mode": "INCREMENTAL", "target": "T.X", "started_at": NOW - dt.timedelta(seconds=90)}
    return g.TableResult(**{**base, **kw})


def test_history_builders_parse_as_snowflake():
    create = parse(g.create_history_table_sql(HISTORY))
    assert isinstance(create, exp.Create)
    cols = [c.name for c in create.find_all(exp.ColumnDef)]
    assert cols == [c for c, _, _ in g._HISTORY_COLUMNS] + ["FINISHED_AT"]
    merge = parse(g.write_history_sql(HISTORY))
    assert isinstance(merge, exp.Merge)
    # One statement, keyed by run and table; a match changes only the final status, never what loaded.
    on = merge.args["on"].sql("snowflake")
    assert on == 't."RUN_ID" = s."RUN_ID" AND t."TABLE_KEY" = s."TABLE_KEY"'
    matched, inserted = merge.args["whens"].expressions
    assert {e.this.name for e in matched.args["then"].expressions} == {"STATUS", "SECONDS", "ERROR", "FINISHED_AT"}
    assert [c.name for c in inserted.args["then"].this.expressions] == cols


def test_every_bind_parameter_of_the_history_write_is_given():
    import re
    wanted = set(re.findall(r"%\((\w+)\)s", g.write_history_sql(HISTORY)))
    assert wanted == set(g.history_params(result(), "run", "job", True, NOW))


def test_a_row_in_the_load_transaction_says_what_the_load_does():
    r = result(delta_rows=7, inserted=5, updated=2, watermark_column="UPDATED_AT",
               watermark_before="2026-05-01 00:00:00.000000", watermark_after="2026-05-31 12:00:00.000000")
    r.ddl += ['ALTER TABLE "T"."X" ADD COLUMN "N" NUMBER(38,0)', 'ALTER TABLE "T"."X" ADD COLUMN "M" VARCHAR']
    p = g.history_params(r, "run-1", "job", True, NOW)
    assert (p["status"], p["loaded"], p["rows_read"], p["inserted"], p["updated"]) == ("OK", True, 7, 5, 2)
    assert (p["watermark_before"], p["watermark_after"]) == ("2026-05-01 00:00:00.000000", "2026-05-31 12:00:00.000000")
    assert p["ddl"] == 'ALTER TABLE "T"."X" ADD COLUMN "N" NUMBER(38,0);\nALTER TABLE "T"."X" ADD COLUMN "M" VARCHAR'
    assert (p["seconds"], p["started_at"], p["error"]) == (90.0, "2026-06-01 11:58:30.000000", None)


def test_a_row_after_a_failed_load_claims_no_change():
    """The load's MERGE ran (the result has its counts) but the transaction rolled back."""
    r = result(status="FAILED", error="s.t: boom", delta_rows=7, inserted=5, updated=2, watermark_column="U",
               watermark_before="2026-05-01 00:00:00.000000", watermark_after="2026-05-31 12:00:00.000000")
    p = g.history_params(r, "run-1", "job", False, NOW)
    assert (p["status"], p["loaded"], p["inserted"], p["updated"], p["deleted"]) == ("FAILED", False, 0, 0, 0)
    assert p["watermark_after"] == p["watermark_before"] == "2026-05-01 00:00:00.000000"
    assert p["error"] == "s.t: boom" and p["rows_read"] == 7


def test_a_drift_row_names_what_verify_found():
    drift = g.Drift(missing=[3], rows=10)
    r = result(status="DRIFT", verified=drift, committed=True, watermark_after="2026-05-31 12:00:00.000000")
    p = g.history_params(r, "run-1", "job", False, NOW)
    assert p["status"] == "DRIFT" and p["error"] == g.verify_summary(drift)
    assert p["watermark_after"] == "2026-05-31 12:00:00.000000"        # committed by the load


@pytest.mark.parametrize(("watermark", "lag"), [
    ("2026-06-01 11:00:00.000000", 3600.0),
    ("2026-06-01 11:59:59.999600", 0.0),           # rounded to milliseconds
    ("2026-06-01 12:00:10.000000", -10.0),         # ahead of the clock: shown, not hidden
    ("0001-01-01 00:00:00.000000", (NOW - dt.datetime(1, 1, 1, tzinfo=dt.UTC)).total_seconds()),
    ("12345", None), ("-5", None), (None, None),   # an integer watermark has no age
])
def test_lag_is_now_minus_the_watermark_read_as_utc(watermark, lag):
    assert g.lag_seconds(watermark, NOW) == lag
    assert g.lag_seconds(watermark, NOW.replace(tzinfo=None)) == lag      # a naive clock reading is UTC


def test_lag_is_of_the_committed_watermark():
    before, after = "2026-06-01 10:00:00.000000", "2026-06-01 11:30:00.000000"
    loaded = result(status="OK", committed=True, watermark_before=before, watermark_after=after)
    assert g.metric_values(loaded, NOW)["LagSeconds"] == 1800.0
    # Failed after computing the new watermark but before COMMIT: the state still has the old one.
    failed = result(status="FAILED", committed=False, watermark_before=before, watermark_after=after)
    assert g.metric_values(failed, NOW)["LagSeconds"] == 7200.0
    assert g.metric_values(result(status="SKIPPED"), NOW)["LagSeconds"] is None
    assert g.Metrics.UNITS["LagSeconds"] == "Seconds"


class FakeWarehouse:
    def __init__(self, fail: str | None = None, state: list | None = None):
        self.sent: list[tuple[str, dict]] = []
        self.fail, self.state = fail, state or []

    def execute(self, sql, params=None):
        self.sent.append((sql, params))
        if self.fail and self.fail in sql:
            raise g.EtlError("Snowflake: connection reset")
        return self

    def rows(self, sql, params=None):
        self.execute(sql, params)
        return self.state


class FakeConnections:
    def __init__(self, wh):
        self.wh, self.discarded = wh, 0

    def get(self):
        return self.wh

    def discard(self):
        self.discarded += 1


def history(wh) -> tuple[g.LoadHistory, FakeConnections]:
    conns = FakeConnections(wh)
    return g.LoadHistory(conns, HISTORY, "STATE", "job", "run-1"), conns


def test_finish_writes_nothing_more_for_a_loaded_ok_table():
    wh = FakeWarehouse()
    history(wh)[0].finish(result(status="OK", committed=True))
    assert wh.sent == []


def test_finish_of_a_failed_table_reads_the_committed_watermark_then_writes_one_row():
    wh = FakeWarehouse(state=[("UPDATED_AT", "2026-06-01 10:00:00.000000", "run-0")])
    r = result(status="FAILED", error="s.t: cannot connect to source with password hunter22")
    g.REDACTOR.add("hunter22")
    history(wh)[0].finish(r)
    (read, _), (write, params) = wh.sent
    assert read == g.read_state_sql("STATE") and write == g.write_history_sql(HISTORY)
    assert (params["column"], params["watermark_before"], params["watermark_after"]) == \
        ("UPDATED_AT", "2026-06-01 10:00:00.000000", "2026-06-01 10:00:00.000000")
    assert params["error"] == "s.t: cannot connect to source with password ***"
    assert g.metric_values(r, NOW)["LagSeconds"] == 7200.0       # published for the failed table too


def test_a_failed_history_write_is_a_warning_not_the_tables_error(caplog):
    wh = FakeWarehouse(fail="MERGE INTO")
    r = result(status="FAILED", error="s.t: the real error", watermark_before="5")
    hist, conns = history(wh)
    hist.finish(r)
    assert r.status == "FAILED" and r.error == "s.t: the real error"
    assert conns.discarded == 1
    assert "step=history error=EtlError: Snowflake: connection reset" in caplog.text


def test_a_repair_writes_its_own_row_with_what_it_wrote_and_the_watermark_it_leaves():
    """REPAIR's row (inside its transaction, ``Repair.repair``): RUN_ID '<run>/repair', LOADED TRUE, its own
    counts; the run's row (a check without a load here, or the load's) keeps its own, and the watermark
    is the committed one on both sides of the repair."""
    wh = FakeWarehouse()
    r = result(mode="VERIFY", status="DRIFT", watermark_column="UPDATED_AT", watermark_before="2026-06-01 10:00:00",
               error="s.t: earlier", delta_rows=None, ddl=["CREATE TABLE x"])
    history(wh)[0].write_repair(wh, r, read=3, inserted=1, updated=2, deleted=4)
    ((sql, params),) = wh.sent
    assert sql == g.write_history_sql(HISTORY)
    assert {k: params[k] for k in ("run_id", "mode", "status", "loaded", "rows_read", "inserted", "updated",
                                   "deleted", "watermark_before", "watermark_after", "ddl", "error")} == {
        "run_id": "run-1/repair", "mode": "REPAIR", "status": "OK", "loaded": True, "rows_read": 3, "inserted": 1,
        "updated": 2, "deleted": 4, "watermark_before": "2026-06-01 10:00:00",
        "watermark_after": "2026-06-01 10:00:00", "ddl": None, "error": None}
    assert (r.mode, r.status, r.error, r.ddl) == ("VERIFY", "DRIFT", "s.t: earlier", ["CREATE TABLE x"])  # untouched
    loaded = result(committed=True, watermark_before="1", watermark_after="9")
    history(wh)[0].write_repair(wh, loaded, read=0, inserted=0, updated=0, deleted=1)
    assert (wh.sent[-1][1]["watermark_before"], wh.sent[-1][1]["watermark_after"]) == ("9", "9")
