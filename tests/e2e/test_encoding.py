"""A PostgreSQL source whose database is not UTF-8 (LATIN1): the load reads its texts through the JDBC
driver (the server converts them to UTF-8), and VERIFY hashes them on the server, where MD5 and
OCTET_LENGTH read the stored LATIN1 bytes - so VERIFY converts them to UTF-8 first (``row_hash_sql``'s
``to_utf8``, chosen from the database's server_encoding). The target equals the source value by value,
VERIFY finds nothing, then finds exactly the one non-ASCII value changed behind the job's back."""

from __future__ import annotations

import json

import pytest

from local import stack
from tests.e2e import helpers as h
from tests.e2e.test_verify import reported

DATABASE = "latin1src"
SECRET = "/etl/test/latin1"
ROWS = [(1, "café", "Straße"), (2, "plain", ""), (3, "£5 à la carte", None), (4, None, "naïve"),
        (5, "ÿ", "é|1:a")]
TABLES = {"enc.t": {"ssmKey": "OPS", "target_table": "ENC.T", "primary_key": "ID",
                    "timestamp_column": "UPDATED_AT", "operations": {"type": "INCREMENTAL"}, "verify": True}}


@pytest.fixture
def latin1_source(stack_env):
    conn = stack.pg_connect()
    conn.autocommit = True                        # CREATE DATABASE runs outside a transaction
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cur.execute(f"CREATE DATABASE {DATABASE} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    conn.close()
    with stack.pg_connect(DATABASE) as conn, conn.cursor() as cur:
        conn.set_client_encoding("UTF8")          # Python's str in, stored as LATIN1 by the server
        cur.execute("SHOW server_encoding")
        assert cur.fetchone() == ("LATIN1",)
        cur.execute("CREATE SCHEMA enc")
        cur.execute("CREATE TABLE enc.t (id int PRIMARY KEY, name text, note varchar(40), updated_at timestamp(6))")
        cur.executemany("INSERT INTO enc.t VALUES (%s, %s, %s, TIMESTAMP '2026-01-01')", ROWS)
        cur.execute("SELECT OCTET_LENGTH(name) FROM enc.t WHERE id = 1")
        assert cur.fetchone() == (4,)              # 'café': 4 bytes stored, 5 in UTF-8
    conn.close()
    secret = json.loads(stack.boto3_client("ssm").get_parameter(Name="/etl/local/ops", WithDecryption=True)
                        ["Parameter"]["Value"])
    stack.boto3_client("ssm").put_parameter(Name=SECRET, Value=json.dumps({**secret, "database": DATABASE}),
                                            Type="SecureString", Overwrite=True)
    h.reset_target_schema("ENC")
    yield


def test_a_latin1_database_loads_exactly_and_verifies_in_utf8(latin1_source, tmp_path):
    proc = h.run_job(tmp_path, TABLES, "--OPS", SECRET, job_name="e2e-latin1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert h.summary(proc)["enc.t"]["status"] == "OK"
    assert h.sf_query('SELECT "ID", "NAME", "NOTE" FROM ETL_DB.ENC.T ORDER BY "ID"') == ROWS
    assert reported(proc, "enc.t") == {"missing_in_target": set(), "extra_in_target": set(), "different": set()}
    assert "enc.t: VERIFY 0 mismatched of 5 rows" in proc.stdout

    with stack.pg_connect(DATABASE) as conn, conn.cursor() as cur:
        conn.set_client_encoding("UTF8")
        cur.execute("UPDATE enc.t SET name = 'cafè' WHERE id = 1")     # keeps its timestamp: a missed update
    conn.close()
    proc = h.run_job(tmp_path, TABLES, "--OPS", SECRET, "--LOAD", "false", "--VERIFY", "true",
                     job_name="e2e-latin1-drift")
    assert proc.returncode == 1
    assert h.summary(proc)["enc.t"]["status"] == "DRIFT", proc.stdout[-3000:]
    assert reported(proc, "enc.t") == {"missing_in_target": set(), "extra_in_target": set(), "different": {1}}
