"""The Snowflake load protocol's statements: MERGE, temporary staging, state, lease, plan read."""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

import glue_etl_job as g

COLS = [g.Column("id", "ID", "NUMBER(19,0)"), g.Column("line", "LINE", "NUMBER(10,0)"),
        g.Column("note", "NOTE", "VARCHAR"), g.Column("doc", "DOC", "VARIANT"), g.Column("raw", "RAW", "BINARY"),
        g.Column("score", "SCORE", "FLOAT"), g.Column("updated_at", "UPDATED_AT", "TIMESTAMP_NTZ(6)")]
TARGET = g.fqn("ETL_DB", "RAW", "ORDERS")
STAGE = g.fqn("ETL_DB", "ETL_META", g.stage_table_name("RAW", "ORDERS", "0123456789AB"))
STATE = g.fqn("ETL_DB", "ETL_META", g.STATE_TABLE)
LEASE = g.fqn("ETL_DB", "ETL_META", g.LEASE_TABLE)
PK = ["ID", "LINE"]


def parse(sql: str) -> exp.Expr:
    """One statement, parsed by sqlglot's Snowflake dialect (bound parameters as literals)."""
    parsed = sqlglot.parse(re.sub(r"%\((\w+)\)s", "'v'", sql), read="snowflake", error_level=ErrorLevel.RAISE)
    assert len(parsed) == 1
    assert not isinstance(parsed[0], exp.Command), f"sqlglot fell back to an opaque command: {sql}"
    return parsed[0]


def statements() -> list[str]:
    loads = [sql for mode in ("INCREMENTAL", "UPSERT", "APPEND", "TRUNCATE_INSERT")
             for _, sql in g.load_statements(mode, False, TARGET, STAGE, COLS, PK, "UPDATED_AT")]
    return [g.merge_sql(TARGET, STAGE, COLS, PK, "UPDATED_AT"), g.merge_sql(TARGET, STAGE, COLS[:2], PK, None),
            g.create_stage_table_sql(STAGE, COLS), g.write_state_sql(STATE), *loads,
            *g.lease_sqls(LEASE).values(), g.plan_read_sql("ETL_DB", STATE, LEASE, TARGET),
            g.plan_read_sql("ETL_DB", STATE, LEASE, None)]


@pytest.mark.parametrize("sql", statements())
def test_protocol_sql_parses_as_snowflake(sql):
    parse(sql)


def test_merge_updates_only_rows_that_differ_null_safe():
    sql = g.merge_sql(TARGET, STAGE, COLS, PK, "UPDATED_AT")
    tree = parse(sql)
    assert isinstance(tree, exp.Merge)
    assert sql.startswith(f"MERGE INTO {TARGET} t USING (SELECT ")
    # The source is one row per key (the latest UPDATED_AT): a deterministic MERGE.
    assert 'QUALIFY ROW_NUMBER() OVER (PARTITION BY "ID", "LINE" ORDER BY "UPDATED_AT" DESC NULLS LAST) = 1) s' in sql
    assert 'ON t."ID" = s."ID" AND t."LINE" = s."LINE"' in sql
    whens = tree.args["whens"].expressions
    assert [bool(w.args.get("matched")) for w in whens] == [True, False]
    condition = whens[0].args["condition"].sql(dialect="snowflake")
    for differs in ('t."NOTE" IS DISTINCT FROM s."NOTE"',
                    'TO_JSON(t."DOC") IS DISTINCT FROM TO_JSON(PARSE_JSON(s."DOC"))',
                    't."RAW" IS DISTINCT FROM TO_BINARY(s."RAW", \'HEX\')',
                    't."SCORE" IS DISTINCT FROM s."SCORE"', 't."UPDATED_AT" IS DISTINCT FROM s."UPDATED_AT"'):
        assert differs in sql
    # a FLOAT zero whose sign changed is a change too (0.0 = -0.0 in IEEE)
    assert '(t."SCORE" IS DISTINCT FROM s."SCORE" OR (t."SCORE" = 0 AND ATAN2(t."SCORE", -1) <> ' \
           'ATAN2(s."SCORE", -1)))' in sql
    assert '"ID"' not in condition and '"LINE"' not in condition       # keys are the join, not the change
    assert ('THEN UPDATE SET "NOTE" = s."NOTE", "DOC" = PARSE_JSON(s."DOC"), "RAW" = TO_BINARY(s."RAW", \'HEX\'), '
            '"SCORE" = s."SCORE", "UPDATED_AT" = s."UPDATED_AT" ') in sql
    assert sql.endswith('WHEN NOT MATCHED THEN INSERT ("ID", "LINE", "NOTE", "DOC", "RAW", "SCORE", "UPDATED_AT") '
                        'VALUES (s."ID", s."LINE", s."NOTE", PARSE_JSON(s."DOC"), TO_BINARY(s."RAW", \'HEX\'), '
                        's."SCORE", s."UPDATED_AT")')


def test_merge_of_a_table_that_is_all_key_only_inserts():
    sql = g.merge_sql(TARGET, STAGE, COLS[:2], PK, None)
    assert "WHEN MATCHED" not in sql and "WHEN NOT MATCHED THEN INSERT" in sql


def test_merge_counts_read_by_column_name():
    assert g.merge_counts(["number of rows inserted", "number of rows updated"], (3, 0)) == (3, 0)
    assert g.merge_counts(["number of rows updated", "number of rows inserted"], (2, 5)) == (5, 2)
    assert g.merge_counts(["number of rows inserted"], (4,)) == (4, 0)     # no WHEN MATCHED clause


def test_load_statements_per_mode():
    kinds = {mode: [k for k, _ in g.load_statements(mode, False, TARGET, STAGE, COLS, PK, "UPDATED_AT")]
             for mode in ("INCREMENTAL", "UPSERT", "APPEND", "TRUNCATE_INSERT")}
    assert kinds == {"INCREMENTAL": ["merge"], "UPSERT": ["merge"], "APPEND": ["insert"],
                     "TRUNCATE_INSERT": ["delete", "insert"]}
    replaced = g.load_statements("INCREMENTAL", True, TARGET, STAGE, COLS, PK, "UPDATED_AT")
    assert [k for k, _ in replaced] == ["delete", "insert"] and "QUALIFY" in replaced[1][1]
    assert g.load_statements("APPEND", False, TARGET, STAGE, COLS, [], None)[0][1].endswith(f"FROM {STAGE} s")


def test_staging_table_is_temporary_and_named_per_run():
    sql = g.create_stage_table_sql(STAGE, COLS)
    assert sql.startswith(f"CREATE TEMPORARY TABLE {STAGE} (")
    assert parse(sql).args["properties"].find(exp.TemporaryProperty)
    assert "OR REPLACE" not in sql and "TRANSIENT" not in sql
    assert g.stage_table_name("RAW", "ORDERS", "X1") != g.stage_table_name("RAW", "ORDERS", "X2")
    assert '"DOC" VARCHAR' in sql and '"RAW" VARCHAR' in sql        # JSON and hex text until the load


def test_state_is_written_by_one_merge_on_the_target_name():
    sql = g.write_state_sql(STATE)
    tree = parse(sql)
    assert isinstance(tree, exp.Merge)
    assert 'ON t."TARGET_TABLE" = s."TARGET_TABLE"' in sql
    for param in ("target", "source", "mode", "column", "watermark", "run_id", "rows"):
        assert f"%({param})s" in sql


def test_every_lease_use_requires_no_other_live_holder():
    sql = g.lease_sqls(LEASE)
    no_other = (f'NOT EXISTS (SELECT 1 FROM {LEASE} o WHERE o."TARGET_TABLE" = %(target)s '
                f'AND o."HOLDER" <> %(holder)s AND o."EXPIRES_AT" > CURRENT_TIMESTAMP()::TIMESTAMP_NTZ)')
    for name in ("claim", "hold", "hold_release"):
        assert sql[name].endswith(no_other), name
        assert isinstance(parse(sql[name]), exp.Update)
    assert 'SET "HOLDER" = NULL' in sql["hold_release"]
    # A heartbeat renews only a live lease: it never revives one another run may have taken over.
    assert sql["renew"].endswith('"EXPIRES_AT" > CURRENT_TIMESTAMP()::TIMESTAMP_NTZ')


def test_plan_read_is_one_statement_with_the_target_columns_after_its_values():
    sql = g.plan_read_sql("ETL_DB", STATE, LEASE, TARGET)
    assert f"(SELECT COUNT(*) FROM {TARGET})" in sql and g.target_columns_sql("ETL_DB") in sql
    assert f"COUNT(*) FROM {TARGET}" not in g.plan_read_sql("ETL_DB", STATE, LEASE, None)
    # The target columns come as target_columns_sql's rows: name, DATA_TYPE, length, precision, scale.
    counted = g.PlanRead.from_rows([(1, None, "UPDATED_AT", "2026-01-01 00:00:00.000000", 7,
                                     "ID", "NUMBER", None, 10, 0),
                                    (1, None, "UPDATED_AT", "2026-01-01 00:00:00.000000", 7,
                                     "V", "TEXT", 16_777_216, None, None)], True)
    assert counted == g.PlanRead(1, None, "UPDATED_AT", "2026-01-01 00:00:00.000000", 7,
                                 {"ID": "NUMBER(10,0)", "V": "VARCHAR"})
    missing = g.PlanRead.from_rows([(1, None, None, None, None, None, None, None, None)], False)
    assert missing.target_columns == {} and missing.target_rows is None


def test_confirm_refuses_when_another_holder_is_live_or_ours_is_gone():
    leases = g.Leases(lambda: None, LEASE, "run-a", 60)
    leases.confirm("T", g.PlanRead(1, None, None, None, None, {}))
    with pytest.raises(g.LeaseTaken, match="run run-b claimed T at the same time"):
        leases.confirm("T", g.PlanRead(1, "run-b", None, None, None, {}))
    with pytest.raises(g.LeaseTaken):
        leases.confirm("T", g.PlanRead(0, None, None, None, None, {}))


def test_only_lock_conflicts_count_as_claim_conflicts():
    assert g.is_lock_conflict("Snowflake: 000625 (57014): Statement aborted: transaction conflict")
    assert not g.is_lock_conflict("Snowflake: 002003 (42S02): Object 'X' does not exist or not authorized.")
    assert not g.is_lock_conflict("Snowflake: 390114 (08001): Authentication token has expired.")


def test_backoff_grows_is_jittered_and_capped():
    assert g.backoff_seconds(0, 5.0, lambda: 1.0) == 0.625          # never below cap/8
    assert g.backoff_seconds(3, 5.0, lambda: 1.0) == 2.0
    assert g.backoff_seconds(30, 5.0, lambda: 1.0) == 5.0
    assert g.backoff_seconds(30, 5.0, lambda: 0.5) == 2.5


class FakeWarehouse:
    """Answers the lease statements from a script; records what was sent."""

    def __init__(self, answers):
        self.answers, self.sent = list(answers), []

    def _next(self, sql):
        self.sent.append(sql)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def execute(self, sql, params=None):
        rowcount = self._next(sql)
        return type("Cursor", (), {"rowcount": rowcount})()

    def rows(self, sql, params=None):
        return self._next(sql)


def test_acquire_retries_a_lock_conflict_and_fails_any_other_error(monkeypatch):
    slept = []
    monkeypatch.setattr(g.time, "sleep", slept.append)
    leases = g.Leases(lambda: None, LEASE, "run-a", 60)
    conflict = g.EtlError("Snowflake: 000625 (57014): Statement aborted: transaction conflict")
    wh = FakeWarehouse([0, conflict, 0, 1, 1])      # claim 0, seed conflicts, then seed + claim win
    assert leases.acquire(wh, "T") is None
    assert len(slept) == 1 and 0 < slept[0] <= 5
    broken = FakeWarehouse([0, g.EtlError("Snowflake: 002003 (42S02): Object does not exist")])
    with pytest.raises(g.EtlError, match=r"cannot claim the lease of T in .*: Snowflake: 002003"):
        leases.acquire(broken, "T")
