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
4. A write-write conflict with such a transaction is a DuckDB exception that fakesnow answers
   with HTTP 500, which the connector retries until its network timeout. The wrapper answers it
   as Snowflake answers a lock conflict: SQL error 000625.
5. Snowflake's COPY reads COMPRESSION = DEFLATE (zlib streams, RFC 1950, what the job stages);
   fakesnow accepts only GZIP and NONE and DuckDB's read_csv cannot inflate zlib. The wrapper
   inflates each named file (fetched through DuckDB's own S3 access) into a temporary plain file
   and reads that; Python's zlib checks the header and checksum, so a file Snowflake would
   reject as corrupt fails here too.

Otherwise it runs fakesnow's own CLI unchanged.

Usage (from local/stack.py): python -m local.fakesnow_server -s --host 127.0.0.1 -p PORT
"""

from __future__ import annotations

import dataclasses
import os
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
from fakesnow import arrow, copy_into
from fakesnow.cli import main
from fakesnow.cursor import FakeSnowflakeCursor
from snowflake.connector.errors import ProgrammingError

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


_activity: dict[int, list] = {}   # id(connection) -> [statements running, last activity, explicit txn open]
_activity_lock = threading.Lock()


def _patch_statements() -> None:
    original = FakeSnowflakeCursor.execute

    def execute(self, command, *args, **kwargs):
        with _activity_lock:
            state = _activity.setdefault(id(self._conn), [0, time.monotonic(), False])
            state[0] += 1
        word = command.lstrip().split(None, 1)[0].upper() if command.strip() else ""
        try:
            return original(self, command, *args, **kwargs)
        except duckdb.TransactionException as exc:
            raise ProgrammingError(msg=f"Statement aborted: transaction conflict ({exc})", errno=625,
                                   sqlstate="57014") from None
        finally:
            with _activity_lock:
                state[0] -= 1
                state[1] = time.monotonic()
                if word in ("BEGIN", "START"):
                    state[2] = True
                elif word in ("COMMIT", "ROLLBACK"):
                    state[2] = False

    FakeSnowflakeCursor.execute = execute


def _roll_back_detached_transactions(idle_seconds: float) -> None:
    while True:
        time.sleep(1)
        now = time.monotonic()
        # fakesnow's package exports a function named ``server`` that imports the module of that
        # name when the server starts; reach the module itself (importing it here would shadow it).
        module = sys.modules.get("fakesnow.server")
        for conn in list(module.sessions.values()) if module else []:
            with _activity_lock:
                state = _activity.get(id(conn))
                detached = state is not None and state[0] == 0 and state[2] and now - state[1] > idle_seconds
            if detached:
                try:
                    conn.rollback()
                    print(f"[fakesnow_server] rolled back a transaction idle for {idle_seconds:.0f}s", flush=True)
                except Exception as exc:  # keep the reaper alive whatever one session does
                    print(f"[fakesnow_server] rollback of a detached transaction failed: {exc}", flush=True)
                    with _activity_lock:
                        state[2] = False


if __name__ == "__main__":
    __import__("local.fakesnow_reconcile", fromlist=["install"]).install()   # VERIFY's SQL (issue 15)
    _patch_read_csv()
    _patch_null_timestamps()
    _patch_statements()
    idle = float(os.environ.get("ETL_FAKESNOW_DETACHED_SECONDS", "10"))
    threading.Thread(target=_roll_back_detached_transactions, args=(idle,), daemon=True).start()
    sys.exit(main(sys.argv[1:]))
