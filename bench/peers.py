"""The tools the job is compared with, each run as its own process on the same source table.

    psql | gzip   `psql -c "\\copy (select * from t) to stdout csv header" | gzip -1 > file`:
                  the extract+stage limit (one COPY stream, one compressor, local disk)
    dlt           dlt's sql_database source, backends connectorx and pyarrow, into a local DuckDB file
    sling         the Sling CLI, PostgreSQL -> local gzip CSV file

dlt and Sling live in their own git-ignored venv ``bench/.peers`` (Python 3.11, pinned in
bench/requirements-peers.txt), never in the job's runtime. A peer that cannot be installed is
reported "unavailable" and skipped; nothing is ever estimated in its place.

This module is also the dlt runner inside that venv: ``bench/.peers/bin/python -m bench.peers dlt ...``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / ".peers"
PEERS_PY = PEERS / "bin" / "python"
REQUIREMENTS = ROOT / "bench" / "requirements-peers.txt"
STAMP = PEERS / ".bench-stamp"

# `pip install sling` only ships a wrapper that downloads the CLI from GitHub at first use (not
# reachable here); the sling-linux-amd64 package carries the binary itself, SLING_BINARY points at it.
SLING_BINARY = "sling_linux_amd64/bin/sling-linux-amd64"


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _stamp() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def _python311() -> str | None:
    for name in ("python3.11", "python3"):
        path = shutil.which(name)
        if path and subprocess.run([path, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 11))"],
                                   check=False).returncode == 0:
            return path
    return None


def ensure_venv() -> str | None:
    """Create/refresh bench/.peers from the pinned requirements; returns an error text or None."""
    if PEERS_PY.exists() and STAMP.exists() and STAMP.read_text().strip() == _stamp():
        return None
    python = _python311()
    if python is None:
        return "no Python 3.11 to create bench/.peers"
    _log("installing the peers (dlt, connectorx, Sling, matplotlib) into bench/.peers ...")
    steps = [] if PEERS_PY.exists() else [[python, "-m", "venv", str(PEERS)]]
    steps.append([str(PEERS_PY), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)])
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"`{' '.join(cmd[-3:])}` failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    STAMP.write_text(_stamp() + "\n")
    return None


def _site_packages() -> Path | None:
    found = sorted(PEERS.glob("lib/python3*/site-packages"))
    return found[0] if found else None


def sling_binary() -> Path | None:
    site = _site_packages()
    path = site / SLING_BINARY if site else None
    return path if path and path.exists() else None


def _peer_import(module: str) -> str | None:
    if not PEERS_PY.exists():
        return "bench/.peers missing"
    proc = subprocess.run([str(PEERS_PY), "-c", f"import {module}"], capture_output=True, text=True, check=False)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["import failed"])[-1]


def availability() -> dict[str, str]:
    """tool -> "ok" or "unavailable: <why>" (installing bench/.peers first if needed)."""
    venv_error = ensure_venv()
    status = {}
    have_psql = shutil.which("psql") and shutil.which("gzip")
    status["psql_gzip"] = "ok" if have_psql else "unavailable: psql/gzip not on PATH"
    status["zstd"] = "ok" if shutil.which("zstd") else "unavailable: zstd not on PATH"
    for tool, module in (("dlt_connectorx", "dlt, connectorx, sqlalchemy, psycopg2"),
                         ("dlt_pyarrow", "dlt, pyarrow, sqlalchemy, psycopg2"), ("matplotlib", "matplotlib")):
        err = venv_error or _peer_import(module)
        status[tool] = "ok" if err is None else f"unavailable: {err}"
    if venv_error:
        status["sling"] = f"unavailable: {venv_error}"
    else:
        status["sling"] = "ok" if sling_binary() else "unavailable: sling-linux-amd64 binary not installed"
    return status


def versions() -> dict[str, str]:
    """Versions of the peers as installed (pip metadata of bench/.peers)."""
    if not PEERS_PY.exists():
        return {}
    code = ("import importlib.metadata as m, json; out = {}\n"
            "for n in ('dlt', 'connectorx', 'pyarrow', 'duckdb', 'sqlalchemy', 'sling', 'sling-linux-amd64',"
            " 'matplotlib'):\n"
            "    try: out[n] = m.version(n)\n"
            "    except Exception: pass\n"
            "print(json.dumps(out))")
    proc = subprocess.run([str(PEERS_PY), "-c", code], capture_output=True, text=True, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


# ----- commands (measured by bench.run) ----------------------------------------------------------


def pg_url(env: dict, driver: str = "") -> str:
    from local import stack

    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{stack.USER}:{stack.PASSWORD}@{stack.HOST}:{env['ETL_PG_PORT']}/{_database()}"


def _database() -> str:
    from bench import workload

    return workload.DATABASE


def psql_command(env: dict, table: str, out: Path, compressor: str | None = "gzip -1") -> tuple[str, dict]:
    """(shell pipeline, extra env): COPY the whole table as CSV to stdout, compress, write a file."""
    from local import stack

    copy = f"\\copy (SELECT * FROM {table}) TO STDOUT WITH (FORMAT csv, HEADER)"
    psql = (f"psql -X -q -v ON_ERROR_STOP=1 -h {stack.HOST} -p {env['ETL_PG_PORT']} -U {stack.USER} "
            f"-d {_database()} -c '{copy}'")
    pipeline = f"set -o pipefail; {psql} | {compressor} > {out}" if compressor else f"{psql} > {out}"
    return pipeline, {"PGPASSWORD": stack.PASSWORD}


def dlt_command(env: dict, backend: str, schema: str, table: str, workdir: Path) -> tuple[list[str], dict]:
    cmd = [str(PEERS_PY), "-m", "bench.peers", "dlt", backend, pg_url(env, "psycopg2"), schema, table, str(workdir)]
    return cmd, {"RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_DATA_DIR": str(workdir / "data")}


def sling_command(env: dict, schema: str, table: str, workdir: Path) -> tuple[list[str], dict]:
    target = f"file://{workdir / (table + '.csv.gz')}"
    cmd = [str(PEERS / "bin" / "sling"), "run", "--src-conn", "BENCH_PG", "--src-stream", f"{schema}.{table}",
           "--tgt-object", target, "--tgt-options", json.dumps({"format": "csv", "compression": "gzip"})]
    extra = {"BENCH_PG": pg_url(env) + "?sslmode=disable", "SLING_BINARY": str(sling_binary()),
             "SLING_DISABLE_TELEMETRY": "true", "SLING_HOME_DIR": str(workdir / "sling-home")}
    return cmd, extra


def sling_rows(output: str) -> int | None:
    match = re.search(r"wrote (\d+) rows", re.sub(r"\x1b\[[0-9;]*m", "", output))
    return int(match.group(1)) if match else None


def dlt_rows(output: str) -> int | None:
    match = re.search(r'^\{"rows": (\d+)\}$', output, re.MULTILINE)
    return int(match.group(1)) if match else None


# ----- the dlt runner (runs inside bench/.peers) -------------------------------------------------


def run_dlt(backend: str, url: str, schema: str, table: str, workdir: str) -> None:
    """One dlt pipeline with its defaults: sql_table -> local DuckDB, replace; prints the row count."""
    import dlt
    from dlt.sources.sql_database import sql_table

    work = Path(workdir)
    resource = sql_table(credentials=url, schema=schema, table=table, backend=backend)
    pipeline = dlt.pipeline(pipeline_name=f"bench_{backend}_{table}", pipelines_dir=str(work / "pipelines"),
                            destination=dlt.destinations.duckdb(str(work / "dlt.duckdb")), dataset_name="loaded")
    pipeline.run(resource, write_disposition="replace")
    with pipeline.sql_client() as client:
        rows = client.execute_sql(f"SELECT COUNT(*) FROM {table}")[0][0]
    print(json.dumps({"rows": rows}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "dlt":
        run_dlt(*sys.argv[2:])
    else:
        sys.exit("usage: python -m bench.peers dlt BACKEND URL SCHEMA TABLE WORKDIR")
