"""Break each guarantee once and check that its test notices (docs/GUARANTEES.md, "Broken on purpose").

Each mutation replaces one exact piece of glue_etl_job.py (or of the emulator wrapper) with a
broken version, runs the tests that prove that guarantee, and expects them to FAIL; the file is
restored afterwards whatever happens. A mutation whose tests still pass is reported as SURVIVED
and the script exits 1.

    .venv/bin/python -m tests.mutations            # all (about 15 minutes; the stack must be up)
    .venv/bin/python -m tests.mutations lease       # the mutations whose name contains "lease"
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = "glue_etl_job.py"

# name, file, exact text(s), broken text(s), tests that must fail (pytest arguments)
MUTATIONS = [
    ("--LOAD false loads anyway", JOB,
     "                if self.ctx.args.load:\n", "                if True:\n",
     ["tests/e2e/test_check_only.py"]),
    ("watermark compares with > instead of >=", JOB,
     "pred = f\"{col} >= TIMESTAMP '{timestamp_text(start)", "pred = f\"{col} > TIMESTAMP '{timestamp_text(start)",
     ["tests/e2e/test_incremental_edges.py::test_rows_sharing_the_watermark_are_not_lost"]),
    ("look-back window ignored", JOB,
     "start -= dt.timedelta(seconds=lookback_seconds)", "start -= dt.timedelta(seconds=0)",
     ["tests/e2e/test_incremental_edges.py::test_late_commit_is_caught_by_the_lookback_window"]),
    ("NULL timestamps dropped under 'include'", JOB,
     'pred = f"({pred} OR {col} IS NULL)"', 'pred = f"({pred})"',
     ["tests/e2e/test_incremental_edges.py::test_null_timestamps_follow_the_policy"]),
    ("empty string staged like NULL", JOB,
     """.option("emptyValue", '""')""", """.option("emptyValue", "")""",
     ["tests/e2e/test_fidelity.py", "-k", "postgres and FULL"]),
    # No message carries a secret today, so masking alone is never exercised: break both layers.
    ("a secret in an error message, not masked", JOB,
     ['raise EtlError(f"{namespace}.{table}: cannot read the source table on {self.settings.url}: "',
      '            text = text.replace(secret, "***")'],
     ['raise EtlError(f"{namespace}.{table}: cannot read the source table on {self.settings.url} '
      '{self.settings.password}: "', "            text = text"],
     ["tests/e2e/test_secrets.py::test_no_secret_anywhere"]),
    ("partition ranges overlap at their edges", JOB,
     '[f"{q} >= {a} AND {q} < {b}"', '[f"{q} >= {a} AND {q} <= {b}"',
     ["tests/unit/test_core.py", "-k", "partition_predicates_select"]),
    ("dates and datetimes read through the JDBC drivers' calendar", JOB,
     ['VERBATIM_TYPES = {"postgres": frozenset({"numeric", "timestamp without time zone", "date"}),\n'
      '                  "mysql": frozenset({"datetime", "date"})}'],
     ['VERBATIM_TYPES = {"postgres": frozenset({"numeric", "timestamp without time zone"}),\n'
      '                  "mysql": frozenset()}'],
     ["tests/e2e/test_fidelity.py", "-k", "mysql and full or postgres and full"]),
    # A live holder's lease is taken over as if free (replacing the whole claim made the setup's own runs
    # fail instead: an error, not a catch).
    ("lease never refused", JOB,
     '                return f"run {holder} (since {since} UTC, lease until {until} UTC)"',
     "                return None",
     ["tests/e2e/test_concurrency.py::test_second_run_skips_a_table_the_first_is_loading"]),
    ("lease not checked at the load", JOB,
     "        if not t.ctx.leases.hold(self.wh, self.cfg.target, release):", "        if False:",
     ["tests/e2e/test_concurrency.py::test_a_run_that_lost_its_lease_changes_nothing"]),
    ("a claim ignores another holder's live row", JOB,
     """f'OR "EXPIRES_AT" <= {_NOW}) AND {no_other}'),""", """f'OR "EXPIRES_AT" <= {_NOW})'),""",
     ["tests/e2e/test_lease_protocol.py"]),
    ("MERGE rewrites every matched row", JOB,
     "matched = f\" WHEN MATCHED AND ({' OR '.join(differs)}) THEN UPDATE SET {sets}\"",
     'matched = f" WHEN MATCHED THEN UPDATE SET {sets}"',
     ["tests/e2e/test_statement_counts.py", "-k", "reread"]),
    ("widening: a column Snowflake can widen is refused instead", JOB,
     "        elif (to := widening(col.sf_type, existing)) is not None:", "        elif False:",
     ["tests/e2e/test_widening.py::test_widened_source_columns_widen_the_target_and_load_value_by_value"]),
    ("widening: a NUMBER is widened to less scale than the source's (values rounded)", JOB,
     'return f"NUMBER({ts + p - s},{ts})" if ts >= s and ts + p - s <= 38 else None',
     'return f"NUMBER({ts + p - s},{ts})" if ts + p - s <= 38 else None',
     ["tests/unit/test_widening.py",
      "tests/e2e/test_widening.py::test_a_scale_change_fails_the_table_and_leaves_the_target_unchanged"]),
    ("the delete guard never refuses", JOB,
     "    if deletes == 0 or deletes <= fraction * target_rows:", "    if True:",
     ["tests/unit/test_deletes.py"]),
    ("delete detection looks into ranges without target keys", JOB,
     "        return {k: v for k, v in src.items() if k in tgt}, tgt", "        return src, tgt",
     ["tests/unit/test_deletes.py"]),
    ("a soft-deleted key read again stays deleted", JOB,
     'differs = [_differs(c) for c in non_key] + ([f"t.{qi(DELETED_AT)} IS NOT NULL"] if soft else [])',
     "differs = [_differs(c) for c in non_key]",
     ["tests/e2e/test_deletes.py", "-k", "postgres"]),
    ("the load's history row commits on its own, before the load", JOB,
     "        wh.execute(write_history_sql(self.table), self._params(r, loaded=True))",
     "        self._connections._connect().execute(write_history_sql(self.table), self._params(r, loaded=True))",
     ["tests/e2e/test_history.py::test_no_history_row_claims_a_load_killed_before_its_commit"]),
    ("a history row outside the load keeps the rolled-back MERGE's counts", JOB,
     "    changed = (r.inserted, r.updated, r.deleted) if loaded else (0, 0, 0)",
     "    changed = (r.inserted, r.updated, r.deleted)",
     ["tests/unit/test_history.py"]),
    ("REPAIR's statements commit one by one, outside a transaction", JOB,
     "                with wh.transaction():\n                    self._check_lease(release=False)\n",
     "                if True:\n                    self._check_lease(release=False)\n",
     ["tests/e2e/test_repair.py::test_a_kill_inside_the_repair_leaves_the_target_as_before_and_after_its_commit_as_repaired"]),
    ("MERGE ignores a zero whose sign changed", JOB,
     ' OR ({target} = 0 AND "\n                f"ATAN2({target}, -1) <> ATAN2({col.load_expr}, -1)))")',
     ' OR FALSE)")',
     ["tests/e2e/test_repair.py::test_repair_reloads_exactly_the_drift_and_the_target_equals_a_fresh_load"]),
    ("VERIFY hashes a LATIN1 PostgreSQL database's texts as their stored bytes, not as UTF-8", JOB,
     'hashes = row_hash_sql(engine, src, to_utf8), row_hash_sql("snowflake", tgt)',
     'hashes = row_hash_sql(engine, src, False), row_hash_sql("snowflake", tgt)',
     ["tests/e2e/test_encoding.py"]),
    ("a hashed key's text on Snowflake is written unframed, unlike the source's", JOB,
     'row_text_sql("snowflake", [(k.kind, k.tgt) for k in keys])',
     'row_text_sql("snowflake", [("int", k.tgt) for k in keys])',
     ["tests/e2e/test_verify_keys.py"]),
    ("REPAIR of a hashed key reads only the missing keys again, not the changed ones", JOB,
     "sql = repair_read_sql(plan, cfg, sorted({checker.hashed[k] for k in keys}), checker.src_key, narrow)",
     "sql = repair_read_sql(plan, cfg, sorted({checker.hashed[k] for k in drift.missing}), checker.src_key, narrow)",
     ["tests/e2e/test_verify_keys.py", "-k", "postgres"]),
    ("REPAIR of a hashed key led by an integer scans the whole source instead of its index", JOB,
     "narrow = lead_in_sql(checker.src_lead, keys) if checker.src_lead else None",
     "narrow = None",
     ["tests/e2e/test_repair_lead.py", "-k", "postgres"]),
    ("REPAIR narrows a uuid key by an extra key's text that no uuid reads as (an error for the whole read)", JOB,
     'if lead.type == "uuid":     # an extra key', 'if False:     # an extra key',
     ["tests/e2e/test_repair_lead.py", "-k", "postgres"]),
    ("REPAIR narrows a MySQL text key in any character set (latin1: an extra key's character is an error)", JOB,
     'and (engine != "mysql" or first.charset == "utf8mb4"))', ')',
     ["tests/e2e/test_repair_lead.py", "-k", "mysql"]),
    ("REPAIR narrows a text key by PostgreSQL literals without E, so a backslash reads doubled", JOB,
     'return "E" + sql_str(text) if engine == "postgres"',
     'return sql_str(text) if engine == "postgres"',
     ["tests/e2e/test_repair_lead.py", "-k", "postgres"]),
    ("deletes by a hashed key compare every source row in the ranges, new ones too", JOB,
     "self.bound = self._bound() if self.src_label is not None else None",
     "self.bound = None",
     ["tests/e2e/test_deletes_keys.py", "-k", "postgres and composite_key"]),
    ("deletes by a hashed key: the leaves compare only the source rows before the watermark", JOB,
     "s, t = self._key_rows(ranges, self.src_key, self.tgt_key, bounded=False)",
     "s, t = self._key_rows(ranges, self.src_key, self.tgt_key, bounded=True)",
     ["tests/e2e/test_deletes_keys.py", "-k", "postgres and delete_removes"]),
    ("REPAIR's history row is written before its transaction, on its own", JOB,
     ["                inserted = updated = 0\n                with wh.transaction():\n",
      "                    t.ctx.history.write_repair(wh, self.r, read, inserted, updated, done.deleted)\n"],
     ["                inserted = updated = 0\n                t.ctx.history.write_repair(wh, self.r, read, 0, 0, 0)\n"
      "                with wh.transaction():\n", ""],
     ["tests/e2e/test_repair.py", "-k", "kill_inside"]),
    ("a timestamp's canonical text keeps its fraction's trailing zeros on Snowflake", JOB,
     "return text if kind == \"date\" else f\"RTRIM(RTRIM({text}, '0'), '.')\"", "return text",
     ["tests/e2e/test_verify.py::test_verify_finds_no_drift_after_a_load_then_every_drift_exactly"]),
    ("the row hash writes a text as itself, unframed: NULL and the text 'N' hash alike", JOB,
     "parts.append(f\"COALESCE({framed if kind in FREE_TEXT_KINDS else c}, {NULL_MARK})\")",
     "parts.append(f\"COALESCE({c}, {NULL_MARK})\")",
     ["tests/e2e/test_verify.py::test_verify_finds_no_drift_after_a_load_then_every_drift_exactly"]),
    ("a MySQL bulk answer cut inside its last row is read as a shorter row", JOB,
     '    if len(cells) != len(names) + 1 or cells[-1] != ".":\n',
     '    if len(cells) != len(names) + 1:\n',
     ["tests/unit/test_reconcile.py", "-k", "bulk", "tests/e2e/test_bulk_rows.py"]),
    ("PostgreSQL's bulk answer pulls the leaves' query up: its MD5s computed by the leader alone", JOB,
     'CAST(JSON_AGG(q) AS TEXT) AS j FROM ({sql} OFFSET 0) q"', 'CAST(JSON_AGG(q) AS TEXT) AS j FROM ({sql}) q"',
     ["tests/e2e/test_bulk_rows.py", "-k", "parallel"]),
    ("VERIFY's PostgreSQL session leaves work_mem as it is (a hashed key's 65,536 buckets spill to disk)", JOB,
     'RECONCILE_SESSION = {"postgres": (PG_JIT_OFF, PG_WORK_MEM, ', 'RECONCILE_SESSION = {"postgres": (PG_JIT_OFF, ',
     ["tests/e2e/test_reconcile_session.py"]),
    ("VERIFY's PostgreSQL session keeps the planner's parallel costs (a key-only fingerprint in one process)", JOB,
     '"SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0")}', ')}',
     ["tests/e2e/test_reconcile_session.py"]),
    ("the first level's buckets wider than a leaf (1,024 keys): a level more for every difference", JOB,
     "VERIFY_BUCKET_KEYS = VERIFY_LEAF_ROWS\n", "VERIFY_BUCKET_KEYS = 1_024\n",
     ["tests/unit/test_reconcile.py"]),
    ("--LOAD false plans a load before its VERIFY (a scan of a FULL table's whole source)", JOB,
     "        self._verify(source, wh, columns, repair, lambda: survey.plan()[0])\n",
     "        plan = survey.plan()[0]\n        self._verify(source, wh, columns, repair, lambda: plan)\n",
     ["tests/e2e/test_check_only.py"]),
]


def run(selected: list[tuple]) -> int:
    survived = []
    for name, file, old, new, tests in selected:
        path = ROOT / file
        original = broken = path.read_text()
        for before, after in zip(*((x,) if isinstance(x, str) else x for x in (old, new)), strict=True):
            if broken.count(before) != 1:
                print(f"!! {name}: the text to break is not found exactly once in {file}; update the mutation")
                return 2
            broken = broken.replace(before, after)
        t0 = time.monotonic()
        try:
            path.write_text(broken)
            proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                                  cwd=ROOT, capture_output=True, text=True)
        finally:
            path.write_text(original)
        verdict = {1: "caught", 0: "SURVIVED"}.get(proc.returncode, f"error {proc.returncode}")
        lines = proc.stdout.strip().splitlines()
        if verdict == "caught" and " error" in (lines[-1] if lines else ""):
            verdict = "error"          # a fixture or collection error proves nothing about the guarantee
        print(f"{verdict:9} {time.monotonic() - t0:6.0f}s  {name}  ({' '.join(t.split('::')[-1] for t in tests)})",
              flush=True)
        if verdict != "caught":
            survived.append(name)
            print(proc.stdout[-2000:])
    print(f"\n{len(selected) - len(survived)}/{len(selected)} broken guarantees caught by their tests")
    return 1 if survived else 0


if __name__ == "__main__":
    words = sys.argv[1:]
    sys.exit(run([m for m in MUTATIONS if not words or any(w in m[0] for w in words)]))
