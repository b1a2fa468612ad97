"""Run the fakesnow server with fidelity fixes, so the emulator behaves as Snowflake does.

1. Snowflake loads an enclosed empty field ("") as the empty string and an empty unenclosed field
as NULL (EMPTY_FIELD_AS_NULL = TRUE with FIELD_OPTIONALLY_ENCLOSED_BY). fakesnow 0.11.22 maps
COPY INTO onto DuckDB's read_csv, whose ``allow_quoted_nulls`` defaults to true and turns ""
into NULL as well - silently losing the difference the job's CSV contract depends on. The
   wrapper passes ``allow_quoted_nulls = false``.
2. fakesnow sends timestamps to the connector as Arrow structs without a null mask, so a NULL
   TIMESTAMP_NTZ/TZ value (stored correctly) reads back as 1970-01-01 (and MAX() over no rows
   as the epoch). The wrapper adds the mask.
3. A client that dies inside a transaction: Snowflake rolls the detached transaction back once
   it has been idle for a while (four hours) and nothing of it is ever visible. fakesnow keeps
   it open until the server stops, and every later write to the same rows fails. The wrapper
   rolls back a session's transaction after ETL_FAKESNOW_DETACHED_SECONDS (default 10) idle
   seconds with no statement running - Snowflake's behaviour on a shorter clock.
4. A write-write conflict DuckDB still detects (see item 10 for what is left of them) is a DuckDB
   exception that fakesnow answers with HTTP 500, which the connector retries until its network
   timeout. The wrapper answers it as Snowflake answers a lock conflict: SQL error 000625.
5. Snowflake's COPY reads COMPRESSION = DEFLATE (zlib streams, RFC 1950, what the job stages);
   fakesnow accepts only GZIP and NONE and DuckDB's read_csv cannot inflate zlib. The wrapper
   inflates each named file (fetched through DuckDB's own S3 access) into a temporary plain file
   and reads that; Python's zlib checks the header and checksum, so a file Snowflake would
   reject as corrupt fails here too.
6. Snowflake runs MERGE inside an explicit transaction (BEGIN ... COMMIT); fakesnow 0.11.22 fails it
   there with "a single transaction can only write to a single attached database". Why: fakesnow
   splits a MERGE into ``CREATE OR REPLACE TEMPORARY TABLE merge_candidates AS ...`` plus DML, and
   its ``extract_comment_on_table`` transform records a table comment for every CREATE TABLE that
   has any property (TEMPORARY, TRANSIENT, COPY GRANTS), even with no COMMENT: (table, None). The
   cursor then writes that None comment into ``_fs_global._fs_information_schema._fs_tables_ext``
   right after deleting the new table's load history in the table's own database - two DuckDB
   databases in one transaction, which DuckDB refuses. The same makes ``CREATE TEMPORARY TABLE``
   with no comment write a meaningless row. The wrapper records a comment only when the statement
   has one (Snowflake: a table without COMMENT has none), so MERGE, as sent by the job, runs
   unchanged inside BEGIN/COMMIT.
7. fakesnow 0.11.22 runs a MERGE through a ``merge_candidates`` table that holds only the source
   columns a WHEN clause uses bare (``SET c = s.c``); a source column used inside an expression
   (``SET c = PARSE_JSON(s.c)``, ``TO_BINARY(s.c, 'HEX')``) is missing there and the MERGE fails
   with a binder error. Snowflake evaluates any expression over the source row. The wrapper adds
   every source column the WHEN clauses reference to the candidates.
8. Snowflake's temporary tables belong to a database and schema like any table
   (``CREATE TEMPORARY TABLE db.schema.t``) and are visible only to the session that made them.
   DuckDB keeps temporary tables in its own ``temp`` catalog, and fakesnow 0.11.22 passes the
   qualified name through, so DuckDB refuses the CREATE ("TEMPORARY table names can *only* use the
   temp catalog") and would not find the table by its Snowflake name afterwards. The wrapper
   remembers, per session, each temporary table created under a qualified name and points every
   later reference to that name (COPY INTO, SELECT, MERGE sources, CREATE ... AS SELECT, DROP) at
   ``temp.main.<name>``. DuckDB's temporary tables are per connection, and fakesnow gives each
   session its own, so they stay private to the session as in Snowflake. Limitation: two
   temporary tables of one name in two schemas of one session would collide (the job's are unique
   per run).
9. Snowflake's ``ALTER TABLE ... ALTER COLUMN c SET DATA TYPE t`` changes a column in place only to a
   synonymous type, a text column to a greater length, or a NUMBER to another precision at the same
   scale (less precision only when every value fits); it refuses a shorter VARCHAR (error 040050
   "... because reducing the byte-length of varchar is not supported"), another scale ("... because
   changing the scale of a number is not supported") and any other type (002108 "cannot change column
   C from type NUMBER(38,0) to VARCHAR(16777216)") - docs/SNOWFLAKE.md section 7 has the sources.
   fakesnow 0.11.22 hands the statement to DuckDB, which converts the column to whatever it is told
   when the values cast (narrower VARCHAR, NUMBER(10,2) -> NUMBER(12,4), FLOAT -> NUMBER,
   TIMESTAMP_NTZ -> TIMESTAMP_TZ all succeed). The wrapper looks up the column's current type in
   fakesnow's INFORMATION_SCHEMA and refuses those changes with Snowflake's messages (the scale
   refusal's error number is not in the sources found; it uses 002108). A precision decrease is left
   to DuckDB, whose cast fails, as Snowflake does, when a value does not fit. What Snowflake allows
   (NUMBER(10,0) -> NUMBER(19,0), VARCHAR(10) -> VARCHAR(50) or VARCHAR) fakesnow already does,
   INFORMATION_SCHEMA included. Identifiers are matched case-insensitively.

10. Snowflake locks a table for UPDATE, DELETE and MERGE until the transaction ends: another session's
   UPDATE/DELETE/MERGE of it WAITS, up to its LOCK_TIMEOUT (default 43200 s, the job sets 600), and
   only then fails with 000625; INSERT and COPY are not blocked ("Transactions", Resource locking,
   docs/SNOWFLAKE.md section 5). fakesnow 0.11.22 has no locks: DuckDB 1.5.5's optimistic concurrency
   aborts the second writer of a row at once ("TransactionContext Error: Conflict on update!", 000625
   through item 4) - a load whose lease UPDATE met its own heartbeat's failed at random - and lets an
   UPDATE and a DELETE of the same rows both commit. ``local/fakesnow_locks.py`` keeps a table lock
   per session: taken before an UPDATE, DELETE, MERGE or TRUNCATE runs (waiting in arrival order),
   held to the end of the statement in autocommit or to COMMIT/ROLLBACK in a transaction, released
   too when the session logs out (its transaction is rolled back, as Snowflake does; the login now
   returns a master token, without which the connector's close() never sends the logout) or item 3
   rolls it back; a session never waits for itself, and a wait that would close a cycle fails at once (a
   deadlock; Snowflake aborts its most recent statement). LOCK_TIMEOUT comes from the login's session
   parameters. The wait that times out answers 000625 in the words public reports show ("Statement
   'S' has locked table 'T' in transaction N and this lock has not yet been released. Your statement
   ... was aborted ..."); the refused statement changes nothing. Left as in DuckDB: its snapshot is
   taken at a transaction's first statement on a database, not at each statement (Snowflake's READ
   COMMITTED), so a transaction that read a database before it waited for a lock and then updates a
   row the lock's holder changed still fails with 000625 (the job's transactions take their first
   lock with their first statement, so its loads do not meet this).

11. Snowflake answers a query of any size (the connector downloads a large result in chunks). fakesnow
   0.11.22's server serializes only a result DuckDB hands over as one Arrow record batch (``arrow.to_ipc``:
   "NotImplementedError: N batches", HTTP 500, which the connector retries until its network timeout), and
   DuckDB 1.5.5 hands over at most 1,000,000 rows a batch: any answer of more rows failed. Met in session 13
   on a long-running stack ("5 batches"); VERIFY's answers (up to 65,536 buckets, the leaves' keys) stay far
   below it. The wrapper joins the batches into one before fakesnow serializes the result.

12. Snowflake reads a session variable where SQL names one (``$name``, "Using variables in SQL",
   https://docs.snowflake.com/en/sql-reference/session-variables), never inside a string constant
   (https://docs.snowflake.com/en/sql-reference/data-types-text, "String constants" and its "Escape sequences
   in single-quoted string constants": a single-quoted or $$-quoted string is its characters). fakesnow 0.11.22 (``Variables.inline_variables``) substitutes and
   refuses ``$word`` anywhere in the statement's text, so ``WHERE k IN ('3:$k$')`` failed with "Session
   variable '$K' does not exist": the job writes a text key's own characters as literals (REPAIR's and
   ``deletes``' DELETE by a hashed key's text). Met in session 14 (e2e/test_repair_lead.py, a key '$k$'). The
   wrapper hides string constants and quoted identifiers from fakesnow's substitution and puts them back.

It serves fakesnow's own server app (``fakesnow.server.app``) under uvicorn as ``fakesnow -s`` does,
with the login and logout routes wrapped for item 10.

Usage (from local/stack.py): python -m local.fakesnow_server -s --host 127.0.0.1 -p PORT
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import uvicorn
from fakesnow import arrow, copy_into, transforms, variables
from fakesnow.cursor import FakeSnowflakeCursor
from fakesnow.dialect import parse_one
from snowflake.connector.errors import ProgrammingError
from sqlglot import exp

from local import fakesnow_locks as locks

INFLATED = Path(tempfile.gettempdir()) / "etl-inflated"


def _inflate(url: str) -> str:
    """A plain copy of the zlib-compressed file at ``url``; copies older than an hour are removed."""
    INFLATED.mkdir(parents=True, exist_ok=True)
    for old in INFLATED.glob("*.csv"):
        if time.time() - old.stat().st_mtime > 3600:
            old.unlink(missing_ok=True)
    data = duckdb.connect().execute("SELECT content FROM read_blob(?)", [url]).fetchone()[0]
    out = INFLATED / f"{uuid.uuid4().hex}.csv"
    inflater = zlib.decompressobj()
    with open(out, "wb") as fh:
        view = memoryview(data)
        for i in range(0, len(view), 1 << 22):
            fh.write(inflater.decompress(view[i:i + (1 << 22)]))
        fh.write(inflater.flush())
    if not inflater.eof:
        raise ValueError(f"{url}: truncated zlib stream")
    return str(out)


def _patch_read_csv() -> None:
    original_handle = copy_into.handle_csv
    original = copy_into.ReadCSV.read_expression

    def handle_csv(options):
        if str(options.get("COMPRESSION", "")).upper() != "DEFLATE":
            return original_handle(options)
        return dataclasses.replace(original_handle({**options, "COMPRESSION": "NONE"}), compression="deflate")

    def read_expression(self, url):
        if self.compression == "deflate":
            self, url = dataclasses.replace(self, compression="none"), _inflate(url)
        expr = original(self, url)
        if self.quote:
            expr.append("expressions", self.make_eq("allow_quoted_nulls", False))
        return expr

    copy_into.handle_csv = handle_csv
    copy_into.ReadCSV.read_expression = read_expression


def _patch_table_comments() -> None:
    original = transforms.extract_comment_on_table

    def extract_comment_on_table(expression):
        out = original(expression)
        if isinstance(out.args.get("table_comment"), tuple) and out.args["table_comment"][1] is None:
            del out.args["table_comment"]
        return out

    transforms.extract_comment_on_table = extract_comment_on_table


def _table_key(table: exp.Table) -> tuple[str, ...] | None:
    parts = [table.args.get("catalog"), table.args.get("db"), table.this]
    if not all(isinstance(p, exp.Identifier) for p in parts):
        return None
    return tuple(p.name if p.quoted else p.name.upper() for p in parts)


def session_temporary_tables(expression: exp.Expr, registry: set) -> exp.Expr:
    """``expression`` with this session's qualified temporary tables pointed at DuckDB's temp catalog."""
    target = expression.find(exp.Table)
    key = _table_key(target) if target is not None else None
    if isinstance(expression, exp.Create) and expression.args.get("kind") == "TABLE" \
            and expression.find(exp.TemporaryProperty) and key:
        registry.add(key)
    if not registry:
        return expression

    def point(node):
        if isinstance(node, exp.Table) and _table_key(node) in registry:
            node = node.copy()
            node.set("catalog", exp.to_identifier("temp", quoted=True))
            node.set("db", exp.to_identifier("main", quoted=True))
        return node

    out = expression.transform(point)
    if isinstance(out, exp.Create) and key in registry:
        # CREATE names a temporary table unqualified (DuckDB puts it in temp.main); fakesnow's
        # bookkeeping of a new table then uses the session's database, as for any table.
        created = out.find(exp.Table)
        out.set("etl_temporary_home", key[:2])
        created.set("catalog", None)
        created.set("db", None)
    if isinstance(expression, exp.Drop) and key in registry:
        registry.discard(key)
    return out


def _patch_temporary_tables() -> None:
    original = FakeSnowflakeCursor._transform

    def _transform(self, expression, params):
        registry = self._conn.__dict__.setdefault("_etl_temporary_tables", set())
        return original(self, session_temporary_tables(expression, registry), params)

    FakeSnowflakeCursor._transform = _transform
    original_execute = FakeSnowflakeCursor._execute

    def _execute(self, transformed, params=None):
        home = transformed.args.get("etl_temporary_home")
        if not home and isinstance(transformed, exp.Create) and transformed.find(exp.TemporaryProperty) \
                and self._conn.database and not self._conn.schema:
            home = (self._conn.database, "PUBLIC")   # fakesnow's own merge_candidates table
        if not home:
            return original_execute(self, transformed, params)
        # fakesnow books a new table under the session's database and schema (it asserts both); a
        # session need not have a current schema (the job's has none): book a temporary table under
        # the schema it was named in.
        saved = self._conn.database, self._conn._schema
        self._conn.database, self._conn._schema = home
        try:
            return original_execute(self, transformed, params)
        finally:
            self._conn.database, self._conn._schema = saved

    FakeSnowflakeCursor._execute = _execute


_FULL_TEXT = 16_777_216
_TEXT_TYPES = {"VARCHAR", "NVARCHAR", "CHAR", "NCHAR", "TEXT", "STRING", "NAME"}
_INT_TYPES = {"INT", "BIGINT", "SMALLINT", "TINYINT", "UTINYINT", "UBIGINT", "USMALLINT", "UINT"}
_TIMESTAMPS = {"TIMESTAMP": "TIMESTAMP_NTZ", "TIMESTAMPNTZ": "TIMESTAMP_NTZ", "DATETIME": "TIMESTAMP_NTZ",
               "TIMESTAMPTZ": "TIMESTAMP_TZ", "TIMESTAMPLTZ": "TIMESTAMP_LTZ", "DOUBLE": "FLOAT", "FLOAT": "FLOAT"}


def snowflake_type_of(dtype: exp.DataType) -> tuple[str, tuple[int, ...]]:
    """(Snowflake type name, its numbers) of a parsed type: ('NUMBER', (p, s)), ('VARCHAR', (n,)), ('DATE', ())."""
    name = dtype.this.name
    args = tuple(int(p.name) for p in dtype.expressions if p.name.isdigit())
    if name == "DECIMAL" or name in _INT_TYPES:
        return "NUMBER", (args[0], args[1] if len(args) > 1 else 0) if args and name == "DECIMAL" else (38, 0)
    if name in _TEXT_TYPES:
        return "VARCHAR", (args[0] if args else _FULL_TEXT,)
    return _TIMESTAMPS.get(name, name), ()


def current_type(row: tuple) -> tuple[str, tuple[int, ...]]:
    """(name, numbers) from an INFORMATION_SCHEMA.COLUMNS row (DATA_TYPE, CHARACTER_MAXIMUM_LENGTH,
    NUMERIC_PRECISION, NUMERIC_SCALE)."""
    data_type, length, precision, scale = row
    if data_type == "NUMBER":
        return "NUMBER", (int(precision), int(scale or 0))
    if data_type == "TEXT":
        return "VARCHAR", (int(length or _FULL_TEXT),)
    return str(data_type), ()


def _shown(kind: tuple[str, tuple[int, ...]]) -> str:
    name, args = kind
    return f"{name}({','.join(map(str, args))})" if args else name


def alter_type_refusal(column: str, current: tuple[str, tuple[int, ...]], new: tuple[str, tuple[int, ...]]
                       ) -> ProgrammingError | None:
    """Snowflake's error for changing ``column`` from ``current`` to ``new`` in place; None when it allows it."""
    head = f"SQL compilation error: cannot change column {column} from type {_shown(current)} to {_shown(new)}"
    if current[0] != new[0]:
        return ProgrammingError(msg=head, errno=2108, sqlstate="22000")
    if new[0] == "VARCHAR" and new[1][0] < current[1][0]:
        return ProgrammingError(msg=f"{head} because reducing the byte-length of varchar is not supported.",
                                errno=40050, sqlstate="22000")
    if new[0] == "NUMBER" and new[1][1] != current[1][1]:
        return ProgrammingError(msg=f"{head} because changing the scale of a number is not supported.",
                                errno=2108, sqlstate="22000")
    return None


def check_alter_column_types(expression: exp.Expr, lookup) -> None:
    """Raise Snowflake's error for an ALTER COLUMN ... SET DATA TYPE it refuses; ``lookup(table, column)``
    gives the column's INFORMATION_SCHEMA row (None: unknown, left to fakesnow)."""
    if not isinstance(expression, exp.Alter) or expression.args.get("kind") != "TABLE":
        return
    for action in expression.args.get("actions") or []:
        if isinstance(action, exp.AlterColumn) and isinstance(action.args.get("dtype"), exp.DataType):
            row = lookup(expression.this, action.this.name)
            if row is not None:
                refusal = alter_type_refusal(action.this.name, current_type(row),
                                             snowflake_type_of(action.args["dtype"]))
                if refusal is not None:
                    raise refusal


def _patch_alter_column_types() -> None:
    original = FakeSnowflakeCursor._transform

    def _transform(self, expression, params):
        def lookup(table: exp.Table, column: str):
            catalog = table.catalog or self._conn.database or ""
            schema = table.db or self._conn.schema or ""
            with self._duck_conn.cursor() as cur:
                return cur.execute(
                    "SELECT DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE "
                    "FROM _fs_global._fs_information_schema._fs_columns WHERE upper(TABLE_CATALOG) = upper(?) "
                    "AND upper(TABLE_SCHEMA) = upper(?) AND upper(TABLE_NAME) = upper(?) "
                    "AND upper(COLUMN_NAME) = upper(?)", [catalog, schema, table.name, column]).fetchone()

        check_alter_column_types(expression, lookup)
        return original(self, expression, params)

    FakeSnowflakeCursor._transform = _transform


def _patch_merge_sources() -> None:
    original = transforms.merge

    def merge(expression):
        out = original(expression)
        if len(out) < 2 or not isinstance(expression, exp.Merge):
            return out
        alias = expression.args["using"].alias_or_name.upper()
        select = out[0].expression
        present = {(c.table.upper(), c.name.upper()) for c in select.expressions if isinstance(c, exp.Column)}
        for when in expression.args["whens"]:
            for col in when.find_all(exp.Column):
                key = (col.table.upper(), col.name.upper())
                if key[0] == alias and key not in present:
                    present.add(key)
                    select.append("expressions", col.copy())
        return out

    transforms.merge = merge


def _patch_null_timestamps() -> None:
    original = arrow.timestamp_to_sf_struct

    def timestamp_to_sf_struct(ts):
        out = original(ts)
        if isinstance(ts, pa.ChunkedArray):
            ts = ts.combine_chunks()
        if ts.null_count == 0:
            return out
        children = [pc.fill_null(out.field(i), 0) for i in range(out.type.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(out.type), mask=ts.is_null())

    arrow.timestamp_to_sf_struct = timestamp_to_sf_struct


def _patch_multi_batch_results() -> None:
    module = importlib.import_module("fakesnow.server")     # it imported to_ipc by name: replace it there
    original = module.to_ipc

    def to_ipc(table: pa.Table) -> pa.Buffer:                # item 11: one record batch, whatever DuckDB made
        return original(table.combine_chunks())

    module.to_ipc = to_ipc


# A single-quoted string (\\ and '' escape), a $$ string, a quoted identifier: text fakesnow must not read as $name.
QUOTED = re.compile(r"'(?:[^'\\]|\\.|'')*'|\$\$.*?\$\$|\"(?:[^\"]|\"\")*\"", re.S)
HIDDEN = re.compile("\x00([0-9]+)\x00")


def outside_quotes(sql: str, substitute) -> str:
    """``substitute`` applied to ``sql`` with its string constants and quoted identifiers hidden (item 12)."""
    kept: list[str] = []

    def hide(m: re.Match) -> str:
        kept.append(m.group())
        return f"\x00{len(kept) - 1}\x00"

    return HIDDEN.sub(lambda m: kept[int(m.group(1))], substitute(QUOTED.sub(hide, sql)))


def _patch_variables() -> None:
    original = variables.Variables.inline_variables

    def inline_variables(self, sql: str) -> str:                  # item 12
        return outside_quotes(sql, lambda text: original(self, text))

    variables.Variables.inline_variables = inline_variables


def _patch_statements() -> None:
    original = FakeSnowflakeCursor.execute

    def execute(self, command, *args, **kwargs):
        word = ""
        try:
            word = locks.before_statement(self._conn, command, parse_one)    # item 10: may wait for a lock
            return original(self, command, *args, **kwargs)
        except duckdb.TransactionException as exc:
            raise ProgrammingError(msg=f"Statement aborted: transaction conflict ({exc})", errno=625,
                                   sqlstate="57014") from None
        finally:
            locks.after_statement(self._conn, word)

    FakeSnowflakeCursor.execute = execute


def _roll_back_detached_transactions(idle_seconds: float) -> None:
    while True:
        time.sleep(1)
        now = time.monotonic()
        # fakesnow's package exports a function named ``server`` that imports the module of that
        # name; reach the module itself through sys.modules.
        module = sys.modules.get("fakesnow.server")
        for conn in list(module.sessions.values()) if module else []:
            state = locks.session_of(conn)
            with locks.STATE_LOCK:
                detached = state.running == 0 and state.explicit and now - state.last > idle_seconds
            if detached:
                try:
                    conn.rollback()        # through the patched execute: its locks are released too
                    print(f"[fakesnow_server] rolled back a transaction idle for {idle_seconds:.0f}s", flush=True)
                except Exception as exc:  # keep the reaper alive whatever one session does
                    print(f"[fakesnow_server] rollback of a detached transaction failed: {exc}", flush=True)
                    with locks.STATE_LOCK:
                        state.explicit = False
                    locks.LOCKS.release_all(conn)


def serve(argv: list[str]) -> int:
    """fakesnow's server app (``fakesnow.server.app``, login and logout hooked for item 10) under uvicorn,
    as ``fakesnow -s`` runs it: a server thread, stopped by SIGINT; SIGTERM ends the process at once."""
    parser = argparse.ArgumentParser(prog="local.fakesnow_server")
    parser.add_argument("-s", "--server", action="store_true", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    module = importlib.import_module("fakesnow.server")
    server = uvicorn.Server(uvicorn.Config(locks.hooked_app(module), host=args.host, port=args.port,
                                           log_level="info"))
    thread = threading.Thread(target=server.run, name="fakesnow server", daemon=True)
    thread.start()
    while thread.is_alive() and not server.started:
        time.sleep(0.1)
    if not server.started:
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1):
        if not thread.is_alive():
            return 1
    server.should_exit = True
    thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    __import__("local.fakesnow_reconcile", fromlist=["install"]).install()   # VERIFY's SQL (issue 15)
    _patch_read_csv()
    _patch_null_timestamps()
    _patch_table_comments()
    _patch_temporary_tables()
    _patch_merge_sources()
    _patch_alter_column_types()
    _patch_statements()
    _patch_multi_batch_results()
    _patch_variables()
    idle = float(os.environ.get("ETL_FAKESNOW_DETACHED_SECONDS", "10"))
    threading.Thread(target=_roll_back_detached_transactions, args=(idle,), daemon=True).start()
    sys.exit(serve(sys.argv[1:]))
