"""`make bench`: measure the job and its peers on the local stack, write bench/results/latest.*.

    BENCH_RUNS=3           timed runs per case (median and min-max are reported)
    BENCH_VARIANT_RUNS=1   runs per tuning variant (num_partitions, fetch_size, --PARALLELISM, compressors)
    BENCH_SIZES=full       1M/5M rows and 30 x 10k tables; `small` = 100k/200k rows and 5 x 10k (smoke run)
    BENCH_ONLY=regex       run only the cases whose name matches (e.g. 'dlt|sling'); for re-measuring one tool
    KEEP_STACK=1           leave the stack running when this run started it

Every case runs as its own process, exactly as Glue runs the job (``--CONFIG tables.json``) or as a
user runs a peer. Phases come from the job's structured log lines (`table=... step=... seconds=`);
peak memory is each process's VmHWM (kernel-kept high-water mark of its resident set) and CPU time
its utime+stime, polled from /proc for the whole process tree while it runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import peers, report, verify, workload
from local import seed, stack

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOGS = RESULTS / "logs"
JOB = ROOT / "glue_etl_job.py"
TARGET_SCHEMA = "BENCH"
STATE_SCHEMA = "BENCH_META"
JOB_ARGS = ["--JOB_NAME", "bench", "--SNOWFLAKE", workload.SSM_SNOWFLAKE,
            "--AFFILIATE", workload.SSM_POSTGRES, "--PROGRAM360", workload.SSM_MYSQL,
            "--STAGING_BUCKET", seed.STAGING_BUCKET, "--STATE_SCHEMA", STATE_SCHEMA]
CLK_TCK = os.sysconf("SC_CLK_TCK")
NO_CDS = "without JVM class archive"     # the variants that start the JVM as Glue does


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----- measuring one process tree ------------------------------------------------------------------


def _parents() -> dict[int, int]:
    """pid -> parent pid for every live process."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                raw = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            out[int(entry.name)] = int(raw[raw.rindex(")") + 2:].split()[1])
    return out


def _sample(root: int, peaks: dict[int, dict]) -> None:
    """Update each tree member's name, peak RSS (VmHWM, kB) and CPU seconds."""
    parents = _parents()
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += [child for child, parent in parents.items() if parent == pid and child not in tree]
    for pid in tree:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        hwm = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if not hwm:                      # zombie: nothing left to read
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        name = re.search(r"^Name:\s+(\S+)", status, re.MULTILINE).group(1)
        seen = peaks.setdefault(pid, {"name": name, "hwm_kb": 0, "cpu_s": 0.0})
        seen["name"] = name              # spark-submit is bash until it execs java
        seen["hwm_kb"] = max(seen["hwm_kb"], int(hwm.group(1)))
        seen["cpu_s"] = max(seen["cpu_s"], cpu)


def _wait_gone(pids: set[int], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}/status").exists()
                 and "State:\tZ" not in Path(f"/proc/{p}/status").read_text()]
        if not alive:
            return
        time.sleep(0.2)


def measure(cmd: list[str] | str, env: dict, log_path: Path, cwd: Path = ROOT) -> dict:
    """Run one process (tree) to the end; wall time, exit code, peak memory, CPU time."""
    peaks: dict[int, dict] = {}
    load = os.getloadavg()[0]
    shell = isinstance(cmd, str)
    started_epoch, started = time.time(), time.monotonic()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                shell=shell, executable="/bin/bash" if shell else None)
        while proc.poll() is None:
            _sample(proc.pid, peaks)
            time.sleep(0.2)
    wall = time.monotonic() - started
    _wait_gone(set(peaks) - {proc.pid})  # e.g. the JVM shutting down: not in the next case's time
    mb = 1024.0
    root = peaks.get(proc.pid, {"hwm_kb": 0})
    return {
        "rc": proc.returncode, "wall_s": round(wall, 3), "start_epoch": started_epoch, "load1_before": load,
        "cpu_s": round(sum(p["cpu_s"] for p in peaks.values()), 2),
        "mem_mb": {"driver": round(root["hwm_kb"] / mb, 1),
                   "jvm": round(max([p["hwm_kb"] for p in peaks.values() if p["name"] == "java"] or [0]) / mb, 1),
                   "tree": round(sum(p["hwm_kb"] for p in peaks.values()) / mb, 1)},
    }


# ----- the job's log ---------------------------------------------------------------------------------

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})(Z?) \w+ glue_etl (.*)$")
STEP = re.compile(r"table=(\S+) step=(\w+) seconds=([\d.]+)")


def parse_job_log(text: str, start_epoch: float, wall_s: float) -> dict:
    """Phases of one job run from its log: session start, then per step summed over the tables."""
    run_at, steps, tables, sql, predicate, partitions = None, {}, set(), None, None, None
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        at = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
        at = (at.replace(tzinfo=dt.UTC) if match.group(2) else at).timestamp()    # "Z": UTC, else local time
        msg = match.group(3)
        if msg.startswith("step=run ") and run_at is None:
            run_at = at
        step = STEP.match(msg)
        if not step:
            continue
        tables.add(step.group(1))
        steps[step.group(2)] = steps.get(step.group(2), 0.0) + float(step.group(3))
        if step.group(2) == "extract" and sql is None:
            sql = json.JSONDecoder().raw_decode(msg, msg.index(" sql=") + 5)[0]   # a JSON string; split= may follow
            partitions = int(re.search(r" partitions=(\d+)", msg).group(1))
        found = re.search(r" predicate=(null|\".*?[^\\]\")(?: |$)", msg) if step.group(2) == "plan" else None
        if found and predicate is None:        # a check's plan (--LOAD false) has no read window: no predicate
            predicate = json.loads(found.group(1))
    # The JSON summary line (README "Run summary for machines"), not the text table: its columns change with the job.
    summary = next((json.loads(line) for line in text.splitlines() if line.startswith('{"type": "etl_run_summary"')),
                   {"tables": []})
    session = (run_at - start_epoch) if run_at else None
    return {
        "tables": len(tables),
        "tables_ok": sum(1 for t in summary["tables"] if t["status"] == "OK"),
        "rows_read": sum(t["rows"]["read"] or 0 for t in summary["tables"]),
        "phases": {
            "session_s": round(session, 3) if session is not None else None,
            "plan_s": round(steps.get("plan", 0.0), 3),
            "extract_stage_s": round(steps.get("extract", 0.0) + steps.get("stage", 0.0), 3),
            "copy_s": round(steps.get("copy", 0.0), 3),
            "load_s": round(steps.get("load", 0.0), 3),
            "after_session_s": round(wall_s - session, 3) if session is not None else None,
        },
        "partitions": partitions, "sql": sql, "predicate": predicate,
        "steps": {name: round(seconds, 3) for name, seconds in steps.items()},
    }


# ----- Snowflake (fakesnow) housekeeping ---------------------------------------------------------------


def sf_execute(*sqls: str, ignore_errors: bool = False) -> None:
    conn = stack.snowflake_connect()
    try:
        for sql in sqls:
            try:
                conn.cursor().execute(sql)
            except Exception:
                if not ignore_errors:
                    raise
    finally:
        conn.close()


def drop_bench_schemas() -> None:
    db = stack.SNOWFLAKE_DATABASE
    sf_execute(*(f"DROP SCHEMA IF EXISTS {db}.{schema} CASCADE" for schema in (TARGET_SCHEMA, STATE_SCHEMA)))


def sf_rows(sql: str) -> list[tuple]:
    conn = stack.snowflake_connect()
    try:
        return conn.cursor().execute(sql).fetchall()
    finally:
        conn.close()


def forget_target(name: str) -> None:
    """Drop a target and its watermark, so the next run starts from an empty target."""
    db = stack.SNOWFLAKE_DATABASE
    sf_execute(f"DROP TABLE IF EXISTS {db}.{TARGET_SCHEMA}.{name}",
               f"DELETE FROM {db}.{STATE_SCHEMA}.ETL_LOAD_STATE WHERE TARGET_TABLE = '{TARGET_SCHEMA}.{name}'",
               ignore_errors=True)


# ----- the cases -----------------------------------------------------------------------------------------


def entry(source: str, target: str, mode: str, **extra) -> dict:
    e = {"ssmKey": "AFFILIATE" if source == "postgres" else "PROGRAM360",
         "target_table": f"{TARGET_SCHEMA}.{target}", "primary_key": "id", "operations": {"type": mode}}
    if mode in ("INCREMENTAL", "UPSERT"):
        e["timestamp_column"] = "updated_at"
    return {**e, **extra}


class Bench:
    def __init__(self, env: dict, runs: int, variant_runs: int, work: Path):
        self.env, self.runs, self.variant_runs, self.work = env, runs, variant_runs, work
        self.measurements: list[dict] = []
        self.only = re.compile(os.environ.get("BENCH_ONLY", ""))

    def skip(self, case: str) -> bool:
        return not self.only.search(case)

    def _record(self, rec: dict) -> None:
        self.measurements.append(rec)
        ph = rec.get("phases") or {}
        extra = f" session {ph['session_s']}s, extract+stage {ph['extract_stage_s']}s" if ph.get("session_s") else ""
        _log(f"{rec['case']} run {rec['run']}: {rec['wall_s']:.1f}s{extra}, "
             f"mem {rec['mem_mb']}, {'OK' if rec['ok'] else 'FAILED: ' + str(rec.get('error'))}")

    def job(self, case: str, tables: dict, rows: int, *, size: str, mode: str, source: str = "postgres",
            group: str = "main", runs: int | None = None, args: tuple[str, ...] = (), before=None, after=None,
            check=None, record_sql: verify.PgStatements | None = None, env: dict | None = None,
            force: bool = False) -> None:
        """``env`` adds to the job's environment; a None value removes that variable. ``before(i)`` /
        ``after(i)`` run around run i (``after`` also when it failed); ``check(parsed, rc)`` returns None or
        what is wrong, and replaces the default check (exit 0, every table OK). ``record_sql``: record the
        statements both sides ran (PostgreSQL's log, bench/sqlrecord on the job's Snowflake connections).
        ``force``: run even when BENCH_ONLY does not name the case (the setup or check of a case it names)."""
        if self.skip(case) and not force:
            return
        run_env = {k: v for k, v in {**self.env, **(env or {})}.items() if v is not None}
        config = self.work / f"{_file_name(case)}.json"
        config.write_text(json.dumps({"TABLES": tables}))
        for i in range(runs or self.runs):
            if before:
                before(i)
            try:
                log = LOGS / f"{_file_name(case)}-{i + 1}.log"
                extra_env, record, offset = {}, LOGS / f"{_file_name(case)}-{i + 1}.snowflake.jsonl", 0
                if record_sql:
                    record.unlink(missing_ok=True)
                    extra_env = {"PYTHONPATH": str(ROOT / "bench" / "sqlrecord"), "BENCH_SQL_RECORD": str(record)}
                    offset = record_sql.offset()
                m = measure([sys.executable, str(JOB), *JOB_ARGS, "--CONFIG", str(config), *args],
                            {**run_env, **extra_env}, log)
                text = log.read_text(errors="replace")
                parsed = parse_job_log(text, m["start_epoch"], m["wall_s"])
                if check or record_sql:
                    parsed.update(verify.parse_verify_log(text))
                if record_sql:
                    parsed["verify_sql"] = {"postgres": verify.sql_summary(record_sql.since(offset)),
                                            "snowflake": verify.sql_summary(verify.snowflake_statements(record))}
                if check:
                    error = check(parsed, m["rc"])
                    ok = error is None
                    if error and m["rc"] != 0:
                        error = f"{error} ({_last_error(text)})"
                else:
                    ok = m["rc"] == 0 and parsed["tables_ok"] == len(tables)
                    error = None if ok else _last_error(text)
                self._record({"case": case, "group": group, "tool": "glue_etl_job", "mode": mode, "source": source,
                              "size": size, "rows": rows, "run": i + 1, "args": list(args), "ok": ok, "error": error,
                              **m, **parsed})
            finally:
                if after:
                    after(i)

    def peer(self, case: str, tool: str, rows: int, size: str, make_cmd, *, group: str = "baseline",
             runs: int | None = None, count=None) -> None:
        """make_cmd(workdir) -> (cmd, extra env); count(output, workdir) -> rows written (or None)."""
        if self.skip(case):
            return
        for i in range(runs or self.runs):
            workdir = Path(tempfile.mkdtemp(prefix="peer-", dir=self.work))
            cmd, extra = make_cmd(workdir)
            log = LOGS / f"{_file_name(case)}-{i + 1}.log"
            m = measure(cmd, {**self.env, **extra}, log)
            text = log.read_text(errors="replace")
            got = count(text, workdir) if count and m["rc"] == 0 else None
            ok = m["rc"] == 0 and (count is None or got == rows)
            error = None if ok else (f"wrote {got} rows, expected {rows}" if m["rc"] == 0 else _last_error(text))
            shutil.rmtree(workdir, ignore_errors=True)
            self._record({"case": case, "group": group, "tool": tool, "source": "postgres", "size": size,
                          "rows": rows, "run": i + 1, "ok": ok, "error": error, **m})

    def unavailable(self, case: str, tool: str, rows: int, size: str, why: str, group: str = "baseline") -> None:
        if self.skip(case):
            return
        _log(f"{case}: {why}")
        self.measurements.append({"case": case, "group": group, "tool": tool, "size": size, "rows": rows,
                                  "ok": False, "unavailable": why})


def _file_name(case: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.%+-]", "", case.replace(" ", "_"))


def _last_error(text: str) -> str:
    """The most telling line of a failed process's output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"step=failed|Error|ERROR|Exception|FATAL", line)]
    return ((errors or lines or ["(no output)"])[-1])[:300]


def _line_count(decompress: str):
    def count(_output: str, workdir: Path) -> int | None:
        files = list(workdir.glob("*.csv*"))
        if not files:
            return None
        out = subprocess.run(f"{decompress} < {files[0]} | wc -l", shell=True, capture_output=True, text=True,
                             check=False)
        return int(out.stdout.strip()) - 1          # minus the header line
    return count


def run_cases(b: Bench, prof: dict, names: dict, status: dict) -> None:
    small, large = prof["small"], prof["large"]
    s_label, l_label = workload.label(small), workload.label(large)
    s_key, l_key = f"{workload.SCHEMA}.{names['small']}", f"{workload.SCHEMA}.{names['large']}"
    S, L = s_label.upper(), l_label.upper()

    # --- the job ------------------------------------------------------------------------------------
    b.job(f"job FULL {s_label}", {s_key: entry("postgres", f"FULL_{S}", "FULL")}, small, size=s_label, mode="FULL")
    b.job(f"job FULL {l_label}", {l_key: entry("postgres", f"FULL_{L}", "FULL")}, large, size=l_label, mode="FULL")
    b.job(f"variant FULL {l_label} {NO_CDS}", {l_key: entry("postgres", f"FULL_{L}", "FULL")}, large,
          size=l_label, mode="FULL", group="variant", runs=b.variant_runs, env={"ETL_SPARK_JAVA_OPTIONS": None})
    forget_target(f"FULL_{S}")
    forget_target(f"FULL_{L}")

    verify_cases(b, prof, names)

    incr = {l_key: entry("postgres", f"INCR_{L}", "INCREMENTAL")}
    forget_target(f"INCR_{L}")
    b.job(f"job INCREMENTAL initial {l_label}", incr, large, size=l_label, mode="INCREMENTAL", runs=1,
          group="setup")
    b.job(f"job INCREMENTAL 1% {l_label}", incr, large // 100, size=l_label, mode="INCREMENTAL",
          before=lambda i: workload.update_delta(names["large"], large, slot=i + 1))
    # The driver JVM as Glue starts it: without the local stack's class archive (local/jvm_cache.py).
    b.job(f"variant INCREMENTAL 1% {l_label} {NO_CDS}", incr, large // 100, size=l_label, mode="INCREMENTAL",
          group="variant", runs=b.variant_runs, env={"ETL_SPARK_JAVA_OPTIONS": None},
          before=lambda i: workload.update_delta(names["large"], large, slot=50 + i))
    forget_target(f"INCR_{L}")

    upsert = {s_key: entry("postgres", f"UPSERT_{S}", "UPSERT")}
    forget_target(f"UPSERT_{S}")
    b.job(f"job UPSERT initial {s_label}", upsert, small, size=s_label, mode="UPSERT", runs=1, group="setup")
    b.job(f"job UPSERT {s_label}", upsert, small, size=s_label, mode="UPSERT")
    forget_target(f"UPSERT_{S}")

    b.job(f"job FULL mariadb {s_label}", {s_key: entry("mysql", f"MY_FULL_{S}", "FULL")}, small, size=s_label,
          mode="FULL", source="mariadb")
    forget_target(f"MY_FULL_{S}")

    n, per = prof["many_tables"], prof["many_rows"]
    many = {f"{workload.SCHEMA}.{t}": entry("postgres", t.upper(), "FULL") for t in names["many"]}
    b.job(f"job {n} tables", many, n * per, size=f"{n}x{workload.label(per)}", mode="FULL")

    # --- the peers on the same tables --------------------------------------------------------------------
    for rows, name, size in ((small, names["small"], s_label), (large, names["large"], l_label)):
        table = f"{workload.SCHEMA}.{name}"
        if status["psql_gzip"] == "ok":
            b.peer(f"psql|gzip -1 {size}", "psql|gzip -1", rows, size,
                   lambda w, t=table: peers.psql_command(b.env, t, w / "out.csv.gz"), count=_line_count("gzip -dc"))
        else:
            b.unavailable(f"psql|gzip -1 {size}", "psql|gzip -1", rows, size, status["psql_gzip"])
        for backend in ("connectorx", "pyarrow"):
            tool = f"dlt {backend}"
            if status[f"dlt_{backend}"] != "ok":
                b.unavailable(f"{tool} {size}", tool, rows, size, status[f"dlt_{backend}"])
                continue
            b.peer(f"{tool} {size}", tool, rows, size,
                   lambda w, be=backend, n=name: peers.dlt_command(b.env, be, workload.SCHEMA, n, w),
                   count=lambda out, _w: peers.dlt_rows(out))
        if status["sling"] == "ok":
            b.peer(f"sling {size}", "sling", rows, size,
                   lambda w, n=name: peers.sling_command(b.env, workload.SCHEMA, n, w),
                   count=lambda out, _w: peers.sling_rows(out))
        else:
            b.unavailable(f"sling {size}", "sling", rows, size, status["sling"])

    # --- tuning variants (config keys and runtime arguments the job supports; compressors) -----------------
    vr = b.variant_runs
    default_parts = max(1, min(os.cpu_count() or 2, -(-large // 500_000)))
    for parts in sorted({1, 2, 4} - {default_parts}):
        b.job(f"variant FULL {l_label} num_partitions={parts}",
              {l_key: entry("postgres", f"FULL_{L}_P{parts}", "FULL", num_partitions=parts)}, large, size=l_label,
              mode="FULL", group="variant", runs=vr)
        forget_target(f"FULL_{L}_P{parts}")
    for fetch in (1_000, 100_000):
        b.job(f"variant FULL {s_label} fetch_size={fetch}",
              {s_key: entry("postgres", f"FULL_{S}_F{fetch}", "FULL", fetch_size=fetch)}, small, size=s_label,
              mode="FULL", group="variant", runs=vr)
        forget_target(f"FULL_{S}_F{fetch}")
    for par in (1, 8):
        b.job(f"variant {n} tables --PARALLELISM {par}", many, n * per, size=f"{n}x{workload.label(per)}",
              mode="FULL", group="variant", runs=vr, args=("--PARALLELISM", str(par)))
    table = f"{workload.SCHEMA}.{names['large']}"
    compressors = [("none", None, "cat"), ("gzip -6", "gzip -6", "gzip -dc"), ("zstd -1", "zstd -q -1", "zstd -dc"),
                   ("zstd -3", "zstd -q -3", "zstd -dc")]
    for label_, comp, decomp in compressors:
        if status["psql_gzip"] != "ok" or (comp and comp.startswith("zstd") and status["zstd"] != "ok"):
            continue
        suffix = ".csv" if comp is None else ".csv.gz" if comp.startswith("gzip") else ".csv.zst"
        b.peer(f"variant psql|{label_} {l_label}", f"psql|{label_}", large, l_label,
               lambda w, c=comp, s=suffix: peers.psql_command(b.env, table, w / f"out{s}", c),
               group="variant", runs=vr, count=_line_count(decomp))


def verify_cases(b: Bench, prof: dict, names: dict) -> None:
    """VERIFY of the large table with no drift, and with 100 scattered differences put into the target
    (found exactly, then repaired by --REPAIR where the job has it; bench/verify.py).

    One untimed INCREMENTAL load first; each timed run then reads no new rows (the row at the watermark
    only), so its time is the run's fixed cost plus VERIFY. ``job VERIFY baseline`` is the same run
    without --VERIFY: that fixed cost alone."""
    large, l_label = prof["large"], workload.label(prof["large"])
    name = f"VERIFY_{l_label.upper()}"
    target = f"{stack.SNOWFLAKE_DATABASE}.{TARGET_SCHEMA}.{name}"
    repair = '"REPAIR"' in JOB.read_text()          # --REPAIR: VERIFY, reload the differing keys, verify again
    diffs_case = f"job VERIFY{'+REPAIR' if repair else ''} 100 diffs {l_label}"
    only = '"LOAD"' in JOB.read_text()              # --LOAD false: VERIFY without the load before it
    hashed = ["job VERIFY only hashed key {l}", "job VERIFY+REPAIR hashed key 100 diffs {l}"]
    hashed = [c.format(l=l_label) for c in hashed] if only and repair else []
    deleting = [f"job INCREMENTAL deletes{k}, {n} {l_label}" for k in ("", " by a hashed key") for n in ("none", "100")]
    cases = [f"job VERIFY baseline {l_label}", f"job VERIFY {l_label}", diffs_case,
             *([f"job VERIFY only {l_label}"] if only else []), *hashed, *deleting]
    if all(b.skip(c) for c in cases):
        return
    cfg = {f"{workload.SCHEMA}.{names['large']}": entry("postgres", name, "INCREMENTAL")}
    forget_target(name)
    b.job(f"job VERIFY initial {l_label}", cfg, large, size=l_label, mode="INCREMENTAL", runs=1, group="setup",
          force=True)
    b.job(cases[0], cfg, large, size=l_label, mode="INCREMENTAL", group="verify")
    drifts = verify.Drifts(names["large"], target, large)
    columns = [r[0] for r in sf_rows(f"SELECT COLUMN_NAME FROM {stack.SNOWFLAKE_DATABASE}.INFORMATION_SCHEMA.COLUMNS "
                                     f"WHERE TABLE_SCHEMA = '{TARGET_SCHEMA}' AND TABLE_NAME = '{name}' "
                                     f"ORDER BY ORDINAL_POSITION")]
    held = len(drifts.keys["extra"])

    def after(i: int) -> None:
        try:
            if repair:      # the target equals the source (which lacks the held keys until restored)
                b.job(f"check VERIFY after REPAIR {l_label}", cfg, large - held, size=l_label, mode="VERIFY",
                      group="check", runs=1, args=("--VERIFY", "true"), check=verify.expect_no_drift(large - held),
                      force=True)
        finally:
            drifts.restore_source()

    with verify.PgStatements() as pg:
        b.job(cases[1], cfg, large, size=l_label, mode="VERIFY", group="verify", args=("--VERIFY", "true"),
              check=verify.expect_no_drift(large), record_sql=pg)
        if only:
            b.job(cases[3], cfg, large, size=l_label, mode="VERIFY", group="verify",
                  args=("--LOAD", "false", "--VERIFY", "true"), check=verify.expect_no_drift(large))
        # the same target compared by (ID, ACCOUNT_ID): a key that is not one integer column (no drift first:
        # a REPAIR case leaves the target without the held keys once they are back in the source)
        by_two = {t: {**e, "primary_key": ["id", "account_id"]} for t, e in cfg.items()}
        if hashed:
            b.job(hashed[0], by_two, large, size=l_label, mode="VERIFY", group="verify",
                  args=("--LOAD", "false", "--VERIFY", "true"), check=verify.expect_no_drift(large), record_sql=pg)
        b.job(diffs_case, cfg, large - held, size=l_label, mode="REPAIR" if repair else "VERIFY", group="verify",
              args=("--REPAIR" if repair else "--VERIFY", "true"), record_sql=pg,
              before=lambda i: drifts.inject(sf_execute, columns), after=after,
              check=verify.expect_drifts(drifts, repair))
        if hashed and not b.skip(hashed[1]):
            b.job(hashed[1], by_two, large - held, size=l_label, mode="REPAIR", group="verify",
                  args=("--LOAD", "false", "--REPAIR", "true"), record_sql=pg,
                  before=lambda i: drifts.inject(sf_execute, columns), after=after,
                  check=verify.expect_drifts(drifts, repair))
    deletes_cases(b, cfg, large, l_label, repair and only)
    forget_target(name)


def deletes_cases(b: Bench, cfg: dict, large: int, l_label: str, mends: bool) -> None:
    """``deletes: delete`` on the large table, after a no-delta INCREMENTAL load (as ``job VERIFY baseline``):
    with nothing deleted (one key-only aggregate per side), and with 100 scattered source rows deleted (found,
    then deleted in the load's transaction); by the integer key, and by (ID, ACCOUNT_ID), a hashed key. A
    REPAIR first puts back what the cases before left (keys held aside, missing in the target once back)."""
    by_two = {"primary_key": ["id", "account_id"]}
    cases = [(f"job INCREMENTAL deletes, none {l_label}", {}, None),
             (f"job INCREMENTAL deletes by a hashed key, none {l_label}", by_two, None),
             (f"job INCREMENTAL deletes, 100 {l_label}", {}, 11),
             (f"job INCREMENTAL deletes by a hashed key, 100 {l_label}", by_two, 12)]
    if all(b.skip(c) for c, _, _ in cases):
        return
    table = next(iter(cfg))
    for case, extra, held_seed in cases:
        if b.skip(case):
            continue
        if mends:
            b.job(f"check REPAIR before {case}", cfg, large, size=l_label, mode="REPAIR", group="check", runs=1,
                  args=("--LOAD", "false", "--REPAIR", "true"), check=lambda parsed, rc: None, force=True)
        tables = {table: {**cfg[table], "deletes": "delete", **extra}}
        if held_seed is None:
            b.job(case, tables, large, size=l_label, mode="INCREMENTAL", group="verify",
                  check=verify.expect_deleted(0, large))
            continue
        gone = verify.SourceDeletes(table.split(".")[1], large, seed=held_seed)
        b.job(case, tables, large - gone.n, size=l_label, mode="INCREMENTAL", group="verify", runs=1,
              before=lambda i, g=gone: g.hold(), after=lambda i, g=gone: g.restore(),
              check=verify.expect_deleted(gone.n, large))


# ----- machine and versions ----------------------------------------------------------------------------------


def _cmd_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text and out.returncode == 0 else "?"


def machine(env: dict) -> dict:
    import importlib.metadata as md

    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    java = Path(env["JAVA_HOME"]) / "bin" / "java"
    pkgs = {}
    for name in ("pyspark", "snowflake-connector-python", "fakesnow", "duckdb", "moto", "boto3"):
        try:
            pkgs[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return {
        "nproc": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1), "cpu": cpu.group(1) if cpu else "?",
        "os": platform.platform(), "python": platform.python_version(),
        "java": _cmd_version([str(java), "-version"]),
        "postgres": _cmd_version([str(stack.Postgres.bindir() / "postgres"), "--version"]),
        "mariadb": _cmd_version([stack.MariaDB.binary("mariadbd"), "--version"]),
        "psql": _cmd_version(["psql", "--version"]), "gzip": _cmd_version(["gzip", "--version"]),
        "zstd": _cmd_version(["zstd", "--version"]), "jdbc_jars": [Path(j).name for j in stack.spark_jars()],
        "packages": pkgs, "peers": peers.versions(),
        "job_sha256": hashlib.sha256(JOB.read_bytes()).hexdigest()[:12],
        "git": _cmd_version(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
    }


# ----- main ---------------------------------------------------------------------------------------------------


def main() -> int:
    prof = workload.profile()
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    variant_runs = int(os.environ.get("BENCH_VARIANT_RUNS", "1"))
    started = time.monotonic()
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()
    was_running = all(svc.pid() is not None for svc in stack.SERVICES)
    stack.up()
    try:
        seed.seed_aws()            # SSM parameters + bucket; NOT seed.seed(): it recreates the demo databases
        seed.seed_snowflake()
        names = workload.prepare(prof)
        status = peers.availability()
        _log(f"peers: {status}")
        env = stack.env()
        drop_bench_schemas()
        with tempfile.TemporaryDirectory(prefix="bench-") as work:
            bench = Bench(env, runs, variant_runs, Path(work))
            load_start = os.getloadavg()
            run_cases(bench, prof, names, status)
        drop_bench_schemas()       # fakesnow keeps every table in memory
        results = {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": "".join(f"{k}={shlex.quote(os.environ[k])} " for k in
                               ("BENCH_ONLY", "BENCH_RUNS", "BENCH_SIZES", "BENCH_VARIANT_RUNS") if k in os.environ)
            + "make bench",
            "profile": prof, "runs": runs, "variant_runs": variant_runs, "peers": status,
            "machine": {**machine(env), "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
            "wall_s": round(time.monotonic() - started, 1),
            "measurements": bench.measurements,
        }
    finally:
        if not was_running and os.environ.get("KEEP_STACK") != "1":
            stack.down()
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "partial" if os.environ.get("BENCH_ONLY") else "latest"     # a subset never replaces latest.*
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(report.markdown(results))
    png = RESULTS / ("throughput.png" if name == "latest" else "partial.png")
    chart_error = report.draw_chart_with_peers(RESULTS / f"{name}.json", png)
    _log(f"wrote {RESULTS}/{name}.json, {name}.md" + (f", {png.name}" if chart_error is None
                                                      else f" (no chart: {chart_error})"))
    _log(f"bench wall time {results['wall_s']:.0f}s")
    print(report.markdown(results))
    failed = [m["case"] for m in bench.measurements if not m["ok"] and not m.get("unavailable")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
