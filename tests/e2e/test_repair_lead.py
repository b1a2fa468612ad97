"""REPAIR of a hashed key whose first column is an integer (issue 15 item 3; ``lead_in_sql``): the source rows of
the differing keys are read again through the key's index - the rows of the keys' first values, among them the
rows of the keys' hashes - not by a scan of the whole source with an MD5 per row. Both engines: drift put into
the target (a row deleted, a value changed, an extra key whose first value the source has under another
region, an extra key it lacks) is reported and repaired, after which the target equals the source value by
value. PostgreSQL's own statistics show the repair run, and only it, used an index of the source table;
MariaDB's EXPLAIN shows the narrowed read is a range of its primary key."""

from __future__ import annotations

import time

import pytest

import glue_etl_job as g
from local import stack
from tests.e2e import helpers as h

PREFIX = {"postgres": "PG", "mysql": "MY"}
REGIONS = ("eu", "us")
ROWS = 20_000          # enough that either planner prefers the key's index to a scan for a few keys


def create_source(engine: str) -> None:
    h.fresh_source_schema(engine, "vlead", "utf8mb4_bin")
    ts = "timestamp(6)" if engine == "postgres" else "datetime(6)"
    h.source_sql(engine, "vlead",
                 f"CREATE TABLE vlead.items (id int, region varchar(10), v text, updated_at {ts}, "
                 f"PRIMARY KEY (id, region))",
                 many=("INSERT INTO vlead.items VALUES (%s, %s, %s, '2026-01-01 00:00:00')",
                       [(i, r, f"v{i}{r}") for i in range(1, ROWS // 2 + 1) for r in REGIONS]))
    h.source_sql(engine, "vlead", "ANALYZE vlead.items" if engine == "postgres" else "ANALYZE TABLE vlead.items")


def run(tmp, engine: str, name: str, *extra: str):
    prefix = PREFIX[engine]
    registry = {"vlead.items": {"ssmKey": {"PG": "AFFILIATE", "MY": "PROGRAM360"}[prefix],
                                "target_table": f"VLEAD.{prefix}_ITEMS", "primary_key": ["ID", "REGION"],
                                "timestamp_column": "UPDATED_AT", "operations": {"type": "INCREMENTAL"}}}
    return h.run_job(tmp, registry, *extra, job_name=f"e2e-vlead-{prefix}-{name}")


def pg_index_scans() -> int:
    """Index scans of vlead.items as PostgreSQL counts them, once the job's sessions (ended) have reported."""
    conn = stack.pg_connect("affiliate")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute("SELECT idx_scan FROM pg_stat_user_tables WHERE schemaname = 'vlead' AND relname = 'items'")
            return int(cur.fetchone()[0] or 0)
    finally:
        conn.close()


def settled_index_scans() -> int:
    """The count once it stops moving: a session reports its counts at its end or within a second or so."""
    last, same = pg_index_scans(), 0
    while same < 3:
        time.sleep(0.5)
        now = pg_index_scans()
        same, last = (same + 1, last) if now == last else (0, now)
    return last


def narrowed_read(engine: str, keys: list[str]) -> str:
    """The predicate REPAIR reads these keys again by, from the job's own plan of the source's columns."""
    query = g.column_types_query(engine, "vlead", "items")
    if engine == "postgres":
        conn = stack.pg_connect("affiliate")
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                rows = [dict(zip([d[0] for d in cur.description], r, strict=True)) for r in cur.fetchall()]
        finally:
            conn.close()
    else:
        with h.mysql_cursor("vlead") as cur:
            cur.execute(query)
            rows = [dict(zip([d[0] for d in cur.description], r, strict=True)) for r in cur.fetchall()]
    facts = g.source_columns(rows)
    target = {"ID": "NUMBER(38,0)", "REGION": "VARCHAR(10)", "V": "VARCHAR", "UPDATED_AT": "TIMESTAMP_NTZ(6)"}
    config = g.build_table_config("vlead.items", {"ssmKey": "AFFILIATE", "target_table": "VLEAD.T",
                                                  "primary_key": ["ID", "REGION"], "operations": {"type": "UPSERT"}})
    p = g.verify_plan(engine, config, facts, target)
    assert p.src_lead == g.source_quote(engine, "id") and not p.problems
    return f"{g.lead_in_sql(p.src_lead, keys)} AND {p.src_key} IN (1, 2, 3)"


@pytest.fixture(scope="module")
def target(stack_env):
    h.reset_target_schema("VLEAD")


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_repair_reads_a_hashed_key_through_its_first_column(target, tmp_path, engine):
    create_source(engine)
    prefix = PREFIX[engine]
    first = run(tmp_path, engine, "load", "--VERIFY", "true")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert f"vlead.items: VERIFY 0 mismatched of {ROWS} rows" in first.stdout
    items = f"ETL_DB.VLEAD.{prefix}_ITEMS"
    h.sf_execute(f"DELETE FROM {items} WHERE ID = 7 AND REGION = 'eu'",
                 f"UPDATE {items} SET V = 'changed' WHERE ID = 300 AND REGION = 'us'",
                 f"INSERT INTO {items} VALUES (9000, 'zz', 'extra', '2026-01-01 00:00:00')",
                 f"INSERT INTO {items} VALUES (99999, 'eu', 'extra', '2026-01-01 00:00:00')")

    before = settled_index_scans() if engine == "postgres" else 0
    proc = run(tmp_path, engine, "verify", "--LOAD", "false", "--VERIFY", "true")
    assert proc.returncode == 1, proc.stdout[-4000:]
    assert f"vlead.items: VERIFY 4 mismatched of {ROWS} rows (missing 1, extra 2, different 1)" in proc.stdout
    for kind, key in (("missing_in_target", "7|2:eu"), ("different", "300|2:us"), ("extra_in_target", "9000|2:zz"),
                      ("extra_in_target", "99999|2:eu")):
        assert f"step=verify {kind} key={key}" in proc.stdout
    verified = settled_index_scans() if engine == "postgres" else 0
    assert verified == before, "VERIFY alone compares by the key's hash: no index of the source serves it"

    proc = run(tmp_path, engine, "repair", "--LOAD", "false", "--REPAIR", "true")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert ("vlead.items: REPAIR 4 key(s): 2 row(s) written from the source, 2 deleted; the repaired ranges now "
            "match") in proc.stdout
    if engine == "postgres":     # the re-read went through the index of the key (the primary key's)
        assert settled_index_scans() > verified
    h.assert_same_rows(h.source_rows(engine, "vlead", "items"), sorted(h.sf_query(f"SELECT * FROM {items}")),
                       "after REPAIR")

    read = narrowed_read(engine, ["7|2:eu", "300|2:us", "9000|2:zz", "99999|2:eu"])
    if engine == "mysql":        # MariaDB: the narrowed read is a range of the primary key, not a scan
        with h.mysql_cursor("vlead") as cur:
            cur.execute(f"EXPLAIN SELECT * FROM vlead.items WHERE {read}")
            plan = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
        assert (plan["type"], plan["key"]) == ("range", "PRIMARY"), plan
    else:
        conn = stack.pg_connect("affiliate")
        try:
            with conn.cursor() as cur:
                cur.execute(f"EXPLAIN SELECT * FROM vlead.items WHERE {read}")
                text = "\n".join(r[0] for r in cur.fetchall())
        finally:
            conn.close()
        assert "items_pkey" in text and "Seq Scan" not in text, text
