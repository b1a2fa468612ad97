"""REPAIR of a hashed key whose first column is an integer or a text (issue 15 item 3; ``lead_in_sql``): the source
rows of the differing keys are read again through the key's index - the rows of the keys' first values, among them
the rows of the keys' hashes - not by a scan of the whole source with an MD5 per row. Both engines, three keys:
(id int, region) - an extra key whose id the source has under another region among the drift -, a VARCHAR key
whose values hold quotes, a backslash, '|', ':', '$', '?', 'é' and the empty string, and on PostgreSQL a UUID
key (an extra key that is no uuid among its drift: left out of the narrowing, deleted); on MariaDB a latin1 key,
not narrowed (the target's extra '日本' in a literal list is an "Illegal mix of collations").
Drift put into the target is reported and repaired, after which the target equals the source value by value.
PostgreSQL's own statistics show the repair run, and not the VERIFY run before it, used each source table's
index; MariaDB's EXPLAIN shows the narrowed reads are ranges of the primary key."""

from __future__ import annotations

import time
import uuid

import pytest

import glue_etl_job as g
from local import stack
from tests.e2e import helpers as h

PREFIX = {"postgres": "PG", "mysql": "MY"}
ROWS = 20_000          # enough that either planner prefers the key's index to a scan for a few keys
CODES = ["", "it's", "a\\b", "a|b", "é", "1:ab", "$k$", "x?y"]
TS = "'2026-01-01 00:00:00'"


def uid(i: int) -> str:
    return str(uuid.UUID(int=i * 7919))


def tables(engine: str) -> dict[str, dict]:
    """name -> its DDL columns, rows, primary_key, the drift put into the target, what VERIFY then finds (missing,
    extra, different), some of the keys it reports (whose narrowed read is EXPLAINed) and whether it is narrowed."""
    ts = "timestamp(6)" if engine == "postgres" else "datetime(6)"
    out = {
        "items": {"ddl": f"id int, region varchar(10), v text, updated_at {ts}, PRIMARY KEY (id, region)",
                  "rows": [(i, r, f"v{i}{r}") for i in range(1, ROWS // 2 + 1) for r in ("eu", "us")],
                  "key": ["ID", "REGION"],
                  "drift": ["DELETE FROM {t} WHERE ID = 7 AND REGION = 'eu'",
                            "UPDATE {t} SET V = 'changed' WHERE ID = 300 AND REGION = 'us'",
                            f"INSERT INTO {{t}} VALUES (9000, 'zz', 'extra', {TS})",
                            f"INSERT INTO {{t}} VALUES (99999, 'eu', 'extra', {TS})"],
                  "found": (1, 2, 1), "keys": ["7|2:eu", "300|2:us", "9000|2:zz", "99999|2:eu"]},
        "codes": {"ddl": f"code varchar(40) PRIMARY KEY, v text, updated_at {ts}",
                  "rows": [(c, f"v{n}") for n, c in enumerate(CODES + [f"c{i}" for i in range(ROWS - len(CODES))])],
                  "key": "CODE",
                  "drift": ["DELETE FROM {t} WHERE CODE IN ('it''s', '')",
                            "UPDATE {t} SET V = 'changed' WHERE CODE IN ('a\\\\b', 'é', '$k$')",
                            f"INSERT INTO {{t}} VALUES ('zz''', 'extra', {TS})"],
                  "found": (2, 1, 3), "keys": ["4:it's", "0:", "3:a\\b", "2:é", "3:$k$", "3:zz'"]},
    }
    if engine == "mysql":       # a latin1 key is not narrowed: the target's '日本' would be an error in a literal
        out["latin"] = {"ddl": f"code varchar(20) CHARACTER SET latin1 PRIMARY KEY, v text, updated_at {ts}",
                        "rows": [(c, f"v{n}") for n, c in enumerate(["é"] + [f"c{i}" for i in range(ROWS - 1)])],
                        "key": "CODE", "narrowed": False,
                        "drift": ["DELETE FROM {t} WHERE CODE = 'c5'", "UPDATE {t} SET V = 'changed' WHERE CODE = 'é'",
                                  f"INSERT INTO {{t}} VALUES ('日本', 'extra', {TS})"],
                        "found": (1, 1, 1), "keys": []}
    if engine == "postgres":
        out["uuids"] = {"ddl": f"id uuid PRIMARY KEY, v text, updated_at {ts}",
                        "rows": [(uid(i), f"v{i}") for i in range(1, ROWS + 1)], "key": "ID",
                        "drift": [f"DELETE FROM {{t}} WHERE ID = '{uid(5)}'",
                                  f"UPDATE {{t}} SET V = 'changed' WHERE ID = '{uid(6)}'",
                                  f"INSERT INTO {{t}} VALUES ('{uid(ROWS + 1)}', 'extra', {TS})",
                                  f"INSERT INTO {{t}} VALUES ('not-a-uuid', 'extra', {TS})"],
                        "found": (1, 2, 1), "keys": [f"36:{uid(5)}", f"36:{uid(6)}", f"36:{uid(ROWS + 1)}"]}
    return out


def create_sources(engine: str) -> None:
    h.fresh_source_schema(engine, "vlead", "utf8mb4_bin")
    for name, t in tables(engine).items():
        marks = ", ".join(["%s"] * len(t["rows"][0]))
        h.source_sql(engine, "vlead", f"CREATE TABLE vlead.{name} ({t['ddl']})",
                     many=(f"INSERT INTO vlead.{name} VALUES ({marks}, {TS})", t["rows"]))
        h.source_sql(engine, "vlead", f"ANALYZE {'' if engine == 'postgres' else 'TABLE '}vlead.{name}")


def target(engine: str, name: str) -> str:
    return f"ETL_DB.VLEAD.{PREFIX[engine]}_{name.upper()}"


def run(tmp, engine: str, name: str, *extra: str):
    group = {"postgres": "AFFILIATE", "mysql": "PROGRAM360"}[engine]
    registry = {f"vlead.{n}": {"ssmKey": group, "target_table": target(engine, n).removeprefix("ETL_DB."),
                               "primary_key": t["key"], "timestamp_column": "UPDATED_AT",
                               "operations": {"type": "INCREMENTAL"}} for n, t in tables(engine).items()}
    return h.run_job(tmp, registry, *extra, job_name=f"e2e-vlead-{PREFIX[engine]}-{name}")


def pg_index_scans() -> dict[str, int]:
    """Index scans of each vlead table as PostgreSQL counts them."""
    conn = stack.pg_connect("affiliate")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute("SELECT relname, idx_scan FROM pg_stat_user_tables WHERE schemaname = 'vlead'")
            return {name: int(n or 0) for name, n in cur.fetchall()}
    finally:
        conn.close()


def settled_index_scans() -> dict[str, int]:
    """The counts once they stop moving: a session reports its counts at its end or within a second or so."""
    last, same = pg_index_scans(), 0
    while same < 3:
        time.sleep(0.5)
        now = pg_index_scans()
        same, last = (same + 1, last) if now == last else (0, now)
    return last


def narrowed_read(engine: str, name: str, keys: list[str]) -> str:
    """The predicate REPAIR reads these keys again by, from the job's own plan of the source's columns."""
    query = g.column_types_query(engine, "vlead", name)
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
    types = {"int": "NUMBER(38,0)", "varchar": "VARCHAR", "character varying": "VARCHAR", "text": "VARCHAR",
             "uuid": "VARCHAR", "timestamp without time zone": "TIMESTAMP_NTZ(6)", "datetime": "TIMESTAMP_NTZ(6)",
             "integer": "NUMBER(38,0)"}
    config = g.build_table_config(f"vlead.{name}", {"ssmKey": "AFFILIATE", "target_table": "VLEAD.T",
                                                    "primary_key": tables(engine)[name]["key"],
                                                    "operations": {"type": "UPSERT"}})
    p = g.verify_plan(engine, config, facts, {c.name.upper(): types[c.type] for c in facts.values()})
    assert p.src_lead is not None and not p.problems, (name, p)
    return f"{g.lead_in_sql(p.src_lead, keys)} AND {p.src_key} IN (1, 2, 3)"


def explain(engine: str, name: str, where: str) -> str:
    if engine == "mysql":
        with h.mysql_cursor("vlead") as cur:
            cur.execute(f"EXPLAIN SELECT * FROM vlead.{name} WHERE {where}")
            plan = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
        return f"{plan['type']} {plan['key']}"
    conn = stack.pg_connect("affiliate")
    try:
        with conn.cursor() as cur:
            cur.execute(f"EXPLAIN SELECT * FROM vlead.{name} WHERE {where}")
            return "\n".join(r[0] for r in cur.fetchall())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def targets(stack_env):
    h.reset_target_schema("VLEAD")


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_repair_reads_a_hashed_key_through_its_first_column(targets, tmp_path, engine):
    create_sources(engine)
    names = tables(engine)
    first = run(tmp_path, engine, "load", "--VERIFY", "true")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    for name in names:
        assert f"vlead.{name}: VERIFY 0 mismatched of {ROWS} rows" in first.stdout
        h.sf_execute(*(sql.format(t=target(engine, name)) for sql in names[name]["drift"]))

    before = settled_index_scans() if engine == "postgres" else {}
    proc = run(tmp_path, engine, "verify", "--LOAD", "false", "--VERIFY", "true")
    assert proc.returncode == 1, proc.stdout[-4000:]
    for name, t in names.items():
        missing, extra, different = t["found"]
        assert (f"vlead.{name}: VERIFY {missing + extra + different} mismatched of {ROWS} rows (missing {missing}, "
                f"extra {extra}, different {different})") in proc.stdout, proc.stdout[-4000:]
    for kind, key in (("missing_in_target", "7|2:eu"), ("different", "300|2:us"), ("extra_in_target", "9000|2:zz"),
                      ("extra_in_target", "99999|2:eu"), ("missing_in_target", "4:it's"), ("different", "3:a\\b")):
        assert f"step=verify {kind} key={key}\n" in proc.stdout, key
    verified = settled_index_scans() if engine == "postgres" else {}
    assert verified == before, "VERIFY alone compares by the key's hash: no index of the source serves it"

    proc = run(tmp_path, engine, "repair", "--LOAD", "false", "--REPAIR", "true")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for name, t in names.items():
        missing, extra, different = t["found"]
        assert (f"vlead.{name}: REPAIR {missing + extra + different} key(s): {missing + different} row(s) written "
                f"from the source, {extra} deleted; the repaired ranges now match") in proc.stdout
        h.assert_same_rows(h.source_rows(engine, "vlead", name),
                           sorted(h.sf_query(f"SELECT * FROM {target(engine, name)}")), f"{name} after REPAIR")
    if engine == "postgres":     # each re-read went through the index of its key (the primary key's)
        after = settled_index_scans()
        assert all(after[name] > verified[name] for name in names), (verified, after)

    for name, t in names.items():
        if not t.get("narrowed", True):
            continue
        plan = explain(engine, name, narrowed_read(engine, name, t["keys"]))
        if engine == "mysql":    # MariaDB: the narrowed read is a range of the primary key, not a scan
            assert plan == "range PRIMARY", (name, plan)
        else:
            assert f"{name}_pkey" in plan and "Seq Scan" not in plan, (name, plan)
