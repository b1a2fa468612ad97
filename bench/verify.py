"""The VERIFY / REPAIR cases' helpers: the differences put into the target, the checks, the pushed-down SQL.

- ``Drifts``: 100 scattered differences straight into the Snowflake target (through the connector to
  fakesnow) - rows deleted (missing in the target), values changed (different), rows added under keys the
  source lacks at that moment (extra). The source's key range is contiguous (1..N), so the extra keys are
  made real by moving those source rows aside for the run (``bench.<table>_held``) and back right after it:
  the source then lacks keys that the target holds, in the middle of the range, as after a source delete.
- ``PgStatements``: PostgreSQL logs every statement of the bench database with its server-side duration
  while a VERIFY case runs (``log_min_duration_statement = 0`` on database ``bench``, reset afterwards);
  the statements of one run are read back from the server's log.
- The Snowflake side's statements come from ``bench/sqlrecord/sitecustomize.py`` (client-side durations).
- ``sql_summary`` groups VERIFY's statements by kind: fingerprint (per key range COUNT + SUM of row-hash
  slices), key_hashes (key + row hash of a small range), bounds (MIN/MAX key), changed_since_load.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from bench import workload
from local import stack

N_DIFFS = {"missing": 34, "different": 33, "extra": 33}
# Keys of one residue mod 100: the INCREMENTAL case touches mod(id, 100) = 1..3 and 50.. (workload.update_delta),
# and the row at the watermark (re-read by '>=' on every run) is one of those or the last key.
RESIDUE = 77


def _ids(keys) -> str:
    return ", ".join(str(k) for k in sorted(keys))


class Drifts:
    """The same 100 keys every run (a repaired run leaves the target equal to the source; an unrepaired one
    is put back into the same state by the next ``inject``)."""

    def __init__(self, source_table: str, target: str, rows: int, seed: int = 7):
        self.source_table, self.target, self.rows = source_table, target, rows
        pool = range(RESIDUE, rows + 1, 100)
        keys = random.Random(seed).sample(pool, sum(N_DIFFS.values()))
        kinds = [k for k, n in N_DIFFS.items() for _ in range(n)]
        random.Random(seed + 1).shuffle(kinds)          # the three kinds interleaved over the key range
        self.keys = {kind: sorted(k for k, kd in zip(keys, kinds, strict=True) if kd == kind) for kind in N_DIFFS}

    @property
    def held(self) -> str:
        return workload.held_name(self.source_table)

    def inject(self, sf_execute, columns: list[str]) -> None:
        """Target: the extra keys present (copies of the row before each, new key), the missing keys deleted,
        the different keys changed in one of four columns each (text, decimal, NULL, a microsecond).
        Source: the extra keys' rows moved aside."""
        t, k = self.target, self.keys
        cols = ", ".join(columns)
        copied = ", ".join("ID + 1" if c == "ID" else c for c in columns)
        diff = k["different"]
        changes = ["NAME = NAME || ' (drift)'", "AMOUNT = AMOUNT + 0.01",
                   "NOTE = CASE WHEN NOTE IS NULL THEN 'drift' END", "CREATED_AT = DATEADD(microsecond, 1, CREATED_AT)"]
        sf_execute(f"DELETE FROM {t} WHERE ID IN ({_ids(k['extra'])})",
                   f"INSERT INTO {t} ({cols}) SELECT {copied} FROM {t} WHERE ID IN ({_ids(e - 1 for e in k['extra'])})",
                   f"DELETE FROM {t} WHERE ID IN ({_ids(k['missing'])})",
                   *(f"UPDATE {t} SET {change} WHERE ID IN ({_ids(diff[i::4])})" for i, change in enumerate(changes)))
        conn = stack.pg_connect(workload.DATABASE)
        try:
            with conn, conn.cursor() as cur:        # one transaction
                src = f"{workload.SCHEMA}.{self.source_table}"
                cur.execute(f"CREATE TABLE {self.held} AS SELECT * FROM {src} WHERE id IN ({_ids(k['extra'])})")
                cur.execute(f"DELETE FROM {src} WHERE id IN ({_ids(k['extra'])})")
                assert cur.rowcount == len(k["extra"]), f"held {cur.rowcount} source rows, expected {len(k['extra'])}"
        finally:
            conn.close()

    def restore_source(self) -> None:
        workload.restore_held(self.source_table)

    def check_found(self, parsed: dict) -> str | None:
        """None when the run's VERIFY logged exactly these keys and its summary counts them."""
        found = parsed.get("verify_keys") or {}
        for kind, logged in (("missing", "missing_in_target"), ("extra", "extra_in_target"),
                             ("different", "different")):
            got = sorted(found.get(logged, []))
            if got != self.keys[kind]:
                wrong = sorted(set(got) ^ set(self.keys[kind]))[:5]
                return f"VERIFY logged {len(got)} {logged} keys, expected {len(self.keys[kind])} (first wrong: {wrong})"
        table = first_table(parsed)
        counts = {k: (table.get("verified") or {}).get(k) for k in N_DIFFS}
        if counts != N_DIFFS:
            return f"summary's verified counts {counts}, expected {N_DIFFS}"
        return None


class SourceDeletes:
    """``deletes: delete`` on the large table: ``n`` scattered source rows moved aside (``<table>_held``) before
    the run, so it finds and deletes exactly those keys, and put back after it. Keys of another residue than
    ``Drifts``' (and than the rows the INCREMENTAL case touches)."""

    def __init__(self, source_table: str, rows: int, n: int = 100, seed: int = 11):
        self.source_table, self.n = source_table, n
        self.keys = sorted(random.Random(seed).sample(range(33, rows + 1, 100), n))

    def hold(self) -> None:
        conn = stack.pg_connect(workload.DATABASE)
        try:
            with conn, conn.cursor() as cur:        # one transaction
                src = f"{workload.SCHEMA}.{self.source_table}"
                held = workload.held_name(self.source_table)
                cur.execute(f"CREATE TABLE {held} AS SELECT * FROM {src} WHERE id IN ({_ids(self.keys)})")
                cur.execute(f"DELETE FROM {src} WHERE id IN ({_ids(self.keys)})")
                assert cur.rowcount == self.n, f"held {cur.rowcount} source rows, expected {self.n}"
        finally:
            conn.close()

    def restore(self) -> None:
        workload.restore_held(self.source_table)


def expect_deleted(n: int, target_rows: int):
    """The run deleted exactly ``n`` target rows (the summary's count) and the target then holds the rest."""
    def check(parsed: dict, rc: int) -> str | None:
        table = first_table(parsed)
        rows = table.get("rows") or {}
        if rc != 0 or table.get("status") != "OK":
            return f"exit {rc}, status {table.get('status')}: {table.get('error')}"
        if (rows.get("deleted") or 0) != n or rows.get("target") != target_rows - n:
            return f"deleted {rows.get('deleted')}, target {rows.get('target')}: expected {n}, {target_rows - n}"
        return None
    return check


# ----- the job's summary and log -------------------------------------------------------------------------

# An integer key, or a hashed key's text whose first column is the integer ID ('12|345': ID 12, ACCOUNT_ID 345)
KEY_LINE = re.compile(r"step=verify (missing_in_target|extra_in_target|different) key=(-?\d+)")


def parse_verify_log(text: str) -> dict:
    """The JSON summary line and the differing keys VERIFY logged (up to 100 per run are logged)."""
    summary = None
    keys: dict[str, list[int]] = {}
    for line in text.splitlines():
        if line.startswith('{"type": "etl_run_summary"'):
            summary = json.loads(line)
        match = KEY_LINE.search(line)
        if match:
            keys.setdefault(match.group(1), []).append(int(match.group(2)))
    return {"summary": summary, "verify_keys": keys}


def first_table(parsed: dict) -> dict:
    tables = ((parsed.get("summary") or {}).get("tables")) or [{}]
    return tables[0]


def expect_no_drift(rows: int):
    def check(parsed: dict, rc: int) -> str | None:
        table = first_table(parsed)
        v = table.get("verified")
        if rc != 0 or table.get("status") != "OK":
            return f"exit {rc}, status {table.get('status')}: {table.get('error')}"
        if not v or v.get("mismatched") != 0 or v.get("rows") != rows:
            return f"verified {v}, expected 0 mismatched of {rows}"
        return None
    return check


def expect_drifts(drifts: Drifts, repair: bool):
    """REPAIR: the 100 keys found exactly, all reloaded or deleted, none remaining, status OK.
    VERIFY only: the 100 keys found exactly, status DRIFT."""
    def check(parsed: dict, rc: int) -> str | None:
        found = drifts.check_found(parsed)
        if found:
            return found
        table = first_table(parsed)
        if not repair:
            return None if table.get("status") == "DRIFT" else f"status {table.get('status')}, expected DRIFT"
        r = table.get("repair") or {}
        want = {"reloaded": N_DIFFS["missing"] + N_DIFFS["different"], "deleted": N_DIFFS["extra"], "remaining": 0}
        got = {k: r.get(k) for k in want}
        if got != want or table.get("status") != "OK" or rc != 0:
            return f"repair {r}, status {table.get('status')}, exit {rc}: expected {want} and OK"
        return None
    return check


# ----- the pushed-down SQL -------------------------------------------------------------------------------


def sql_kind(sql: str) -> str | None:
    if re.search(r" AS rh(, .* AS kt)? FROM ", sql):      # kt: a hashed key's text
        return "key_hashes"
    if "COUNT(*) AS n" in sql and "GROUP BY" in sql:
        return "fingerprint"
    if " AS lo, MAX(" in sql:
        return "bounds"
    if re.search(r" AS k FROM .* IN \(.*\) AND NOT \(", sql):
        return "changed_since_load"
    return None


def sql_summary(statements: list[dict]) -> dict:
    """kind -> {n, seconds (sum), max_s, sql (the first one)}; 'all' sums every statement of the run."""
    out: dict[str, dict] = {"all": {"n": len(statements), "seconds": round(sum(s["seconds"] for s in statements), 3)}}
    for s in statements:
        kind = sql_kind(s["sql"])
        if kind is None:
            continue
        agg = out.setdefault(kind, {"n": 0, "seconds": 0.0, "max_s": 0.0, "sql": s["sql"]})
        agg["n"] += 1
        agg["seconds"] = round(agg["seconds"] + s["seconds"], 3)
        agg["max_s"] = round(max(agg["max_s"], s["seconds"]), 3)
    return out


def snowflake_statements(record: Path) -> list[dict]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


PG_DURATION = re.compile(r"LOG:  duration: ([\d.]+) ms  execute [^:]*: (.*)$")


class PgStatements:
    """Statement logging on database ``bench`` for the VERIFY cases; ``since(offset)`` reads one run's."""

    def __init__(self):
        self.log = stack.Postgres().log

    def _set(self, value: str) -> None:
        conn = stack.pg_connect(workload.DATABASE)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f"ALTER DATABASE {workload.DATABASE} SET log_min_duration_statement = {value}")
        finally:
            conn.close()

    def __enter__(self) -> PgStatements:
        self._set("0")
        return self

    def __exit__(self, *exc) -> None:
        self._set("DEFAULT")

    def offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def since(self, offset: int) -> list[dict]:
        with open(self.log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
        return [{"sql": m.group(2), "seconds": float(m.group(1)) / 1000}
                for m in map(PG_DURATION.search, text.splitlines()) if m]
