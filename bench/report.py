"""Turn bench/results/latest.json into the markdown table, the target checks and the chart.

    .venv/bin/python -m bench.report                          rewrite latest.md from latest.json
    bench/.peers/bin/python -m bench.report chart JSON PNG    draw the chart (matplotlib lives in bench/.peers)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER_ORDER = ["psql|gzip -1", "dlt connectorx", "dlt pyarrow", "sling"]


# ----- aggregation -------------------------------------------------------------------------------------


def _stats(values: list[float | None]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def aggregate(measurements: list[dict]) -> dict[str, dict]:
    """case -> {tool, group, size, rows, runs, ok, unavailable, <metric>: {median, min, max}}, in run order."""
    cases: dict[str, dict] = {}
    for m in measurements:
        case = cases.setdefault(m["case"], {k: m.get(k) for k in ("case", "tool", "group", "size", "rows", "mode",
                                                                   "source", "unavailable")} | {"all": []})
        case["all"].append(m)
    for case in cases.values():
        ok = [m for m in case.pop("all") if m.get("ok")]
        case["runs_ok"] = len(ok)
        case["runs"] = sum(1 for m in measurements if m["case"] == case["case"] and not m.get("unavailable"))
        case["errors"] = sorted({m["error"] for m in measurements if m["case"] == case["case"] and m.get("error")})
        case["wall_s"] = _stats([m["wall_s"] for m in ok])
        case["cpu_s"] = _stats([m["cpu_s"] for m in ok])
        case["load1"] = _stats([m["load1_before"] for m in ok])
        for key in ("driver", "jvm", "tree"):
            case[f"mem_{key}_mb"] = _stats([m["mem_mb"][key] for m in ok])
        for key in ("session_s", "plan_s", "extract_stage_s", "copy_s", "load_s", "after_session_s"):
            case[key] = _stats([m["phases"][key] for m in ok if m.get("phases")])
        case["throughput"] = _stats([case["rows"] / m["wall_s"] for m in ok])
        case["es_throughput"] = _stats([case["rows"] / m["phases"]["extract_stage_s"] for m in ok  # one table only
                                        if m.get("phases") and m["phases"]["extract_stage_s"] and m["tables"] == 1])
        first = ok[0] if ok else {}
        case["sql"], case["predicate"], case["partitions"] = first.get("sql"), first.get("predicate"), \
            first.get("partitions")
        names = sorted({name for m in ok for name in (m.get("steps") or {})})
        case["steps"] = {name: _stats([(m.get("steps") or {}).get(name, 0.0) for m in ok]) for name in names}
        case["verify_sql"] = first.get("verify_sql")
        case["summary_table"] = ((first.get("summary") or {}).get("tables") or [None])[0]
        case["rows_read"] = first.get("rows_read")
    return cases


# ----- formatting --------------------------------------------------------------------------------------


def _n(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def _med(s: dict | None, digits: int = 1) -> str:
    return _n(s["median"], digits) if s else "-"


def _range(s: dict | None, digits: int = 1) -> str:
    if not s:
        return "-"
    if s["min"] == s["max"]:
        return _n(s["median"], digits)
    return f"{_n(s['median'], digits)} [{_n(s['min'], digits)}–{_n(s['max'], digits)}]"


def _status(c: dict) -> str:
    if c.get("unavailable"):
        return "unavailable"
    return f"{c['runs_ok']}/{c['runs']}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]
    return "\n".join(lines)


def job_table(cases: dict[str, dict], group: str) -> str:
    head = ["case", "rows", "ok", "session s", "plan s", "extract+stage s", "copy s", "load s", "total s",
            "rows/s total", "rows/s extract+stage", "driver MB", "JVM MB", "CPU s", "load"]
    rows = []
    for c in cases.values():
        if c["group"] != group or c["tool"] != "glue_etl_job":
            continue
        rows.append([c["case"], f"{c['rows']:,}", _status(c), _med(c["session_s"]), _med(c["plan_s"]),
                     _range(c["extract_stage_s"]), _med(c["copy_s"]), _med(c["load_s"]), _range(c["wall_s"]),
                     _med(c["throughput"]), _med(c["es_throughput"]), _med(c["mem_driver_mb"], 0),
                     _med(c["mem_jvm_mb"], 0), _med(c["cpu_s"]), _med(c["load1"])])
    return _table(head, rows)


def peer_table(cases: dict[str, dict], group: str) -> str:
    head = ["case", "rows", "ok", "total s", "rows/s", "peak RSS MB (process tree)", "CPU s", "load"]
    rows = []
    for c in cases.values():
        if c["group"] != group or c["tool"] == "glue_etl_job":
            continue
        if c.get("unavailable"):
            rows.append([c["case"], f"{c['rows']:,}", "unavailable", "-", "-", "-", c["unavailable"][:80], "-"])
            continue
        rows.append([c["case"], f"{c['rows']:,}", _status(c), _range(c["wall_s"]), _med(c["throughput"]),
                     _med(c["mem_tree_mb"], 0), _med(c["cpu_s"]), _med(c["load1"])])
    return _table(head, rows)


def _find(cases: dict[str, dict], **want) -> dict | None:
    for c in cases.values():
        if all(c.get(k) == v for k, v in want.items()) and c["runs_ok"]:
            return c
    return None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def target_checks(results: dict, cases: dict[str, dict]) -> list[str]:
    prof = results["profile"]
    s_label, l_label = _label(prof["small"]), _label(prof["large"])
    out = []
    full_l = _find(cases, case=f"job FULL {l_label}")
    full_s = _find(cases, case=f"job FULL {s_label}")
    es = full_l["es_throughput"]["median"] if full_l else None
    whole = full_l["throughput"]["median"] if full_l else None
    line = [(f"**Extract+stage throughput, {l_label}** (job's `extract`+`stage` steps, session start excluded): "
            f"{_n(es)} rows/s (whole job process: {_n(whole)} rows/s).")]
    for tool in PEER_ORDER:
        peer = _find(cases, tool=tool, size=l_label, group="baseline")
        if peer is None:
            line.append(f"{tool}: unavailable or failed.")
            continue
        pt = peer["throughput"]["median"]
        line.append(f"vs {tool} ({_n(pt)} rows/s whole process): extract+stage {_ratio(es, pt)}, "
                    f"whole job {_ratio(whole, pt)}.")
    out.append(" ".join(line))

    incr = _find(cases, case=f"job INCREMENTAL 1% {l_label}")
    if incr and full_l:
        i_t, f_t = incr["wall_s"]["median"], full_l["wall_s"]["median"]
        i_a, f_a = incr["after_session_s"]["median"], full_l["after_session_s"]["median"]
        out.append(f"**INCREMENTAL 1% of {l_label}**: {i_t:.1f}s = {100 * i_t / f_t:.0f}% of FULL {l_label} "
                   f"({f_t:.1f}s) for the whole process; {i_a:.1f}s vs {f_a:.1f}s = {100 * i_a / f_a:.0f}% after "
                   f"session start. Rows read: {incr['rows_read']:,} of {prof['large']:,}. "
                   f"Pushed-down SQL (step=extract): `{incr['sql']}`")
    else:
        out.append(f"**INCREMENTAL 1% of {l_label}**: not measured (a run failed).")

    n = prof["many_tables"]
    many = _find(cases, case=f"job {n} tables")
    if many:
        after = many["after_session_s"]["median"]
        session = many["session_s"]["median"]
        out.append(f"**{n} tables x {prof['many_rows']:,} rows**: {after / n:.2f}s per table after session start "
                   f"({after:.1f}s for {n} tables at --PARALLELISM 4; session start {session:.1f}s; "
                   f"whole process {many['wall_s']['median']:.1f}s).")
    if full_s and full_l:
        d_s, d_l = full_s["mem_driver_mb"]["median"], full_l["mem_driver_mb"]["median"]
        j_s, j_l = full_s["mem_jvm_mb"]["median"], full_l["mem_jvm_mb"]["median"]
        out.append(f"**Driver memory, FULL {s_label} vs {l_label}** (peak RSS): Python driver {d_s:.0f} MB vs "
                   f"{d_l:.0f} MB ({_ratio(d_l, d_s)}); JVM (Spark driver + local executors) {j_s:.0f} MB vs "
                   f"{j_l:.0f} MB ({_ratio(j_l, j_s)}).")
    return out


VERIFY_STEPS = ("plan", "extract", "stage", "copy", "load", "verify")


def verify_table(cases: dict[str, dict]) -> str:
    head = ["case", "rows", "ok", "session s", "plan s", "extract+stage+copy+load s", "verify s", "other steps s",
            "total s", "CPU s", "load", "found (missing/extra/different)", "repair"]
    rows = []
    for c in cases.values():
        if c["group"] not in ("verify", "check") or c["tool"] != "glue_etl_job":
            continue
        st = c.get("steps") or {}
        med = {k: v["median"] for k, v in st.items() if v}
        moved = sum(med.get(k, 0.0) for k in ("extract", "stage", "copy", "load"))
        other = ", ".join(f"{k} {_n(v)}" for k, v in med.items() if k not in VERIFY_STEPS) or "-"
        t = c.get("summary_table") or {}
        v, r = t.get("verified"), t.get("repair")
        found = f"{v['missing']}/{v['extra']}/{v['different']} of {v['rows']:,}" if v else "-"
        repair = ", ".join(f"{k} {val}" for k, val in r.items()) if isinstance(r, dict) else "-"
        rows.append([c["case"], f"{c['rows']:,}", _status(c), _med(c["session_s"]), _med(c["plan_s"]),
                     _n(moved) if c["runs_ok"] else "-", _range(st.get("verify")), other, _range(c["wall_s"]),
                     _med(c["cpu_s"]), _med(c["load1"]), found, repair])
    return _table(head, rows)


def verify_sql_lines(cases: dict[str, dict]) -> list[str]:
    """Per VERIFY case and side: the statements by kind (count, seconds) and the first of each kind."""
    out = []
    for c in cases.values():
        sql = c.get("verify_sql")
        if c["group"] != "verify" or not sql:
            continue
        for side in ("postgres", "snowflake"):
            kinds = sql.get(side) or {}
            counts = "; ".join(f"{kind} {k['n']} statements, {k['seconds']:.1f} s" for kind, k in kinds.items()
                               if kind != "all")
            out.append(f"- {c['case']}, {side} ({'server' if side == 'postgres' else 'client'}-side time): "
                       f"{counts or 'none'}")
            for kind in ("fingerprint", "key_hashes"):
                if kind in kinds:
                    out.append(f"  - first {kind} statement: `{kinds[kind]['sql']}`")
    return out


def verify_checks(cases: dict[str, dict], l_label: str) -> list[str]:
    full = _find(cases, case=f"job FULL {l_label}")
    none = _find(cases, case=f"job VERIFY {l_label}")
    base = _find(cases, case=f"job VERIFY baseline {l_label}")
    diffs = next((c for c in cases.values() if c["case"].startswith("job VERIFY") and " 100 diffs " in c["case"]
                  and c["runs_ok"]), None)
    if not full or not none:
        return [f"**VERIFY of {l_label}**: not measured (FULL {l_label} or the VERIFY case is missing or failed)."]
    f_t, v_t = full["wall_s"]["median"], none["wall_s"]["median"]
    v_s = none["steps"]["verify"]["median"]
    out = [f"**VERIFY {l_label}, no drift**: whole run {v_t:.1f}s = **{100 * v_t / f_t:.0f}%** of FULL {l_label} "
           f"({f_t:.1f}s; target <= 25%); the verify step alone {v_s:.1f}s = {100 * v_s / f_t:.0f}%"
           + (f"; the same run without --VERIFY {base['wall_s']['median']:.1f}s, so VERIFY added "
              f"{v_t - base['wall_s']['median']:.1f}s = {100 * (v_t - base['wall_s']['median']) / f_t:.0f}%"
              if base else "") + "."]
    alone = _find(cases, case=f"job VERIFY only {l_label}")
    if alone:
        a_t = alone["wall_s"]["median"]
        out.append(f"**VERIFY {l_label} without a load** (`--LOAD false --VERIFY true`), no drift: whole run "
                   f"{a_t:.1f}s = **{100 * a_t / f_t:.0f}%** of FULL {l_label} (target <= 25%).")
    if diffs:
        d_t = diffs["wall_s"]["median"]
        out.append(f"**{diffs['case']}**: whole run {d_t:.1f}s, {d_t - v_t:.1f}s beyond the no-drift run = "
                   f"**{100 * (d_t - v_t) / f_t:.0f}%** of FULL {l_label} (target <= 10%); steps: "
                   + ", ".join(f"{k} {v['median']:.1f}s" for k, v in diffs["steps"].items() if v) + ".")
    return out


def _label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else f"{rows // 1000}k"


def markdown(results: dict) -> str:
    cases = aggregate(results["measurements"])
    m = results["machine"]
    lines = [
        "# Benchmark results", "",
        (f"`{results['command']}` on {results['created']}: profile `{results['profile']['name']}`, "
        f"{results['runs']} runs per case (median [min–max]), {results['variant_runs']} per variant; "
        f"bench wall time {results['wall_s'] / 60:.1f} min."), "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}; load average "
        f"{m['loadavg_start'][0]:.2f} at start, {m['loadavg_end'][0]:.2f} at end. Python {m['python']}, "
        f"{m['java']}, pyspark {m['packages'].get('pyspark')}, {m['postgres']}, {m['mariadb']}, "
        f"fakesnow {m['packages'].get('fakesnow')} (DuckDB {m['packages'].get('duckdb')}), moto "
        f"{m['packages'].get('moto')}. Peers: " + ", ".join(f"{k} {v}" for k, v in m["peers"].items()) + ".", "",
        "## The job (glue_etl_job.py, one process per run)", "",
        ("session = process start to the job's `step=run` line (imports, SSM, Snowflake check, JVM + "
        "SparkSession); the step columns are the job's own `seconds=` (summed over tables); total = the "
        "whole process; MB = peak RSS (VmHWM); CPU s = user+system time of the process tree; load = the "
        "machine's 1-minute load average when the run started (2 cores: above 2, other work competed)."), "",
        job_table(cases, "main"), "",
        "Setup runs (not part of the checks): " + "; ".join(
            f"{c['case']} {_range(c['wall_s'])}s" for c in cases.values() if c["group"] == "setup") + ".", "",
        "Check runs (not timed as cases): " + ("; ".join(
            f"{c['case']} {_range(c['wall_s'])}s ({_status(c)} ok)" for c in cases.values() if c["group"] == "check")
            or "none") + ".", "",
        "## Peers on the same PostgreSQL tables (whole process)", "",
        peer_table(cases, "baseline"), "",
        "## Target checks", "",
        *[f"- {line}" for line in target_checks(results, cases)], "",
        "## VERIFY / REPAIR (the large table loaded once by INCREMENTAL; runs that read no new rows)", "",
        verify_table(cases), "",
        *[f"- {line}" for line in verify_checks(cases, _label(results["profile"]["large"]))], "",
        "Pushed-down SQL of VERIFY (PostgreSQL: its log, `log_min_duration_statement = 0`; Snowflake: "
        "bench/sqlrecord):", "",
        *verify_sql_lines(cases), "",
        "## Variants (tuning the job through its config keys / runtime arguments; compressors)", "",
        job_table(cases, "variant"), "",
        peer_table(cases, "variant"), "",
    ]
    failures = [f"- {c['case']}: {e}" for c in cases.values() for e in c["errors"]]
    if failures:
        lines += ["## Failed runs", "", *failures, ""]
    return "\n".join(lines)


# ----- chart --------------------------------------------------------------------------------------------


def draw_chart(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cases = aggregate(results["measurements"])
    prof = results["profile"]
    sizes = [_label(prof["small"]), _label(prof["large"])]
    series = [("job: whole process", lambda s: _find(cases, case=f"job FULL {s}"), "throughput"),
              ("job: extract+stage", lambda s: _find(cases, case=f"job FULL {s}"), "es_throughput")]
    series += [(tool, lambda s, t=tool: _find(cases, tool=t, size=s, group="baseline"), "throughput")
               for tool in PEER_ORDER]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.8 / len(series)
    for i, (name, find, key) in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for j, size in enumerate(sizes):
            c = find(size)
            if c and c.get(key):
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(c[key]["median"])
                lo.append(c[key]["median"] - c[key]["min"])
                hi.append(c[key]["max"] - c[key]["median"])
        label = name if xs else f"{name} (unavailable)"
        bars = ax.bar(xs, ys, width, yerr=[lo, hi] if xs else None, capsize=3, label=label)
        for bar, y in zip(bars, ys, strict=True):
            ax.annotate(f"{y / 1000:.0f}k", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(sizes)), [f"{s} rows" for s in sizes])
    ax.set_ylabel("rows per second (median, whiskers min–max)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:.0f}k"))
    ax.set_title(f"PostgreSQL table -> gzip CSV / DuckDB / Snowflake emulator, {results['machine']['nproc']} cores, "
                 f"runs={results['runs']}, {results['created'][:10]}", fontsize=10)
    ax.legend(fontsize=8, ncols=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def draw_chart_with_peers(json_path: Path, png: Path) -> str | None:
    """Draw the chart with bench/.peers' matplotlib; returns an error text or None."""
    python = ROOT / "bench" / ".peers" / "bin" / "python"
    if not python.exists():
        return "bench/.peers is missing (no matplotlib)"
    proc = subprocess.run([str(python), "-m", "bench.report", "chart", str(json_path), str(png)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["failed"])[-1]


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "chart":
        draw_chart(json.loads(Path(argv[1]).read_text()), Path(argv[2]))
        return 0
    src = Path(argv[0]) if argv else RESULTS / "latest.json"
    results = json.loads(src.read_text())
    src.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
