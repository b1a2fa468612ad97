"""VERIFY (issue 15): after a load the fidelity (torture) tables - their base and extra columns, every type
they hold - verify with 0 mismatches, and drift put straight into the target - a row deleted, a row added,
one value changed in every column, subtle changes (a microsecond, a cent, a trailing blank, an array's null
element), an update the timestamp mode missed - is reported key by key, exactly. Both source engines."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from local import stack
from tests.e2e import helpers as h
from tests.e2e import test_fidelity as fid

TABLES = ("clean", "drift")
KEYS = re.compile(r"step=verify (missing_in_target|extra_in_target|different) key=(\d+)")
# A value of each target type, written over the value of row 1's copy (COLUMN_ROWS) to make drift: none
# of them is the value row 1 holds (its booleans are TRUE).
NEW_VALUES = {"NUMBER": "0", "FLOAT": "2.5", "TEXT": "'x'", "DATE": "'2020-01-01'",
              "TIMESTAMP_NTZ": "'2020-01-01 00:00:00'", "TIMESTAMP_TZ": "'2020-01-01 00:00:00'",
              "BOOLEAN": "FALSE", "BINARY": "TO_BINARY('00', 'HEX')", "TIME": "'01:02:03'",
              "VARIANT": "PARSE_JSON('[7]')"}
# Copies of row 1 (base and extra columns): column i of the target changes in row COLUMN_ROWS + i, and
# the j-th subtle change in row SUBTLE_ROWS + j. Row LAST_ROW, the newest, sits at the watermark: the next
# INCREMENTAL run reads it again, so it is never changed.
COLUMN_ROWS, SUBTLE_ROWS, LAST_ROW = 200, 300, 400
# Subtle changes of row 1's values, in the extra columns: (column, new value).
SUBTLE = {
    "PG": [("T6", "'23:59:59.999998'"), ("TTZ", "'12:00:00.123456+05:00'"), ("M", "1234.57"),
           ("NFREE", "12345678901234567890.123456789012345677"), ("C5", "'ab '"),
           ("U", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'"),
           ("IP", "'192.168.0.1/25'"), ("IV", "'1 year 2 mons 3 days 04:05:06.788'"), ("IA", "PARSE_JSON('[1,2]')"),
           ("TA", "PARSE_JSON('[\"a\",\"b\",null]')"), ("X", "'<a b=\"1\">t &amp; v</a>'"), ("VB", "'1011'"),
           ("B5", "'10111'")],
    "MY": [("FLAG", "1"), ("DUR", "'-838:59:59.000000'"), ("Y", "2023"), ("B64", "18446744073709551614"),
           ("TU", "254"), ("MU", "16777214"), ("IU", "4294967294"), ("ST", "'a,b'"),
           ("D65", "12345678.123456789012345678901234567891"), ("L1", "'é ü ß y'"), ("CH", "'ab '")],
}


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


def torture_rows(rows: list[tuple], text_index: int, base: list[str], extra: list[tuple], prefix: str
                 ) -> tuple[list[str], list[tuple]]:
    """The fidelity table's columns (smallserial left to its default) and rows, then the copies of row 1."""
    full = fid.with_extra(fid.with_texts(rows, text_index), extra)
    columns = len(base) - 1 + len(extra)                       # the target's columns but ID and UPDATED_AT
    copies = [(COLUMN_ROWS + i, *full[0][1:]) for i in range(columns)]
    copies += [(SUBTLE_ROWS + j, *full[0][1:]) for j in range(len(SUBTLE[prefix]))] + [(LAST_ROW, *full[0][1:])]
    return base + [n for n, _, v in extra if v is not None], full + copies


def create_torture_tables(pg_schema: str, my_database: str, tables: Sequence[str]) -> dict[str, int]:
    """The torture tables ``tables`` (base and extra columns, with the copies of row 1) in PostgreSQL schema
    ``pg_schema`` and MySQL database ``my_database``, both created anew; their row counts by engine."""
    pg_cols, pg_rows = torture_rows(fid.PG_ROWS, 8, fid.PG_BASE, fid.PG_EXTRA, "PG")
    my_cols, my_rows = torture_rows(fid.MY_ROWS, 7, fid.MY_BASE, fid.MY_EXTRA, "MY")
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {pg_schema} CASCADE; CREATE SCHEMA {pg_schema}")
        for t in tables:
            cur.execute(fid.ddl(fid.PG_DDL.replace("torture.", f"{pg_schema}.").format(t=t), fid.PG_EXTRA))
            fid.insert(cur, f"{pg_schema}.{t}", pg_cols, pg_rows)
            # Distinct timestamps: only the newest row sits at the watermark (read again by the next run).
            cur.execute(f"UPDATE {pg_schema}.{t} SET updated_at = TIMESTAMP '2026-01-01' + id * INTERVAL '1 second'")
    with h.mysql_cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {my_database}")
        cur.execute(f"CREATE DATABASE {my_database} CHARACTER SET utf8mb4")
        cur.execute("SET time_zone = '+00:00'")
        for t in tables:
            cur.execute(fid.ddl(fid.MY_DDL.replace("torture.", f"{my_database}.").format(t=t), fid.MY_EXTRA))
            fid.insert(cur, f"{my_database}.{t}", my_cols, my_rows)
            cur.execute(f"UPDATE {my_database}.{t} SET updated_at = TIMESTAMP '2026-01-01 00:00:00' "
                        f"+ INTERVAL id SECOND")
    return {"PG": len(pg_rows), "MY": len(my_rows)}


@pytest.fixture(scope="module")
def sources(stack_env):
    h.reset_target_schema("VERIFY")
    return create_torture_tables("verify", "verify", TABLES)


def put_drift(prefix: str, target: str, source: str) -> set[int]:
    """Drift straight into ``target`` (a loaded torture table): row 2 deleted, row 999 added, every column
    changed in its own copy of row 1, the subtle changes, and at ``source`` an update the timestamp mode
    misses (row 6). Returns the keys whose rows now differ."""
    types = target_types(target)
    columns = [c for c in types if c not in ("ID", "UPDATED_AT")]
    base, extra = (fid.PG_BASE, fid.PG_EXTRA) if prefix == "PG" else (fid.MY_BASE, fid.MY_EXTRA)
    assert set(columns) == {c.upper() for c in base[1:]} | {n.upper() for n, _, _ in extra}, columns
    assert {types[c] for c in columns} >= ({"TIME", "VARIANT"} if prefix == "PG" else {"BOOLEAN", "NUMBER"})
    changes = [f"DELETE FROM ETL_DB.{target} WHERE ID = 2",
               f"INSERT INTO ETL_DB.{target} (ID, UPDATED_AT) VALUES (999, '2026-01-01 00:00:01')"]
    different = set()
    for i, col in enumerate(columns):          # one column per copy of row 1, each to a value of its type
        changes.append(f'UPDATE ETL_DB.{target} SET "{col}" = {NEW_VALUES[types[col]]} WHERE ID = {COLUMN_ROWS + i}')
        different.add(COLUMN_ROWS + i)
    for j, (col, value) in enumerate(SUBTLE[prefix]):
        changes.append(f'UPDATE ETL_DB.{target} SET "{col}" = {value} WHERE ID = {SUBTLE_ROWS + j}')
        different.add(SUBTLE_ROWS + j)
    # NULL -> the text 'N' (the row hash's NULL mark): row 100 holds a nasty text and NULL elsewhere
    changes.append(f"UPDATE ETL_DB.{target} SET JS = 'N' WHERE ID = 100")
    different.add(100)
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
            cur.execute(f"UPDATE {source} SET txt = 'missed' WHERE id = 6")
    else:
        with h.mysql_cursor() as cur:
            cur.execute(f"UPDATE {source} SET txt = 'missed' WHERE id = 6")
    return different | {6}


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

    different = put_drift(prefix, f"VERIFY.{prefix}_DRIFT", "verify.drift")

    second = run(tmp_path, prefix, "verify", "--VERIFY", "true")
    assert second.returncode == 1, second.stdout[-4000:]
    rows = h.summary(second)
    assert rows["verify.clean"]["status"] == "OK"
    assert rows["verify.drift"]["status"] == "DRIFT"
    found = reported(second, "verify.drift")
    assert found == {"missing_in_target": {2}, "extra_in_target": {999}, "different": different}, \
        (found, "not reported:", different - found["different"], "reported:", found["different"] - different)
    n = 1 + 1 + len(different)
    assert (f"verify.drift: VERIFY {n} mismatched of {sources[prefix]} rows (missing 1, extra 1, "
            f"different {len(different)})") in second.stdout
    assert reported(second, "verify.clean") == {"missing_in_target": set(), "extra_in_target": set(),
                                                "different": set()}
    assert h.metric(f"e2e-verify-{prefix}-verify", "verify.drift", "MismatchedRows") == n


def test_rows_changed_after_the_load_are_not_drift_and_unknown_types_are_refused(stack_env, tmp_path):
    """The watermark bound: VERIFY runs after the load while the source changes (the job is paused after
    its load step); a row updated and one inserted since are not drift, a missed update is. A column type
    without a canonical form (PostgreSQL point, loaded as its text) fails VERIFY naming it (per-table
    ``verify`` setting)."""
    from tests.e2e.test_concurrency import Job

    h.reset_target_schema("VERIFYW")
    h.recreate_pg_schema("verifyw", ["t"])
    with stack.pg_connect("affiliate") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO verifyw.t SELECT g, 'v' || g, TIMESTAMP '2026-01-01' + g * INTERVAL '1 second' "
                    "FROM generate_series(1, 50) g")
        cur.execute("CREATE TABLE verifyw.spot (id int PRIMARY KEY, p point, updated_at timestamp(6))")
        cur.execute("INSERT INTO verifyw.spot VALUES (1, '(1.5,2)', '2026-01-01')")
    tables = {f"verifyw.{n}": {"ssmKey": "AFFILIATE", "target_table": f"VERIFYW.{n.upper()}", "primary_key": "ID",
                               "timestamp_column": "UPDATED_AT", "operations": {"type": "INCREMENTAL"},
                               "verify": True} for n in ("t", "spot")}
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
    assert rows["verifyw.spot"]["status"] == "FAILED"
    assert ("verifyw.spot: VERIFY cannot compare this table (its load committed): column p: source type "
            "point has no canonical form for VERIFY yet") in out
    assert h.sf_query('SELECT "P" FROM ETL_DB.VERIFYW.SPOT') == [("(1.5,2)",)]     # loaded: only VERIFY refused
