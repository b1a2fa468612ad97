"""VERIFY's source answers read in bulk (``JdbcSource.rows``, ``bulk_rows_sql``): one text per query instead of a
Py4J round trip per value. On the real servers, through the job's JDBC drivers, the rows and values are those of
the row-by-row read, texts holding the separators, non-ASCII characters, '' and NULL among them; a MySQL answer
cut short (GROUP_CONCAT's limit) is never read as fewer or shorter rows: it is read again row by row."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import glue_etl_job as g
from local import stack
from tests.e2e import helpers as h

SCHEMA = "bulkrows"
TEXTS = ["plain", "", None, "a,b;c|d", "v-", "-", "é€😀", "line\nbreak\ttab", "'quoted' \"double\" \\", "N"]
PATHS = {"postgres": "/etl/local/affiliate", "mysql": "/etl/local/program360"}

# Runs in a process of its own, as the job does (a Spark driver JVM with the stack's JDBC drivers).
PROBE = """
import json, sys
import boto3
import glue_etl_job as g
engine, path, database, cut = sys.argv[1:]
spark, _ = g.spark_session("bulk-rows-probe")
secrets = g.SecretStore(boto3.client("ssm"))
source = g.JdbcSource(spark, g.source_settings({**secrets.get(path), "database": database}, path))
table = g.source_table_ref(engine, "bulkrows", "t")
names = ("k", "v", "big")
sql = f"SELECT id AS k, v, CAST(id AS DECIMAL(38,0)) * 100000000000000000000 AS big FROM {table}"
out = {"one_by_one": source.query(sql), "bulk": source.rows(sql, names, texts=("v",)),
       "none": source.rows(f"SELECT id AS k FROM {table} WHERE id < 0", ("k",))}
if cut == "yes":                               # GROUP_CONCAT cut at 64 bytes: the answer holds fewer rows
    small = ["SET SESSION group_concat_max_len = 64"]
    answer = source.query(g.bulk_rows_sql(engine, sql, names, ("v",)), small)[0]
    try:
        g.bulk_rows(engine, names, int(answer["n"]), answer["j"], "probe")
        out["cut"] = "no error"
    except g.BulkCut as exc:
        out["cut"] = str(exc)
    out["read_again"] = source.rows(sql, names, small, texts=("v",))      # cut, then read row by row
print(json.dumps(out, default=str))
spark.stop()
"""


def probe(engine: str, cut: bool) -> dict:
    database = "affiliate" if engine == "postgres" else SCHEMA
    proc = subprocess.run([sys.executable, "-c", PROBE, engine, PATHS[engine], database, "yes" if cut else "no"],
                          cwd=h.ROOT, env=h.job_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_bulk_rows_are_the_rows_read_one_by_one(stack_env, engine):
    h.fresh_source_schema(engine, SCHEMA)
    text = "text" if engine == "postgres" else "varchar(100)"
    h.source_sql(engine, SCHEMA, f"CREATE TABLE {SCHEMA}.t (id bigint PRIMARY KEY, v {text})",
                 many=(f"INSERT INTO {SCHEMA}.t VALUES (%s, %s)", list(enumerate(TEXTS, start=1))))
    got = probe(engine, cut=engine == "mysql")

    def canon(rows: list[dict]) -> list[tuple]:     # numbers as their digits: ints from JSON, text from hex
        return sorted((int(r["k"]), r["v"], str(r["big"])) for r in rows)

    expected = sorted((i, v, f"{i}{'0' * 20}") for i, v in enumerate(TEXTS, start=1))
    assert canon(got["one_by_one"]) == expected
    assert canon(got["bulk"]) == expected
    assert got["none"] == []
    if engine == "mysql":
        assert got["cut"] == f"probe: the source counted {len(TEXTS)} row(s), and the text it sent them in holds fewer"
        assert canon(got["read_again"]) == expected


def test_the_bulk_answer_keeps_the_leaves_hashes_computed_by_the_parallel_workers(stack_env):
    """PostgreSQL: wrapped for its bulk answer, a query without an aggregate of its own (the leaves' keys and row
    hashes) still has its MD5s computed under the Gather, by every worker, not by the leader above it."""
    h.fresh_source_schema("postgres", SCHEMA)
    h.source_sql("postgres", SCHEMA, f"CREATE TABLE {SCHEMA}.t AS SELECT i AS id, 'v' || i AS v "
                                     f"FROM generate_series(1, 20000) i", f"ANALYZE {SCHEMA}.t")
    row_hash = g.row_hash_sql("postgres", [(k, g.canonical_sql("postgres", k, c)) for k, c in (("int", '"id"'),
                                                                                             ("text", '"v"'))])
    leaves = g.key_hashes_sql("postgres", g.source_table_ref("postgres", SCHEMA, "t"), '"id"', row_hash, [(1, 20000)])
    conn = stack.pg_connect("affiliate")
    try:
        with conn.cursor() as cur:
            for setting in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0"):
                cur.execute(f"SET {setting}")          # a small table planned as a large one would be
            cur.execute("EXPLAIN (VERBOSE) " + g.bulk_rows_sql("postgres", leaves, ("k", "rh")))
            plan = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    gather = next(i for i, line in enumerate(plan) if "Gather" in line)
    computes = [i for i, line in enumerate(plan) if line.strip().startswith("Output:") and "md5(" in line]
    assert computes and all(i > gather for i in computes), "\n".join(plan)
