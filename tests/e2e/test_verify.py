"""VERIFY (issue 15): after a load the fidelity (torture) tables verify with 0 mismatches, and drift put
straight into the target - a row deleted, a row added, one value changed in every column, an update the
timestamp mode missed - is reported key by key, exactly. Both source engines."""

from __future__ import annotations

import re

import pytest

from local import stack
from tests.e2e import helpers as h
from tests.e2e.test_fidelity import MY_DDL, MY_ROWS, PG_DDL, PG_ROWS, with_texts

TABLES = ("clean", "drift")
KEYS = re.compile(r"step=verify (missing_in_target|extra_in_target|different) key=(\d+)")
# A value of each target type, written over a row's value (NULL in the text rows 100..) to make drift.
NEW_VALUES = {"NUMBER": "0", "FLOAT": "2.5", "TEXT": "'x'", "DATE": "'2020-01-01'",
              "TIMESTAMP_NTZ": "'2020-01-01 00:00:00'", "TIMESTAMP_TZ": "'2020-01-01 00:00:00'",
              "BOOLEAN": "TRUE", "BINARY": "TO_BINARY('00', 'HEX')"}


def registry() -> dict:
    entries = {}
    for group, prefix in (("AFFILIATE", "PG"), ("PROGRAM360", "MY")):
        for t in TABLES:
            entries[(prefix, f"verify.{t}")] = {
                "ssmKey": group, "target_table": f"VERIFY.{prefix}_{t.upper()}", "primary_key": "ID",
                "timestamp_column": "UPDATED_AT", "operations": {"type": "INCREMENTAL"}}
    return entries


def run(tmp, prefix: str, name: str, *extra: str):
    tables = {k: v for (p, k), v in registry().items() if p == prefix}
    return h.run_job(tmp, tables, *extra, job_name=f"e2e-verify-{prefix}-{name}")


def reported(proc, table: str) -> dict[str, set[int]]:
    """The keys VERIFY logged for ``table``, by what it found."""
    out: dict[str, set[int]] = {"missing_in_target": set(), "extra_in_target": set(), "different": set()}
    for line in proc.stdout.splitlines():
        if f"table={table} " in line and (m := KEYS.search(line)):
            out[m.group(1)].add(int(m.group(2)))
    return out


def target_types(target: str) -> dict[str, str]:
    schema, table = target.split(".")
    rows = h.sf_query(f"SELECT COLUMN_NAME, DATA_TYPE FROM ETL_DB.INFORMATION_SCHEMA.COLUMNS "
                      f"WHERE TABLE_SCHEMA = '{schema}' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION")
    return {name: str(t).upper() for name, t in rows}


@pytest.fixture(scope="module")
def sources(stack_env):
    h.reset_target_schema("VERIFY")
    pg_rows, my_rows = with_texts(PG_ROWS, 8), with_texts(MY_ROWS, 7)
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS verify CASCADE; CREATE SCHEMA verify")
        for t in TABLES:
            cur.execute(PG_DDL.replace("torture.", "verify.").format(t=t))
            cur.executemany(f"INSERT INTO verify.{t} VALUES ({', '.join(['%s'] * 15)})", pg_rows)
            # Distinct timestamps: only the newest row sits at the watermark (read again by the next run).
            cur.execute(f"UPDATE verify.{t} SET updated_at = TIMESTAMP '2026-01-01' + id * INTERVAL '1 second'")
    with h.mysql_cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS verify")
        cur.execute("CREATE DATABASE verify CHARACTER SET utf8mb4")
        cur.execute("SET time_zone = '+00:00'")
        for t in TABLES:
            cur.execute(MY_DDL.replace("torture.", "verify.").format(t=t))
            cur.executemany(f"INSERT INTO verify.{t} VALUES ({', '.join(['%s'] * 17)}, DEFAULT)", my_rows)
            cur.execute(f"UPDATE verify.{t} SET updated_at = TIMESTAMP '2026-01-01 00:00:00' + INTERVAL id SECOND")
    return {"PG": len(pg_rows), "MY": len(my_rows)}


@pytest.mark.parametrize("prefix", ["PG", "MY"])
def test_verify_finds_no_drift_after_a_load_then_every_drift_exactly(sources, tmp_path, prefix):
    first = run(tmp_path, prefix, "load", "--VERIFY", "true")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    rows = h.summary(first)
    for t in TABLES:
        assert rows[f"verify.{t}"]["status"] == "OK"
        assert f"verify.{t}: VERIFY 0 mismatched of {sources[prefix]} rows" in first.stdout, first.stdout[-3000:]
    assert h.metric(f"e2e-verify-{prefix}-load", "verify.drift", "VerifiedRows") == sources[prefix]
    assert h.metric(f"e2e-verify-{prefix}-load", "verify.drift", "MismatchedRows") == 0

    target = f"VERIFY.{prefix}_DRIFT"
    types = target_types(target)
    columns = [c for c in types if c not in ("ID", "UPDATED_AT")]
    changes = [f"DELETE FROM ETL_DB.{target} WHERE ID = 2",
               f"INSERT INTO ETL_DB.{target} (ID, UPDATED_AT) VALUES (999, '2026-01-01 00:00:01')"]
    different = set()
    for i, col in enumerate(columns):          # NULL -> a value, one column per text row
        changes.append(f'UPDATE ETL_DB.{target} SET "{col}" = {NEW_VALUES[types[col]]} WHERE ID = {100 + i}')
        different.add(100 + i)
    if prefix == "PG":                         # subtle ones: 0 -> -0.0, a microsecond, '' -> NULL
        changes += [f"UPDATE ETL_DB.{target} SET F8 = '-0'::FLOAT WHERE ID = 3",
                    f"UPDATE ETL_DB.{target} SET TS = '1900-01-01 00:00:00' WHERE ID = 1",
                    f"UPDATE ETL_DB.{target} SET DEC_TINY = 0.00002 WHERE ID = 5",
                    f"UPDATE ETL_DB.{target} SET TXT = NULL WHERE ID = 115"]
        different |= {3, 1, 5, 115}
    else:
        changes += [f"UPDATE ETL_DB.{target} SET U64 = 18446744073709551614 WHERE ID = 1",
                    f"UPDATE ETL_DB.{target} SET DT6 = '1582-10-04 23:59:59.999998' WHERE ID = 4",
                    f"UPDATE ETL_DB.{target} SET TXT = NULL WHERE ID = 115"]
        different |= {1, 4, 115}
    h.sf_execute(*changes)
    # An update the timestamp mode misses: the value changes, updated_at does not.
    if prefix == "PG":
        with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
            cur.execute("UPDATE verify.drift SET txt = 'missed' WHERE id = 6")
    else:
        with h.mysql_cursor() as cur:
            cur.execute("UPDATE verify.drift SET txt = 'missed' WHERE id = 6")
    different.add(6)

    second = run(tmp_path, prefix, "verify", "--VERIFY", "true")
    assert second.returncode == 1, second.stdout[-4000:]
    rows = h.summary(second)
    assert rows["verify.clean"]["status"] == "OK"
    assert rows["verify.drift"]["status"] == "DRIFT"
    found = reported(second, "verify.drift")
    assert found == {"missing_in_target": {2}, "extra_in_target": {999}, "different": different}, found
    n = 1 + 1 + len(different)
    assert (f"verify.drift: VERIFY {n} mismatched of {sources[prefix]} rows (missing 1, extra 1, "
            f"different {len(different)})") in second.stdout
    assert reported(second, "verify.clean") == {"missing_in_target": set(), "extra_in_target": set(),
                                                "different": set()}
    assert h.metric(f"e2e-verify-{prefix}-verify", "verify.drift", "MismatchedRows") == n


def test_rows_changed_after_the_load_are_not_drift_and_unknown_types_are_refused(stack_env, tmp_path):
    """The watermark bound: VERIFY runs after the load while the source changes (the job is paused after
    its load step); a row updated and one inserted since are not drift, a missed update is. A column type
    without a canonical form fails VERIFY naming it (per-table ``verify`` setting)."""
    from tests.e2e.test_concurrency import Job

    h.reset_target_schema("VERIFYW")
    h.recreate_pg_schema("verifyw", ["t"])
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO verifyw.t SELECT g, 'v' || g, TIMESTAMP '2026-01-01' + g * INTERVAL '1 second' "
                    "FROM generate_series(1, 50) g")
        cur.execute("CREATE TABLE verifyw.timed (id int PRIMARY KEY, t time, updated_at timestamp(6))")
        cur.execute("INSERT INTO verifyw.timed VALUES (1, '12:00:00', '2026-01-01')")
    tables = {f"verifyw.{n}": {"ssmKey": "AFFILIATE", "target_table": f"VERIFYW.{n.upper()}", "primary_key": "ID",
                               "timestamp_column": "UPDATED_AT", "operations": {"type": "INCREMENTAL"},
                               "verify": True} for n in ("t", "timed")}
    job = Job(h.job_command(tmp_path, tables, job_name="e2e-verify-bound",
                            launcher=["tests/e2e/pause_at.py", "load", "verifyw.t"]))
    job.wait_for("PAUSED verifyw.t")
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("UPDATE verifyw.t SET v = 'later', updated_at = '2027-01-01' WHERE id = 10")
        cur.execute("INSERT INTO verifyw.t VALUES (51, 'new', '2027-01-01')")
        cur.execute("UPDATE verifyw.t SET v = 'missed' WHERE id = 20")       # keeps its timestamp
    job.release()
    assert job.proc.wait(timeout=300) == 1
    out = "".join(job.lines)
    proc = type("P", (), {"stdout": out})()
    rows = h.summary(proc)
    assert rows["verifyw.t"]["status"] == "DRIFT", out[-3000:]
    assert reported(proc, "verifyw.t") == {"missing_in_target": set(), "extra_in_target": set(), "different": {20}}
    # 49 rows compared: id 10 changed after the watermark (and 51 is new), so the bound leaves them out
    assert ("verifyw.t: VERIFY 1 mismatched of 49 rows (missing 0, extra 0, different 1; 1 changed since the "
            "last load, not compared)") in out
    assert rows["verifyw.timed"]["status"] == "FAILED"
    assert ("verifyw.timed: VERIFY cannot compare this table (its load committed): column t: source type "
            "time without time zone has no canonical form for VERIFY yet") in out
