"""REPAIR (issue 15 item 3), the pure half: its arguments, which keys it reads again, when it refuses, the SQL
of its read and of its transaction (parsed as Snowflake), and how the summary reports it. The e2e half is
tests/e2e/test_repair.py."""

from __future__ import annotations

import pytest
import sqlglot
from awsglue.utils import getResolvedOptions
from sqlglot import exp
from sqlglot.errors import ErrorLevel

import glue_etl_job as g
from tests.unit.test_plan import FIELDS, STAGE, TARGET, cfg, facts

BASE = ["glue_etl_job.py", "--JOB_NAME", "etl-prod", "--SNOWFLAKE", "/etl/prod/snowflake"]


def parse(*extra: str) -> g.JobArgs:
    return g.parse_args([*BASE, *extra], resolve=getResolvedOptions)


def problems(*extra: str) -> list[str]:
    try:
        parse(*extra)
    except g.ConfigError as exc:
        return exc.problems
    raise AssertionError("no ConfigError")


def test_repair_implies_verify_and_every_flag_is_strict():
    assert (parse().verify, parse().repair) == (False, False)
    assert (parse("--REPAIR", "true").verify, parse("--REPAIR", "true").repair) == (True, True)
    assert (parse("--VERIFY", "yes").verify, parse("--VERIFY", "yes").repair) == (True, False)
    # A misspelt value used to mean false: a run without the check that was asked for.
    assert problems("--VERIFY", "ture") == ["--VERIFY must be true or false, got 'ture'"]
    assert problems("--REPAIR", "on") == ["--REPAIR must be true or false, got 'on'"]
    assert problems("--KEEP_STAGING", "keep") == ["--KEEP_STAGING must be true or false, got 'keep'"]
    assert problems("--REPAIRS", "true") == ["unknown runtime argument --REPAIRS (did you mean --REPAIR?)"]


def test_load_false_checks_the_targets_as_they_are_and_needs_a_check():
    assert parse().load is True and parse("--LOAD", "true").load is True
    assert (parse("--LOAD", "false", "--VERIFY", "true").load, parse("--LOAD", "no", "--REPAIR", "true").repair) \
        == (False, True)
    assert problems("--LOAD", "false") == [
        "--LOAD false loads nothing and checks nothing: add --VERIFY true (compare each target with its source) "
        "or --REPAIR true (and mend what differs), or leave --LOAD out"]
    assert problems("--LOAD", "false", "--VERIFY", "true", "--DRY_RUN", "true") == [
        "--LOAD false: a dry run loads nothing already; leave --LOAD out of a dry run"]
    assert problems("--LOAD", "off", "--VERIFY", "true") == ["--LOAD must be true or false, got 'off'"]
    assert problems("--LOADS", "false") == ["unknown runtime argument --LOADS (did you mean --LOAD?)"]


def test_the_plan_says_it_repairs():
    plan = g.plan_table(cfg(), facts(), cores=2, target=TARGET, repair=True)
    assert (plan.verify, plan.repair) == (True, True)
    assert plan.as_dict()["repair"] is True
    assert "then REPAIR reloads the keys that differ" in plan.describe()
    assert g.plan_table(cfg(), facts(), cores=2, target=TARGET, verify=True).repair is False


def test_any_key_is_repaired_and_a_hashed_key_is_read_by_its_hashes():
    """A key that is not one integer column is read again by the hashed key VERIFY bisected it by."""
    for key in (["ID", "AMOUNT"], ["UPDATED_AT"]):
        plan = g.plan_table(cfg(primary_key=key), facts(), cores=2, target=TARGET, repair=True)
        assert (plan.verify, plan.repair) == (True, True)
    plan = g.plan_table(cfg(primary_key=["ID", "AMOUNT"]), facts(), cores=2, target=TARGET, repair=True)
    hashed = g.hashed_key_sql("postgres", "'k'")
    sql = g.repair_read_sql(plan, cfg(primary_key=["ID", "AMOUNT"]), [5, 2**59], hashed)
    assert sql == f'SELECT "id", "amount", "updated_at" FROM "sales"."orders" WHERE {hashed} IN (5, {2**59})'
    sqlglot.parse_one(sql, read="postgres", error_level=ErrorLevel.RAISE)


def test_a_hashed_key_led_by_an_integer_or_a_text_is_read_through_its_first_column():
    """Its rows are those of the hashes among the rows of the keys' first values, which an index on the key finds."""
    ints = g.KeyLead("postgres", "int", '"id"')
    keys = ["12|2:eu", "-3|0:", "12|3:a|b", "40|N"]
    assert g.lead_in_sql(ints, keys) == '"id" IN (-3, 12, 40)'
    plan = g.plan_table(cfg(primary_key=["ID", "AMOUNT"]), facts(), cores=2, target=TARGET, repair=True)
    hashed = g.hashed_key_sql("postgres", "'k'")
    sql = g.repair_read_sql(plan, cfg(primary_key=["ID", "AMOUNT"]), [5, 7], hashed, g.lead_in_sql(ints, keys))
    assert sql.endswith(f' WHERE "id" IN (-3, 12, 40) AND {hashed} IN (5, 7)')
    sqlglot.parse_one(sql, read="postgres", error_level=ErrorLevel.RAISE)
    # A text: its UTF-8 length frames it, so '|' and ':' inside it are its own; literals read back as themselves
    # whatever standard_conforming_strings (PostgreSQL) or NO_BACKSLASH_ESCAPES (MySQL) say
    texts = ["3:a|b|7", "0:|1", "4:it's|2", "2:\\x", "2:é", "4:1:ab"]
    assert [g.first_key_value("text", k) for k in texts] == ["a|b", "", "it's", "\\x", "é", "1:ab"]
    assert g.lead_in_sql(g.KeyLead("postgres", "text", '"code"'), texts) == (
        "\"code\" IN (E'', E'1:ab', E'\\\\x', E'a|b', E'it''s', E'é')")
    assert g.lead_in_sql(g.KeyLead("mysql", "text", "`code`"), ["2:é|1", "0:", "1:'"]) == (
        "`code` IN (_utf8mb4 X'', _utf8mb4 X'27', _utf8mb4 X'c3a9')")
    for engine, lead in (("postgres", '"code"'), ("mysql", "`code`")):
        narrow = g.lead_in_sql(g.KeyLead(engine, "text", lead), texts)
        sqlglot.parse_one(f"SELECT 1 FROM t WHERE {narrow}", read=engine, error_level=ErrorLevel.RAISE)
    for kind, bad in (("int", "1.5|x"), ("text", "3:ab"), ("text", "2:abc"), ("text", "x:ab"), ("text", "ab")):
        with pytest.raises(ValueError):         # never read as another key's value
            g.first_key_value(kind, bad)
    # a uuid key: an extra key's text no uuid reads as (the target's own) is left out, never an error in the read
    uuids, good = g.KeyLead("postgres", "text", '"id"', "uuid"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert g.lead_in_sql(uuids, [f"36:{good}", "10:not-a-uuid", f"36:{good.upper()}"]) == f"\"id\" IN (E'{good}')"
    assert g.lead_in_sql(uuids, ["10:not-a-uuid"]) == "1 = 0"
    many = [f"{i}|x" for i in range(200_000)]   # beyond LEAD_MAX_BYTES: no narrowing, the read is the scan it was
    assert g.lead_in_sql(ints, many) is None and g.lead_in_sql(ints, many[:1000]) is not None


def test_every_differing_key_is_read_again_extra_ones_too():
    drift = g.Drift(missing=[7, 3], extra=[40], different=[5, 3])
    assert g.repair_keys(drift) == [3, 5, 7, 40]
    assert g.repair_keys(g.Drift(missing=["2:eu|7"], extra=["0:"], different=["2:eu|7"])) == ["0:", "2:eu|7"]


def test_the_read_is_the_loads_read_of_those_keys():
    plan = g.plan_table(cfg(), facts(), cores=2, target=TARGET)
    sql = g.repair_read_sql(plan, cfg(), [3, 5, 40])
    # The same columns and text expressions as the load's read; the window is replaced by the keys.
    assert sql == 'SELECT "id", "amount", "updated_at" FROM "sales"."orders" WHERE "id" IN (3, 5, 40)'
    assert plan.source_sql.split(" WHERE ")[0] == sql.split(" WHERE ")[0]
    excluded = cfg(null_timestamps="exclude")
    plan = g.plan_table(excluded, facts(null_rows=0), cores=2, target=TARGET)
    assert g.repair_read_sql(plan, excluded, [3]).endswith('WHERE "id" IN (3) AND "updated_at" IS NOT NULL')
    for s in (sql, g.repair_read_sql(plan, excluded, [3])):
        sqlglot.parse_one(s, read="postgres", error_level=ErrorLevel.RAISE)


def test_repair_refuses_too_many_keys_and_the_delete_guard_applies():
    assert g.repair_problem("sales.orders", "RAW.ORDERS", g.Drift(missing=[1], extra=[2]), 100, 0.1) is None
    many = g.Drift(different=list(range(g.REPAIR_MAX_KEYS + 1)))
    assert g.repair_problem("sales.orders", "RAW.ORDERS", many, 10**9, 0.1) == (
        f"sales.orders: REPAIR: {g.REPAIR_MAX_KEYS + 1} keys of RAW.ORDERS differ from the source, more than the "
        f"{g.REPAIR_MAX_KEYS} one repair reloads; nothing was repaired. Reload the table (mode FULL or "
        f"TRUNCATE_INSERT for one run), then VERIFY again")
    wipe = g.Drift(extra=list(range(20)))
    problem = g.repair_problem("sales.orders", "RAW.ORDERS", wipe, 100, 0.1)
    assert problem.startswith("REPAIR: sales.orders: 20 of the 100 rows of RAW.ORDERS would be deleted (20.0%), "
                              "more than max_delete_fraction 0.1; nothing was repaired.")
    assert g.repair_problem("sales.orders", "RAW.ORDERS", wipe, 100, 0.2) is None


def columns():
    plan = g.plan_table(cfg(), facts(), cores=2, target=TARGET)
    return g.plan_load(plan, cfg(), list(FIELDS.items()), FIELDS, STAGE).columns


def test_the_repair_transaction_deletes_extra_keys_not_read_back_then_merges():
    stmts = g.repair_statements(TARGET, STAGE, columns(), ["ID"], '"ID"', 's."ID"', [40, 41], soft=False)
    assert [k for k, _ in stmts] == ["deleted", "merge"]
    assert stmts[0][1] == (f'DELETE FROM {TARGET} WHERE "ID" IN (40, 41) AND "ID" NOT IN (SELECT s."ID" FROM '
                           f'{STAGE} s)')
    assert stmts[1][1] == g.merge_sql(TARGET, STAGE, columns(), ["ID"], None)
    soft = g.repair_statements(TARGET, STAGE, columns(), ["ID"], '"ID"', 's."ID"', [40], soft=True)
    assert soft[0][1] == (f'UPDATE {TARGET} SET "_DELETED_AT" = CURRENT_TIMESTAMP() WHERE "ID" IN (40) AND '
                          f'"_DELETED_AT" IS NULL AND "ID" NOT IN (SELECT s."ID" FROM {STAGE} s)')
    assert '"_DELETED_AT" = NULL' in soft[1][1]         # a key the source has again is live again
    none = g.repair_statements(TARGET, STAGE, columns(), ["ID"], '"ID"', 's."ID"', [], soft=False)
    assert [k for k, _ in none] == ["merge"]
    # A hashed key: the extra keys by their text (quotes and backslashes are data), kept by that text of the
    # stage's rows (one item in NOT IN's SELECT list, as Snowflake's subquery operators take it)
    label = g.row_text_sql("snowflake", [("int", 'TO_VARCHAR("ID")'), ("decimal", 'TO_VARCHAR("AMOUNT")')])
    staged = label.replace('"ID"', 's."ID"').replace('"AMOUNT"', 's."AMOUNT"')
    both = g.repair_statements(TARGET, STAGE, columns(), ["ID", "AMOUNT"], label, staged, ["1|2.50", "it's\\"],
                               soft=False)
    assert both[0][1] == (f"DELETE FROM {TARGET} WHERE {label} IN ('1|2.50', 'it''s\\\\') AND "
                          f"{label} NOT IN (SELECT {staged} FROM {STAGE} s)")
    assert both[1][1] == g.merge_sql(TARGET, STAGE, columns(), ["ID", "AMOUNT"], None)
    for _, sql in stmts + soft + both:
        tree = sqlglot.parse_one(sql, read="snowflake", error_level=ErrorLevel.RAISE)
        assert isinstance(tree, (exp.Delete, exp.Update, exp.Merge))
    literal = sqlglot.parse_one(both[0][1], read="snowflake").find(exp.In).expressions[1]
    assert literal.this == "it's\\"           # read back as Snowflake reads it: the key's own text


def test_the_summary_reports_what_repair_did():
    r = g.TableResult("sales.orders", "UPSERT", "RAW.ORDERS", "OK", 10, 10, 10, 0, 0, 1.0,
                      verified=g.Drift(missing=[4], extra=[11], rows=10), repaired=g.Repaired(2, 1, 1, g.Drift()))
    text = g.summary_table([r])
    assert "sales.orders: VERIFY 2 mismatched of 10 rows (missing 1, extra 1, different 0)" in text
    assert ("sales.orders: REPAIR 2 key(s): 1 row(s) written from the source, 1 deleted; "
            "the repaired ranges now match") in text
    assert g.repair_summary(g.Repaired(3, 2, 0, g.Drift(different=[9]))).endswith("; 1 still differ")
