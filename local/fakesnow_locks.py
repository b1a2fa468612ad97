"""Snowflake's table locks for the fakesnow server (``local/fakesnow_server.py``, item 10).

Snowflake ("Transactions", https://docs.snowflake.com/en/sql-reference/transactions, "Resource
locking"): UPDATE, DELETE and MERGE hold locks that keep other UPDATE/DELETE/MERGE statements on the
table from running until the holder's transaction commits or rolls back; INSERT and COPY are not
blocked. A blocked statement waits up to the session's LOCK_TIMEOUT (seconds, default 43200; 0: no
wait) and is then aborted; a session's own locks never block it. DuckDB (fakesnow 0.11.22 on DuckDB
1.5.5) has no locks: it aborts the second writer of a row at once ("Conflict on update!"), and lets
an UPDATE and a DELETE of the same rows both commit.

Here a session is fakesnow's connection object; its locks live until its transaction ends (COMMIT,
ROLLBACK, the session logging out, or item 3's rollback of a detached transaction), or until its
statement ends outside a transaction. Waiters queue first come, first served. A wait that would
close a cycle (a deadlock: Snowflake aborts the most recent statement of it) fails at once.
TRUNCATE TABLE is locked like DELETE (the page counts it as DML; it removes every row).
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from snowflake.connector.errors import ProgrammingError
from sqlglot import exp

DEFAULT_LOCK_TIMEOUT = 43200.0          # Snowflake's default LOCK_TIMEOUT ("Parameters")
_WRITES = re.compile(r"\b(UPDATE|DELETE|MERGE|TRUNCATE)\b", re.IGNORECASE)
_BEGIN, _END = {"BEGIN", "START"}, {"COMMIT", "ROLLBACK"}
_TXNS = itertools.count(1)


@dataclass
class Session:
    """What the emulator tracks of one session: statements running, transaction, limits."""

    running: int = 0
    last: float = field(default_factory=time.monotonic)
    explicit: bool = False               # inside BEGIN ... COMMIT/ROLLBACK
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    closed: bool = False                 # logged out while a statement ran: roll back when it ends
    txn: int = 0                         # Snowflake-style transaction id while it holds locks
    locker: str = ""                     # id of the statement that took its first lock
    statement: str = ""                  # id of the statement running now


STATE_LOCK = threading.Lock()            # guards every Session's counters


def session_of(conn: Any) -> Session:
    with STATE_LOCK:
        return conn.__dict__.setdefault("_etl_session", Session())


def in_transaction(conn: Any) -> bool:
    """Is the session's DuckDB transaction still open (explicit BEGIN, or AUTOCOMMIT off with DML)?"""
    return session_of(conn).explicit or (not conn._autocommit and conn._in_transaction)


def lock_timeout_of(params: dict) -> float:
    """LOCK_TIMEOUT from a login's session parameters (keys are case-insensitive)."""
    value = {str(k).upper(): v for k, v in (params or {}).items()}.get("LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)
    return max(0.0, float(value))


def _part(ident: Any, default: str | None) -> str:
    if not isinstance(ident, exp.Identifier):
        return (default or "").upper()
    return ident.name if ident.quoted else ident.name.upper()


def locked_tables(expression: exp.Expr, database: str | None, schema: str | None) -> list[tuple[str, str, str]]:
    """(database, schema, table) of each table the statement locks: UPDATE, DELETE, MERGE, TRUNCATE targets."""
    if isinstance(expression, (exp.Update, exp.Delete, exp.Merge)):
        tables = [expression.this]
    elif isinstance(expression, exp.TruncateTable):
        tables = list(expression.expressions)
    else:
        return []
    return [(_part(t.args.get("catalog"), database), _part(t.args.get("db"), schema), _part(t.this, None))
            for t in tables if isinstance(t, exp.Table) and isinstance(t.this, exp.Identifier)]


def may_lock(command: str) -> bool:
    """Cheap filter before parsing: could this statement take a lock?"""
    return bool(_WRITES.search(command))


def statement_word(command: str) -> str:
    return command.lstrip().split(None, 1)[0].upper() if command.strip() else ""


def lock_error(table: tuple[str, str, str], holder: Session, mine: Session, why: str) -> ProgrammingError:
    """Snowflake's 000625 (SQLSTATE 57014), worded as public reports show it, plus why this statement gave up."""
    return ProgrammingError(
        msg=f"Statement '{holder.locker}' has locked table '{table[2]}' in transaction {holder.txn} and this "
            f"lock has not yet been released. Your statement '{mine.statement}' was aborted {why}.",
        errno=625, sqlstate="57014")


class TableLocks:
    """One transaction at a time holds a table; the others wait in arrival order, up to their LOCK_TIMEOUT."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owner: dict[tuple, Any] = {}     # table -> session holding it
        self._queue: dict[tuple, list] = {}    # table -> sessions waiting for it, in arrival order
        self._held: dict[Any, set] = {}        # session -> tables it holds
        self._waits: dict[Any, tuple] = {}     # session -> table it waits for

    def acquire(self, conn: Any, table: tuple[str, str, str]) -> None:
        mine = session_of(conn)
        with self._cond:
            if self._owner.get(table) is conn:
                return None
            if self._owner.get(table) is None and not self._queue.get(table):
                return self._take(conn, table)
            queue = self._queue.setdefault(table, [])
            queue.append(conn)
            self._waits[conn] = table
            try:
                self._wait_turn(conn, table, queue, mine, time.monotonic() + mine.lock_timeout)
                self._take(conn, table)
            finally:
                queue.remove(conn)
                if not queue:
                    del self._queue[table]
                del self._waits[conn]
                self._cond.notify_all()

    def _wait_turn(self, conn: Any, table: tuple, queue: list, mine: Session, deadline: float) -> None:
        while self._owner.get(table) is not None or queue[0] is not conn:
            holder = self._owner.get(table) or queue[0]
            if self._deadlocked(conn, table):
                raise lock_error(table, session_of(holder), mine, "as the most recent statement of a deadlock")
            left = deadline - time.monotonic()
            if left <= 0:
                raise lock_error(table, session_of(holder), mine,
                                 f"after waiting LOCK_TIMEOUT ({mine.lock_timeout:g} s) for this lock")
            self._cond.wait(min(left, 1.0))

    def _deadlocked(self, conn: Any, table: tuple) -> bool:
        """Does the chain of holders, each waiting for the next table, lead back to ``conn``?"""
        seen: set = set()
        holder = self._owner.get(table)
        while holder is not None and id(holder) not in seen:
            if holder is conn:
                return True
            seen.add(id(holder))
            waiting_for = self._waits.get(holder)
            holder = self._owner.get(waiting_for) if waiting_for else None
        return False

    def _take(self, conn: Any, table: tuple) -> None:
        self._owner[table] = conn
        self._held.setdefault(conn, set()).add(table)
        mine = session_of(conn)
        if not mine.txn:                 # like Snowflake's: milliseconds since the epoch * 10**6 + n
            mine.txn, mine.locker = time.time_ns() // 10**6 * 10**6 + next(_TXNS) % 10**6, mine.statement

    def release_all(self, conn: Any) -> None:
        with self._cond:
            for table in self._held.pop(conn, ()):
                if self._owner.get(table) is conn:
                    del self._owner[table]
            session_of(conn).txn = 0
            self._cond.notify_all()

    def holders(self) -> dict[tuple, Any]:
        with self._cond:
            return dict(self._owner)


LOCKS = TableLocks()


def before_statement(conn: Any, command: str, parse) -> str:
    """Count the statement as running and take the locks it needs (waiting for them); its first word."""
    mine = session_of(conn)
    with STATE_LOCK:
        mine.running += 1
        mine.statement = str(uuid.uuid4())
    if may_lock(command):
        try:
            expression = parse(command)
        except Exception:                # fakesnow reports the statement's own error when it runs it
            expression = None
        for table in locked_tables(expression, conn.database, conn.schema) if expression else ():
            LOCKS.acquire(conn, table)
    return statement_word(command)


def after_statement(conn: Any, word: str) -> None:
    """Track BEGIN/COMMIT/ROLLBACK; release the locks once no transaction is open; finish a logout."""
    mine = session_of(conn)
    with STATE_LOCK:
        mine.running -= 1
        mine.last = time.monotonic()
        if word in _BEGIN:
            mine.explicit = True
        elif word in _END:
            mine.explicit = False
        finish = mine.closed and mine.running == 0
        if finish:
            mine.closed = False
    if not in_transaction(conn):
        LOCKS.release_all(conn)
    if finish:
        end_session(conn)


def end_session(conn: Any) -> None:
    """The session logged out: its open transaction is rolled back and its locks released (Snowflake:
    "If a session with an open transaction is closed, then the open transaction is rolled back")."""
    mine = session_of(conn)
    with STATE_LOCK:
        if mine.running:
            mine.closed = True          # after_statement finishes it when the running statement ends
            return
    try:
        if in_transaction(conn):
            conn.rollback()
    finally:
        LOCKS.release_all(conn)


def hooked_app(module: Any) -> Any:
    """fakesnow's Starlette app with login (reads LOCK_TIMEOUT) and logout (ends the session) hooked."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    login, session = module.login_request, module.session

    async def login_request(request):
        response = await login(request)
        answer = json.loads(response.body)
        token = (answer.get("data") or {}).get("token")
        if token not in module.sessions:
            return response
        body = await request.body()                      # Starlette keeps the body login read
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        params = json.loads(body)["data"].get("SESSION_PARAMETERS") or {}
        session_of(module.sessions[token]).lock_timeout = lock_timeout_of(params)
        # The connector logs out (close() -> POST /session?delete=true) only when the login gave it a
        # master token, which Snowflake always does and fakesnow 0.11.22 does not.
        answer["data"]["masterToken"] = f"master-{token}"
        return JSONResponse(answer)

    async def session_request(request):
        conn = None
        if request.query_params.get("delete"):
            auth = request.headers.get("Authorization") or ""
            conn = module.sessions.get(auth[17:-1])     # the token, as fakesnow's to_token reads it
        response = await session(request)
        if conn is not None:
            await run_in_threadpool(end_session, conn)
        return response

    hooks = {login: login_request, session: session_request}
    routes = [Route(r.path, hooks.get(r.endpoint, r.endpoint), methods=sorted(r.methods or ())) for r in module.routes]
    return Starlette(debug=True, routes=routes)
