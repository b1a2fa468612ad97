"""Config-driven batch ETL: MySQL / PostgreSQL -> Snowflake, as one AWS Glue 5.0 job.

Every table registered in ``config.py`` (or a JSON file given with ``--CONFIG``) runs
through the same pipeline::

    plan      read the table's watermark (Snowflake state table) and the source schema
    extract   Spark JDBC read; the delta predicate is pushed into the source query
    stage     Spark's CSV writer, zlib (deflate), to s3://<bucket>/<job>/<database>/<table>/<day>/<run>/
    load      COPY INTO a staging table, then ONE transaction applies the load mode
              and moves the watermark
    report    CloudWatch metrics and a line in the run summary

The file is ordered in three sections, each depending only on the ones above it:

1. Pure core      config model and validation, --OBJ parsing, type mapping, SQL
                  builders, delta windows, S3 paths. No I/O: values in, values out.
2. Adapters       SSM secrets, JDBC source, S3 staging, Snowflake, CloudWatch.
                  Each wraps one client and is handed it from outside.
3. Orchestration  ``Table`` (one pipeline per config entry), ``run_tables`` and
                  ``main()`` which builds the clients and the Spark session.

Importing this module has no side effects; ``main()`` is only called when the file
runs as a script (which is how Glue runs it).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import json
import logging
import os
import random
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

log = logging.getLogger("glue_etl")

# =====================================================================================
# 1. PURE CORE
# =====================================================================================

# ----- errors ------------------------------------------------------------------------


class EtlError(Exception):
    """A failure with a message meant for the user: it names the table, the key and the fix."""


class ConfigError(EtlError):
    """The configuration or the runtime arguments are wrong; nothing has run yet."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s):\n{lines}")


# ----- config model ------------------------------------------------------------------

MODES = ("FULL", "INCREMENTAL", "TRUNCATE_INSERT", "UPSERT", "APPEND")
NULL_TIMESTAMP_POLICIES = ("include", "exclude", "fail")
TABLE_KEYS = {
    "ssmKey", "target_table", "primary_key", "timestamp_column", "operations",
    "partition_column", "num_partitions", "columns", "transform", "lookback_seconds",
    "null_timestamps", "fetch_size", "count_source", "verify", "deletes", "max_delete_fraction",
}
OPERATION_KEYS = {"type", "truncate_before_insert"}
# Runtime arguments that name connection groups (SSM paths of source credentials).
CONNECTION_GROUPS = ("AFFILIATE", "PROGRAM360", "OPS")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SUFFIX = re.compile(r"^[A-Za-z0-9_]*$")


@dataclass(frozen=True)
class TableConfig:
    """One validated entry of the table registry."""

    key: str                               # "namespace.table": the source table
    ssm_key: str                           # connection group, e.g. "AFFILIATE"
    target_schema: str                     # Snowflake schema, upper case
    target_name: str                       # Snowflake table, upper case
    mode: str
    primary_key: tuple[str, ...] = ()
    timestamp_column: str | None = None
    truncate_before_insert: bool = False
    partition_column: str | None = None
    num_partitions: int | None = None
    columns: tuple[str, ...] | None = None
    transform: Callable[[Any], Any] | None = None
    lookback_seconds: int = 0
    null_timestamps: str = "include"
    fetch_size: int = 10_000
    count_source: bool = True
    verify: bool = False                   # compare with the source after each load (Reconciler)
    deletes: str = "ignore"                # source deletes: ignore, delete or soft (DeleteDetector)
    max_delete_fraction: float = 0.1       # the guard: refuse a run deleting more of the target (DEFAULT_...)

    @property
    def namespace(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def source_table(self) -> str:
        return self.key.split(".", 1)[1]

    @property
    def target(self) -> str:
        """SCHEMA.TABLE, unquoted, for messages and state keys."""
        return f"{self.target_schema}.{self.target_name}"

    @property
    def delta_column(self) -> str | None:
        """The column INCREMENTAL compares with the watermark."""
        if self.timestamp_column:
            return self.timestamp_column
        return self.primary_key[0] if len(self.primary_key) == 1 else None


def _as_key_list(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _table_problems(key: str, entry: Any, groups: Iterable[str] | None) -> list[str]:
    """Every problem of one registry entry, as messages naming the table and the key."""
    if not isinstance(entry, Mapping):
        return [f"{key}: entry must be a dict, got {type(entry).__name__}"]
    problems = []
    where = f"{key}"
    parts = key.split(".")
    if len(parts) != 2 or not all(_IDENT.match(p) for p in parts):
        problems.append(f"{where}: the key must be 'namespace.table' with letters, digits and _ "
                        f"(the source schema/database and table)")
    for unknown in sorted(set(entry) - TABLE_KEYS):
        problems.append(f"{where}: unknown key '{unknown}' (allowed: {', '.join(sorted(TABLE_KEYS))})")

    ssm_key = entry.get("ssmKey")
    if not isinstance(ssm_key, str) or not ssm_key:
        problems.append(f"{where}: 'ssmKey' is required: the connection group, one of "
                        f"{', '.join(CONNECTION_GROUPS)}")
    elif groups is not None and ssm_key not in groups:
        problems.append(f"{where}: 'ssmKey' is '{ssm_key}' but no --{ssm_key} runtime argument names "
                        f"its SSM path; pass --{ssm_key} /path/to/parameter")

    target = entry.get("target_table")
    tparts = target.split(".") if isinstance(target, str) else []
    if len(tparts) != 2 or not all(_IDENT.match(p) for p in tparts):
        problems.append(f"{where}: 'target_table' must be 'SCHEMA.TABLE' with letters, digits and _, "
                        f"got {target!r}")

    pk = _as_key_list(entry.get("primary_key"))
    if pk is None:
        problems.append(f"{where}: 'primary_key' must be a column name or a list of column names")
        pk = ()
    ts = entry.get("timestamp_column")
    if ts is not None and not isinstance(ts, str):
        problems.append(f"{where}: 'timestamp_column' must be a column name")
        ts = None
    named = [("primary_key", c) for c in pk] + ([("timestamp_column", ts)] if ts else [])
    pcol = entry.get("partition_column")
    if pcol is not None:
        named.append(("partition_column", pcol))
    cols = entry.get("columns")
    if cols is not None:
        if not isinstance(cols, (list, tuple)) or not cols:
            problems.append(f"{where}: 'columns' must be a non-empty list of column names")
        else:
            named += [("columns", c) for c in cols]
    for what, name in named:
        if not isinstance(name, str) or not _IDENT.match(name):
            problems.append(f"{where}: '{what}' has {name!r}: column names must be letters, digits and _")
    if isinstance(cols, (list, tuple)) and cols:
        lowered = {str(c).lower() for c in cols}
        for what, name in named:
            if what != "columns" and isinstance(name, str) and name.lower() not in lowered:
                problems.append(f"{where}: '{what}' {name} is not in 'columns'; add it there")

    ops = entry.get("operations")
    mode = None
    if not isinstance(ops, Mapping):
        problems.append(f"{where}: 'operations' is required, e.g. {{'type': 'INCREMENTAL'}}")
    else:
        for unknown in sorted(set(ops) - OPERATION_KEYS):
            problems.append(f"{where}: unknown key 'operations.{unknown}' "
                            f"(allowed: {', '.join(sorted(OPERATION_KEYS))})")
        mode = ops.get("type")
        if mode not in MODES:
            problems.append(f"{where}: 'operations.type' is {mode!r}; use one of {', '.join(MODES)}")
            mode = None
        if not isinstance(ops.get("truncate_before_insert", False), bool):
            problems.append(f"{where}: 'operations.truncate_before_insert' must be true or false")
    if mode:
        problems += _mode_problems(where, mode, pk, ts)

    num = entry.get("num_partitions")
    if num is not None and (not isinstance(num, int) or isinstance(num, bool) or num < 1):
        problems.append(f"{where}: 'num_partitions' must be a whole number >= 1")
    if num is not None and num != 1 and pcol is None and len(pk) != 1:
        problems.append(f"{where}: 'num_partitions' needs 'partition_column' (or a one-column primary_key)")
    look = entry.get("lookback_seconds", 0)
    if not isinstance(look, int) or isinstance(look, bool) or look < 0:
        problems.append(f"{where}: 'lookback_seconds' must be a whole number >= 0")
    fetch = entry.get("fetch_size", 10_000)
    if not isinstance(fetch, int) or isinstance(fetch, bool) or fetch < 1:
        problems.append(f"{where}: 'fetch_size' must be a whole number >= 1")
    if not isinstance(entry.get("count_source", True), bool):
        problems.append(f"{where}: 'count_source' must be true or false")
    if not isinstance(entry.get("verify", False), bool):
        problems.append(f"{where}: 'verify' must be true or false")
    problems += _delete_problems(where, entry, mode, pk)
    policy = entry.get("null_timestamps", "include")
    if policy not in NULL_TIMESTAMP_POLICIES:
        problems.append(f"{where}: 'null_timestamps' is {policy!r}; use one of "
                        f"{', '.join(NULL_TIMESTAMP_POLICIES)}")
    transform = entry.get("transform")
    if transform is not None and not callable(transform):
        problems.append(f"{where}: 'transform' must be a function that takes and returns a DataFrame "
                        f"(define it in config.py)")
    return problems


DELETE_POLICIES = ("ignore", "delete", "soft")
# The guard's default: a run may delete at most a tenth of the target's rows. Deletes between two runs of an
# INCREMENTAL/UPSERT table are normally a small share; a source read that is empty or partial (a wrong schema,
# a truncated or restoring table) shows as a large one and is refused before it costs more than this.
DEFAULT_MAX_DELETE_FRACTION = 0.1


def _delete_problems(where: str, entry: Mapping[str, Any], mode: str | None, pk: tuple[str, ...]) -> list[str]:
    """'deletes' and 'max_delete_fraction' (README "Deletes")."""
    policy = entry.get("deletes", "ignore")
    fraction = entry.get("max_delete_fraction", DEFAULT_MAX_DELETE_FRACTION)
    problems = []
    if policy not in DELETE_POLICIES:
        problems.append(f"{where}: 'deletes' is {policy!r}; use one of {', '.join(DELETE_POLICIES)}")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction <= 1:
        problems.append(f"{where}: 'max_delete_fraction' must be a number > 0 and <= 1 (the share of the "
                        f"target's rows one run may delete), got {fraction!r}")
    # max_delete_fraction applies without 'deletes' too: REPAIR (--REPAIR true, any table) deletes extra keys
    if policy in ("ignore", None) or policy not in DELETE_POLICIES:
        return problems
    ops = entry.get("operations")
    replaces = isinstance(ops, Mapping) and ops.get("truncate_before_insert") is True
    if mode and (mode not in ("INCREMENTAL", "UPSERT") or replaces):
        problems.append(f"{where}: 'deletes' applies to INCREMENTAL and UPSERT (a mode that merges); "
                        f"{mode}{' with truncate_before_insert' if replaces else ''} replaces the target and "
                        f"sees deletes already - remove 'deletes'")
    if not pk:
        problems.append(f"{where}: 'deletes' compares the source's and the target's primary_key values, and the "
                        f"table has none; set a 'primary_key', or 'deletes' to 'ignore' (FULL or TRUNCATE_INSERT "
                        f"see deletes)")
    return problems


def _mode_problems(where: str, mode: str, pk: tuple[str, ...], ts: str | None) -> list[str]:
    if mode == "UPSERT" and not pk:
        return [f"{where}: UPSERT needs 'primary_key' to match rows; add it or use APPEND"]
    if mode == "INCREMENTAL" and not ts and not pk:
        return [f"{where}: INCREMENTAL needs 'timestamp_column' or 'primary_key' to find new rows"]
    if mode == "INCREMENTAL" and not ts and len(pk) > 1:
        return [f"{where}: INCREMENTAL by primary key needs a one-column key; "
                f"set 'timestamp_column' for the composite key {list(pk)}"]
    return []


def build_table_config(key: str, entry: Mapping[str, Any]) -> TableConfig:
    """A TableConfig from an entry that ``_table_problems`` found valid."""
    schema, name = entry["target_table"].split(".")
    ops = entry["operations"]
    cols = entry.get("columns")
    return TableConfig(
        key=key,
        ssm_key=entry["ssmKey"],
        target_schema=schema.upper(),
        target_name=name.upper(),
        mode=ops["type"],
        primary_key=_as_key_list(entry.get("primary_key")) or (),
        timestamp_column=entry.get("timestamp_column"),
        truncate_before_insert=bool(ops.get("truncate_before_insert", False)),
        partition_column=entry.get("partition_column"),
        num_partitions=entry.get("num_partitions"),
        columns=tuple(cols) if cols else None,
        transform=entry.get("transform"),
        lookback_seconds=entry.get("lookback_seconds", 0),
        null_timestamps=entry.get("null_timestamps", "include"),
        fetch_size=entry.get("fetch_size", 10_000),
        count_source=entry.get("count_source", True),
        verify=entry.get("verify", False),
        deletes=entry.get("deletes", "ignore"),
        max_delete_fraction=float(entry.get("max_delete_fraction", DEFAULT_MAX_DELETE_FRACTION)),
    )


def validate_config(tables: Any, groups: Iterable[str] | None = None) -> dict[str, TableConfig]:
    """Check the whole registry and report every problem at once.

    ``groups`` are the connection groups that have a runtime argument; None skips that check.
    """
    if not isinstance(tables, Mapping) or not tables:
        raise ConfigError(["TABLES must be a non-empty dict keyed 'namespace.table'"])
    groups = set(groups) if groups is not None else None
    problems = [p for key, entry in tables.items() for p in _table_problems(str(key), entry, groups)]
    targets: dict[str, str] = {}
    for key, entry in tables.items():
        target = entry.get("target_table") if isinstance(entry, Mapping) else None
        if isinstance(target, str):
            other = targets.setdefault(target.upper(), key)
            if other != key:
                problems.append(f"{key}: 'target_table' {target} is also the target of {other}; "
                                f"each table needs its own target")
    if problems:
        raise ConfigError(problems)
    return {key: build_table_config(key, entry) for key, entry in tables.items()}


# ----- --OBJ: per-run mode overrides --------------------------------------------------


@dataclass(frozen=True)
class Override:
    mode: str
    suffix: str = ""


def parse_obj(text: str | None, known: Iterable[str]) -> dict[str, Override]:
    """Parse --OBJ '{"sales.orders": "INCREMENTAL;_DELTA"}' into per-table overrides."""
    if text is None or not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"--OBJ is not valid JSON ({exc.msg} at position {exc.pos}); "
                           f"expected e.g. '{{\"sales.orders\": \"INCREMENTAL;_DELTA\"}}'"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(["--OBJ must be a JSON object mapping 'namespace.table' to 'MODE[;SUFFIX]'"])
    known = set(known)
    problems, overrides = [], {}
    for key, value in raw.items():
        if key not in known:
            problems.append(f"--OBJ names '{key}', which is not in the config "
                            f"(known: {', '.join(sorted(known))})")
            continue
        if not isinstance(value, str):
            problems.append(f"--OBJ '{key}': value must be a string 'MODE[;SUFFIX]', got {value!r}")
            continue
        mode, _, suffix = value.partition(";")
        mode = mode.strip().upper()
        suffix = suffix.strip()
        if mode not in MODES:
            problems.append(f"--OBJ '{key}': mode {mode!r} is not one of {', '.join(MODES)}")
        elif not _SUFFIX.match(suffix):
            problems.append(f"--OBJ '{key}': suffix {suffix!r} may only hold letters, digits and _")
        else:
            overrides[key] = Override(mode, suffix.upper())
    if problems:
        raise ConfigError(problems)
    return overrides


def apply_overrides(tables: Mapping[str, TableConfig], overrides: Mapping[str, Override]) -> dict[str, TableConfig]:
    """Tables with --OBJ applied; a mode the table cannot run in is a ConfigError."""
    out, problems = dict(tables), []
    for key, ov in overrides.items():
        cfg = tables[key]
        problems += _mode_problems(f"{key} (--OBJ {ov.mode})", ov.mode, cfg.primary_key, cfg.timestamp_column)
        out[key] = dataclasses.replace(cfg, mode=ov.mode, target_name=cfg.target_name + ov.suffix)
    if problems:
        raise ConfigError(problems)
    return out


def select_tables(tables: Mapping[str, TableConfig], selection: str | None) -> dict[str, TableConfig]:
    """--TABLES 'a.b,c.d' limits the run to those tables (all when empty)."""
    if not selection:
        return dict(tables)
    wanted = [s.strip() for s in selection.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in tables]
    if unknown:
        raise ConfigError([f"--TABLES names '{u}', which is not in the config" for u in unknown])
    return {k: tables[k] for k in wanted}


# ----- runtime arguments --------------------------------------------------------------

REQUIRED_ARGS = ("JOB_NAME", "SNOWFLAKE")
OPTIONAL_ARGS = (*CONNECTION_GROUPS, "OBJ", "CONFIG", "STAGING_BUCKET", "TABLES", "PARALLELISM",
                 "STATE_SCHEMA", "KEEP_STAGING", "LEASE_SECONDS", "LEASE_WAIT_SECONDS", "VERIFY",
                 "REPAIR", "LOAD", "DRY_RUN", "PLAN_OUTPUT", "SUMMARY_OUTPUT")
# Upper-case names Glue itself passes or reserves (awsglue 5.0 Job.id_params, workflow runs); see
# docs/GLUE.md. Every other upper-case name must be one of ours: a typo is an error, not ignored.
GLUE_UPPER_ARGS = frozenset({"JOB_ID", "JOB_RUN_ID", "WORKFLOW_NAME", "WORKFLOW_RUN_ID", "SECURITY_CONFIGURATION"})
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")   # argparse takes these as values, not options


@dataclass(frozen=True)
class JobArgs:
    job_name: str
    snowflake_path: str
    groups: dict[str, str]                 # connection group -> SSM path
    obj: str | None = None
    config_path: str | None = None
    staging_bucket: str | None = None
    tables: str | None = None
    parallelism: int = 4
    state_schema: str = "ETL_META"
    keep_staging: bool = False
    lease_seconds: int = 120
    lease_wait_seconds: int = 0
    verify: bool = False
    repair: bool = False                    # VERIFY, then reload the differing keys (README "REPAIR")
    load: bool = True                       # False: VERIFY (or REPAIR) the targets as they are, load nothing
    dry_run: bool = False
    plan_output: str | None = None          # where a dry run also writes its plan: a local path or s3://bucket/key
    summary_output: str | None = None       # where a run also writes its JSON summary (same forms)
    resolved: dict = field(default_factory=dict, repr=False, compare=False)   # getResolvedOptions' dict


def _whole_number(values: Mapping[str, Any], name: str, default: int, minimum: int, problems: list[str]) -> int:
    try:
        number = int(values.get(name) or default)
        if number < minimum:
            raise ValueError
    except ValueError:
        problems.append(f"--{name} must be a whole number >= {minimum}, got {values.get(name)!r}")
        return default
    return number


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _flag(values: Mapping[str, Any], name: str, problems: list[str], default: bool = False) -> bool:
    """A true/false argument, strictly: a misspelt value is an error, not silently the default."""
    text = str(values.get(name) or default).strip().lower()
    if text not in (*_TRUE, *_FALSE):
        problems.append(f"--{name} must be true or false, got {values.get(name)!r}")
        return default
    return text in _TRUE


# "General purpose bucket naming rules" (Amazon S3 User Guide,
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html): 3-63 characters,
# lower-case letters, digits, '.' and '-', starting and ending with a letter or digit, no '..'.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def s3_location(uri: str) -> tuple[str, str] | None:
    """(bucket, key) of an ``s3://bucket/key`` object URI; None for anything else."""
    if not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[5:].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket or not key or key.endswith("/"):
        return None
    return bucket, key


def output_problems(name: str, where: str | None) -> list[str]:
    """An output argument names a local file or an S3 object (``s3://bucket/key``), nothing else."""
    if where is None:
        return []
    if where.startswith("s3://"):
        return [] if s3_location(where) else [
            f"--{name} {where!r} must be s3://<bucket>/<key>: a valid bucket name (3-63 characters: "
            f"a-z, 0-9, '.', '-') and an object key that does not end with '/'"]
    if _SCHEME.match(where):
        return [f"--{name} {where!r}: only a local path or an s3://<bucket>/<key> URI can be written"]
    if not where.strip() or where.endswith(("/", os.sep)):
        return [f"--{name} {where!r} must name a file, not a directory"]
    return []


def _unknown_arg(name: str) -> str:
    import difflib

    ours = (*REQUIRED_ARGS, *OPTIONAL_ARGS)
    close = ([n for n in ours if n.startswith(name.upper())]                  # an abbreviation first
             or difflib.get_close_matches(name.upper(), ours, n=1, cutoff=0.5))
    hint = f" (did you mean --{close[0]}?)" if close else f"; job arguments are --{', --'.join(ours)}"
    return f"unknown runtime argument --{name}{hint}"


def argument_problems(argv: Sequence[str]) -> list[str]:
    """What getResolvedOptions would let pass silently: unknown or abbreviated upper-case names,
    our arguments without a value (or with one starting with '-'), stray words. An argument given
    twice keeps its last value, as with getResolvedOptions.

    Glue's own arguments (lower/mixed case such as --TempDir, --job-bookmark-option, --enable-*,
    --extra-py-files, and the upper-case GLUE_UPPER_ARGS) are left alone, with their values.
    """
    ours = {*REQUIRED_ARGS, *OPTIONAL_ARGS}
    problems: list[str] = []
    i, tokens = 0, list(argv[1:])
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("--"):
            problems.append(f"unexpected word {token[:40]!r}: every value follows its --NAME "
                            f"(quote a value that has spaces)")
            continue
        name, has_inline, _ = token[2:].partition("=")
        follows = tokens[i] if i < len(tokens) else None
        takes_next = not has_inline and follows is not None and (not follows.startswith("-")
                                                                 or _NEGATIVE_NUMBER.match(follows) is not None)
        if name in ours:
            if not has_inline and not takes_next:
                why = f"is followed by {follows[:40]!r}" if follows is not None else "is the last word"
                problems.append(f"--{name} needs a value, but it {why} (a value may not start with '-')")
                takes_next = follows is not None and not follows.startswith("--")
        elif name.upper() in ours or (name.isupper() and name not in GLUE_UPPER_ARGS):
            problems.append(_unknown_arg(name))
        elif follows is not None and follows.startswith("-") and not follows.startswith("--"):
            takes_next = True           # a Glue argument's value such as '-Xss4m' (not ours to judge)
        if takes_next:
            i += 1
    return problems


def parse_args(argv: Sequence[str], resolve: Callable[[Sequence[str], list[str]], dict] | None = None) -> JobArgs:
    """Read the Glue job arguments (``--NAME value``) with awsglue's getResolvedOptions, strictly:
    ``argument_problems`` first, and getResolvedOptions' own errors (GlueArgumentError) as ConfigError."""
    if resolve is None:
        from awsglue.utils import getResolvedOptions as resolve
    present = {a[2:].split("=", 1)[0] for a in argv[1:] if a.startswith("--")}
    problems = argument_problems(argv)
    problems += [f"missing runtime argument --{name}" for name in REQUIRED_ARGS if name not in present]
    if problems:
        raise ConfigError(problems)
    names = list(REQUIRED_ARGS) + [n for n in OPTIONAL_ARGS if n in present]
    try:
        values = resolve(list(argv), names)
    except Exception as exc:  # awsglue.utils.GlueArgumentError (argparse's message) or its RuntimeError
        raise ConfigError([f"runtime arguments: {exc}"]) from None
    parallelism = _whole_number(values, "PARALLELISM", 4, 1, problems)
    lease_seconds = _whole_number(values, "LEASE_SECONDS", 120, 2, problems)
    lease_wait_seconds = _whole_number(values, "LEASE_WAIT_SECONDS", 0, 0, problems)
    state_schema = (values.get("STATE_SCHEMA") or "ETL_META").upper()
    if not _IDENT.match(state_schema):
        problems.append(f"--STATE_SCHEMA {state_schema!r} must be letters, digits and _")
    dry_run = _flag(values, "DRY_RUN", problems)
    verify, repair = _flag(values, "VERIFY", problems), _flag(values, "REPAIR", problems)
    keep_staging = _flag(values, "KEEP_STAGING", problems)
    load = _flag(values, "LOAD", problems, default=True)
    if not load and dry_run:
        problems.append("--LOAD false: a dry run loads nothing already; leave --LOAD out of a dry run")
    elif not load and not verify and not repair:
        problems.append("--LOAD false loads nothing and checks nothing: add --VERIFY true (compare each target "
                        "with its source) or --REPAIR true (and mend what differs), or leave --LOAD out")
    plan_output, summary_output = values.get("PLAN_OUTPUT"), values.get("SUMMARY_OUTPUT")
    problems += output_problems("PLAN_OUTPUT", plan_output) + output_problems("SUMMARY_OUTPUT", summary_output)
    if plan_output is not None and not dry_run:
        problems.append("--PLAN_OUTPUT is written by a dry run only: add --DRY_RUN true, or leave --PLAN_OUTPUT out")
    if summary_output is not None and dry_run:
        problems.append("--SUMMARY_OUTPUT is written by a run that loads; a dry run loads nothing: "
                        "use --PLAN_OUTPUT for its plan, or leave --SUMMARY_OUTPUT out")
    if problems:
        raise ConfigError(problems)
    return JobArgs(
        job_name=values["JOB_NAME"],
        snowflake_path=values["SNOWFLAKE"],
        groups={g: values[g] for g in CONNECTION_GROUPS if values.get(g)},
        obj=values.get("OBJ"),
        config_path=values.get("CONFIG"),
        staging_bucket=values.get("STAGING_BUCKET"),
        tables=values.get("TABLES"),
        parallelism=parallelism,
        state_schema=state_schema,
        keep_staging=keep_staging,
        lease_seconds=lease_seconds,
        lease_wait_seconds=lease_wait_seconds,
        verify=verify or repair,
        repair=repair,
        load=load,
        dry_run=dry_run,
        plan_output=plan_output,
        summary_output=summary_output,
        resolved=dict(values),
    )


# ----- secrets -------------------------------------------------------------------------

DEFAULT_DRIVERS = {"postgres": "org.postgresql.Driver", "mysql": "com.mysql.cj.jdbc.Driver"}


@dataclass(frozen=True)
class SourceSettings:
    """How to reach one source database (parsed from its SSM parameter)."""

    engine: str
    url: str
    driver: str
    database: str
    user: str
    password: str = field(repr=False)
    properties: dict[str, str] = field(default_factory=dict)


def source_settings(secret: Mapping[str, Any], path: str) -> SourceSettings:
    """Parse a source secret; the error names the SSM path and the keys, never the values."""
    missing = [k for k in ("engine", "host", "port", "database", "user", "password") if not secret.get(k)]
    if missing:
        raise EtlError(f"SSM parameter {path} lacks {', '.join(missing)}; it must be JSON with "
                       f"engine, host, port, database, user, password")
    engine = str(secret["engine"]).lower()
    if engine in ("postgresql", "pg"):
        engine = "postgres"
    if engine in ("mariadb",):
        engine = "mysql"
    if engine not in DEFAULT_DRIVERS:
        raise EtlError(f"SSM parameter {path}: engine {secret['engine']!r} is not supported; "
                       f"use 'postgres' or 'mysql'")
    host, port, database = secret["host"], secret["port"], secret["database"]
    if engine == "postgres":
        url = f"jdbc:postgresql://{host}:{port}/{database}"
    else:
        # jdbc:mysql: even with MariaDB's driver, so Spark picks its MySQL dialect (backtick quoting).
        url = f"jdbc:mysql://{host}:{port}/{database}"
    props = {str(k): str(v) for k, v in (secret.get("properties") or {}).items()}
    return SourceSettings(engine, url, str(secret.get("driver") or DEFAULT_DRIVERS[engine]), str(database),
                          str(secret["user"]), str(secret["password"]), props)


@dataclass(frozen=True)
class SnowflakeSettings:
    connect_args: dict[str, Any] = field(repr=False)
    database: str
    stage: str | None                    # external stage whose URL is s3://<bucket>/
    storage_integration: str | None      # or: a storage integration for direct s3:// URLs
    staging_bucket: str | None


# Session limits (seconds) when the Snowflake parameter does not set them; see docs/SNOWFLAKE.md.
STATEMENT_TIMEOUT_SECONDS = 6 * 3600   # Snowflake's own default is 2 days; a stuck statement ends sooner
LOCK_TIMEOUT_SECONDS = 600             # Snowflake's default is 12 h; a killed run's transaction that
                                       # blocks others is aborted after 5 idle minutes, so 10 min suffices
SOCKET_TIMEOUT_SECONDS = 120           # one HTTP request; Snowflake answers a running query within ~45 s


def _seconds(secret: Mapping[str, Any], key: str, default: int, minimum: int, path: str) -> int:
    value = secret.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit() \
            or int(value) < minimum:
        raise EtlError(f"SSM parameter {path}: '{key}' must be a whole number of seconds >= {minimum}, "
                       f"not {value!r}")
    return int(value)


def snowflake_settings(secret: Mapping[str, Any], path: str) -> SnowflakeSettings:
    """Connect arguments and session parameters; the job's own session parameters always win.

    No ``network_timeout`` unless the secret sets one: in snowflake-connector-python 4.8.1 it arms a
    timer per statement that cancels it (000604), so a long COPY or CREATE ... AS SELECT would die.
    Long statements are bounded on the server (STATEMENT_TIMEOUT_IN_SECONDS), stalled connections
    by ``socket_timeout``, lock waits by LOCK_TIMEOUT; CLIENT_SESSION_KEEP_ALIVE keeps a session
    alive while its table's Spark extract runs for hours.
    """
    missing = [k for k in ("account", "user", "database") if not secret.get(k)]
    if not secret.get("password") and not secret.get("private_key"):
        missing.append("password (or private_key)")
    if missing:
        raise EtlError(f"SSM parameter {path} lacks {', '.join(missing)}; it must be JSON with account, "
                       f"user, password or private_key, warehouse, database, role")
    given = secret.get("session_parameters") or {}
    if not isinstance(given, Mapping):
        raise EtlError(f"SSM parameter {path}: 'session_parameters' must be a JSON object")
    given = {str(k).upper(): v for k, v in given.items()}
    # The two limits: the documented keys, else the secret's own session_parameters, else the defaults.
    statement_timeout = _seconds(secret, "statement_timeout_seconds",
                                 given.get("STATEMENT_TIMEOUT_IN_SECONDS", STATEMENT_TIMEOUT_SECONDS), 60, path)
    lock_timeout = _seconds(secret, "lock_timeout_seconds", given.get("LOCK_TIMEOUT", LOCK_TIMEOUT_SECONDS), 1, path)
    args: dict[str, Any] = {
        "account": secret["account"], "user": secret["user"], "database": secret["database"],
        "login_timeout": _seconds(secret, "login_timeout", 60, 1, path),
        "socket_timeout": _seconds(secret, "socket_timeout", SOCKET_TIMEOUT_SECONDS, 60, path),
        "client_session_keep_alive": True,
        # The secret may add session parameters; the ones the CSV contract and the load protocol rely on win.
        "session_parameters": {
            **given,
            "TIMEZONE": "UTC", "TIMESTAMP_INPUT_FORMAT": "AUTO", "DATE_INPUT_FORMAT": "AUTO",
            "STATEMENT_TIMEOUT_IN_SECONDS": statement_timeout, "LOCK_TIMEOUT": lock_timeout,
            # An error inside BEGIN..COMMIT aborts the transaction on the server at once: nothing of
            # it can commit later, even when the job's ROLLBACK never arrives (Warehouse.transaction).
            "TRANSACTION_ABORT_ON_ERROR": True,
            "CLIENT_SESSION_KEEP_ALIVE": True,
        },
    }
    if secret.get("network_timeout") is not None:      # opt-in only: a client-side cancel of every statement
        args["network_timeout"] = _seconds(secret, "network_timeout", 0, 1, path)
    for key in ("warehouse", "role", "host", "port", "protocol", "password"):
        if secret.get(key):
            args[key] = secret[key]
    if secret.get("private_key"):
        args["private_key"] = secret["private_key"]     # PEM text; turned into DER when connecting
        if secret.get("private_key_passphrase"):
            args["private_key_passphrase"] = secret["private_key_passphrase"]
    for key in ("stage", "storage_integration"):
        if secret.get(key) and not all(_IDENT.match(p) for p in str(secret[key]).split(".")):
            raise EtlError(f"SSM parameter {path}: '{key}' must be a (qualified) identifier")
    return SnowflakeSettings(args, str(secret["database"]).upper(), secret.get("stage"),
                             secret.get("storage_integration"), secret.get("staging_bucket"))


# ----- type mapping: Spark -> Snowflake -------------------------------------------------
#
#   Spark type                 Snowflake target          CSV staging
#   ByteType/ShortType         NUMBER(3,0)/NUMBER(5,0)   as is
#   IntegerType/LongType       NUMBER(10,0)/NUMBER(19,0) as is
#   DecimalType(p,s)           NUMBER(p,s)               plain digits, never exponent form
#   FloatType/DoubleType       FLOAT                     NaN, inf, -inf (Snowflake's spelling)
#   StringType/Char/Varchar    VARCHAR                   quoted, RFC 4180 doubled quotes
#   BooleanType                BOOLEAN                   true/false
#   DateType                   DATE                      yyyy-MM-dd
#   TimestampNTZType           TIMESTAMP_NTZ(6)          wall clock, microseconds
#   TimestampType              TIMESTAMP_TZ(6)           UTC instant with offset, microseconds
#   BinaryType                 BINARY                    hex text, TO_BINARY(.., 'HEX') on load
#   Array/Map/Struct           VARIANT                   JSON text, PARSE_JSON on load
#
# PostgreSQL timestamp / MySQL DATETIME arrive as TimestampNTZType (preferTimestampNTZ);
# PostgreSQL timestamptz / MySQL TIMESTAMP as TimestampType (see ``ZONED_TYPES``).
# PostgreSQL json/jsonb, enums, uuid, inet, xml arrive as strings (VARCHAR). Columns whose typed
# JDBC value would not arrive exactly travel as text with a fixed target type instead (``type_plan``).

_SIMPLE_TYPES = {
    "ByteType": "NUMBER(3,0)", "ShortType": "NUMBER(5,0)", "IntegerType": "NUMBER(10,0)",
    "LongType": "NUMBER(19,0)", "FloatType": "FLOAT", "DoubleType": "FLOAT",
    "StringType": "VARCHAR", "CharType": "VARCHAR", "VarcharType": "VARCHAR",
    "BooleanType": "BOOLEAN", "DateType": "DATE", "TimestampNTZType": "TIMESTAMP_NTZ(6)",
    "TimestampType": "TIMESTAMP_TZ(6)", "BinaryType": "BINARY", "NullType": "VARCHAR",
    "ArrayType": "VARIANT", "MapType": "VARIANT", "StructType": "VARIANT",
}


def snowflake_type(spark_type: Any) -> str | None:
    """The Snowflake column type for a Spark data type, None when unsupported."""
    name = type(spark_type).__name__
    if name == "DecimalType":
        return f"NUMBER({spark_type.precision},{spark_type.scale})"
    return _SIMPLE_TYPES.get(name)


def type_family(snowflake_type_name: str) -> str:
    """Coarse family of a Snowflake type, to tell a compatible target column from a broken one."""
    t = snowflake_type_name.upper().split("(")[0].strip()
    families = {
        "NUMBER": "number", "DECIMAL": "number", "NUMERIC": "number", "INT": "number", "INTEGER": "number",
        "BIGINT": "number", "SMALLINT": "number", "TINYINT": "number", "BYTEINT": "number",
        "FLOAT": "float", "DOUBLE": "float", "REAL": "float", "FLOAT4": "float", "FLOAT8": "float",
        "DOUBLE PRECISION": "float",
        "VARCHAR": "text", "TEXT": "text", "STRING": "text", "CHAR": "text", "CHARACTER": "text",
        "BOOLEAN": "boolean", "DATE": "date",
        "TIMESTAMP_NTZ": "timestamp", "TIMESTAMP_TZ": "timestamp", "TIMESTAMP_LTZ": "timestamp",
        "TIMESTAMP": "timestamp", "DATETIME": "timestamp",
        "BINARY": "binary", "VARBINARY": "binary",
        "VARIANT": "variant", "OBJECT": "variant", "ARRAY": "variant",
    }
    return families.get(t, t.lower())


_FULL_TEXT = 16_777_216      # VARCHAR without a length (INFORMATION_SCHEMA reports this maximum)


def target_type(data_type: str, char_length: Any = None, precision: Any = None, scale: Any = None) -> str:
    """A target column's type as text, from INFORMATION_SCHEMA.COLUMNS (DATA_TYPE, CHARACTER_MAXIMUM_LENGTH,
    NUMERIC_PRECISION, NUMERIC_SCALE): NUMBER(p,s), VARCHAR(n) or DATA_TYPE itself."""
    t = str(data_type).upper()
    if type_family(t) == "number" and precision is not None:
        return f"NUMBER({int(precision)},{int(scale or 0)})"
    if type_family(t) == "text":
        return f"VARCHAR({int(char_length)})" if char_length is not None and int(char_length) < _FULL_TEXT \
            else "VARCHAR"
    return t


def _type_args(type_text: str) -> list[int]:
    inside = type_text.partition("(")[2].rstrip(") ")
    return [int(a) for a in inside.split(",") if a.strip().isdigit()]


def _number_digits(type_text: str) -> tuple[int, int]:
    """(precision, scale) of a NUMBER-family type; plain NUMBER and INT/BIGINT/... are NUMBER(38,0)."""
    args = _type_args(type_text)
    return (args[0], args[1] if len(args) > 1 else 0) if args else (38, 0)


def _timestamp_kind(type_text: str) -> tuple[str, int]:
    """(NTZ | TZ | LTZ, fractional digits) of a timestamp type; TIMESTAMP and DATETIME mean NTZ, 9 digits."""
    name = type_text.upper().split("(")[0].strip()
    kind = name.rpartition("_")[2] if name.startswith("TIMESTAMP_") else "NTZ"
    args = _type_args(type_text)
    return kind, args[0] if args else 9


FLOAT_DIGITS = 15        # decimal digits a FLOAT (IEEE double) holds exactly


def incompatibility(source_type: str, target_type_text: str) -> str | None:
    """Why values of ``source_type`` cannot go unchanged into a ``target_type_text`` column; None when they can.

    A wider target is fine; a narrower one would fail the load or change values (NUMBER rounds to the
    column's scale), so it is refused up front: fewer integer digits or less scale than the source,
    TIMESTAMP_NTZ into TZ/LTZ or back (a wall clock is not an instant), fewer fractional-second digits.
    """
    src, tgt = type_family(source_type), type_family(target_type_text)
    if tgt in ("text", "variant"):
        return None
    if src == tgt == "number":
        (p, s), (tp, ts) = _number_digits(source_type), _number_digits(target_type_text)
        if ts < s:
            return f"it keeps {ts} decimal place(s), the source has {s}"
        if tp - ts < p - s:
            return f"it holds {tp - ts} integer digit(s), the source up to {p - s}"
        return None
    if src == "number" and tgt == "float":
        p = _number_digits(source_type)[0]
        return None if p <= FLOAT_DIGITS else f"FLOAT keeps {FLOAT_DIGITS} significant digits, the source up to {p}"
    if src == tgt == "timestamp":
        (k, d), (tk, td) = _timestamp_kind(source_type), _timestamp_kind(target_type_text)
        if k != tk:
            return f"TIMESTAMP_{tk} is not TIMESTAMP_{k}: a wall clock and an instant are different values"
        if td < d:
            return f"it keeps {td} fractional second digit(s), the source has {d}"
        return None
    return None if src == tgt else ""


def compatible(source_type: str, target_type_text: str) -> bool:
    """Can values of ``source_type`` go unchanged into a target column of ``target_type_text``?"""
    return incompatibility(source_type, target_type_text) is None


@dataclass(frozen=True)
class Column:
    """A column as it travels: source name, Snowflake name and type, how it is staged."""

    source: str          # name in the source / Spark DataFrame
    name: str            # Snowflake column name (upper case)
    sf_type: str         # Snowflake type of the target column

    @property
    def stage_type(self) -> str:
        """Type in the staging table: VARIANT arrives as JSON text, BINARY as hex text."""
        return "VARCHAR" if self.sf_type in ("VARIANT", "BINARY") else self.sf_type

    @property
    def load_expr(self) -> str:
        """Expression that turns the staged value into the target value (``s`` aliases the stage)."""
        ref = f's.{qi(self.name)}'
        if self.sf_type == "VARIANT":
            return f"PARSE_JSON({ref})"
        if self.sf_type == "BINARY":
            return f"TO_BINARY({ref}, 'HEX')"
        return ref


def columns_for(schema_fields: Iterable[tuple[str, Any]], table: str,
                sf_types: Mapping[str, str] | None = None) -> list[Column]:
    """Map (name, Spark type) pairs to Columns (``sf_types`` names some columns' types instead);
    unsupported types or names are a clear error."""
    cols, problems = [], []
    for name, spark_type in schema_fields:
        if not _IDENT.match(name):
            problems.append(f"column {name!r} is not a plain identifier (letters, digits, _); "
                            f"rename it in a 'transform' or leave it out with 'columns'")
            continue
        sf = (sf_types or {}).get(name) or snowflake_type(spark_type)
        if sf is None:
            problems.append(f"column {name} has unsupported type {spark_type}; cast it in a 'transform' "
                            f"or leave it out with 'columns'")
            continue
        cols.append(Column(name, name.upper(), sf))
    seen: dict[str, str] = {}
    for c in cols:
        if c.name in seen:
            problems.append(f"columns {seen[c.name]} and {c.source} are the same in Snowflake ({c.name}); "
                            f"rename one in a 'transform'")
        seen[c.name] = c.source
    if problems:
        raise EtlError(f"{table}: " + "; ".join(problems))
    return cols


def resolve_column(wanted: str, available: Iterable[str], table: str, what: str) -> str:
    """The source's spelling of a configured column name (matched case-insensitively)."""
    available = list(available)
    for name in available:
        if name.lower() == wanted.lower():
            return name
    raise EtlError(f"{table}: '{what}' column {wanted} does not exist in the source table "
                   f"(columns: {', '.join(available)}); fix config.py")


def widening(source_type: str, target_type_text: str) -> str | None:
    """The wider type a target column can be changed to in place so that every ``source_type`` value fits
    unchanged; None when it needs none (``incompatibility`` is None and no length is short) or none exists.

    Snowflake's ALTER COLUMN ... SET DATA TYPE can only raise a NUMBER's precision at the same scale and
    lengthen a text column (docs/SNOWFLAKE.md section 7). So a NUMBER target keeps its scale and gets the
    integer digits the source needs (at most 38 digits in all); a VARCHAR(n) target gets the source's
    length (VARCHAR: the maximum). A scale the target lacks, another kind of value, TIMESTAMP_NTZ vs TZ,
    fewer fractional-second digits or FLOAT for more than 15 digits have no such widening.
    """
    src, tgt = type_family(source_type), type_family(target_type_text)
    if src == tgt == "text":
        have, need = (_type_args(t) or [_FULL_TEXT] for t in (target_type_text, source_type))
        return None if need[0] <= have[0] else ("VARCHAR" if need[0] >= _FULL_TEXT else f"VARCHAR({need[0]})")
    if src == tgt == "number" and incompatibility(source_type, target_type_text) is not None:
        (p, s), (_, ts) = _number_digits(source_type), _number_digits(target_type_text)
        return f"NUMBER({ts + p - s},{ts})" if ts >= s and ts + p - s <= 38 else None
    return None


CHANGE_FIX = ("Snowflake changes a column in place only to a NUMBER of more precision and the same scale, "
              "or to a longer VARCHAR")


def _column_changes(source: Sequence[Column], target: Mapping[str, str], table: str
                    ) -> tuple[list[Column], list[tuple[Column, str, str]]]:
    """(source columns missing from the target, (column, target type, wider type) to widen), or one error
    naming every column whose type can neither take the source's values nor be widened to."""
    problems, new, wider = [], [], []
    for col in source:
        existing = target.get(col.name)
        if existing is None:
            new.append(col)
        elif (to := widening(col.sf_type, existing)) is not None:
            wider.append((col, existing, to))
        elif (why := incompatibility(col.sf_type, existing)) is not None:
            problems.append(f"column {col.name} is {existing} in Snowflake but the source now gives "
                            f"{col.sf_type}" + (f" ({why})" if why else ""))
    if problems:
        raise EtlError(f"{table}: the source schema changed incompatibly with the target: "
                       f"{'; '.join(problems)}. Run it once with --OBJ '{{\"{table}\": \"FULL\"}}' to "
                       f"redefine the target, or alter the Snowflake column yourself ({CHANGE_FIX}); "
                       f"the target was not changed")
    return new, wider


def schema_changes(source: Sequence[Column], target: Mapping[str, str], table: str) -> list[Column]:
    """Source columns missing from the target (to ADD), or an error for types that cannot be widened."""
    return _column_changes(source, target, table)[0]


# ----- Snowflake SQL builders ---------------------------------------------------------
#
# Every statement is valid Snowflake SQL (the unit tests parse each with sqlglot's
# snowflake dialect). Identifiers are always quoted; values are bound parameters or
# literals built from validated values only.


def qi(name: str) -> str:
    """Quote a Snowflake identifier."""
    return '"' + name.replace('"', '""') + '"'


def fqn(database: str, schema: str, table: str) -> str:
    return f"{qi(database)}.{qi(schema)}.{qi(table)}"


def sql_str(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# The CSV contract, written by ``stage_dataframe`` and read by this FILE_FORMAT:
# header line, comma, LF line ends, UTF-8, zlib-compressed (RFC 1950); a value is enclosed in double quotes
# (quotes inside doubled, RFC 4180) when it holds a quote, comma or line break, and the
# empty string is always written as ""; NULL is an empty unenclosed field; no escape
# character anywhere (a backslash is data); dates yyyy-MM-dd, timestamps ISO 8601 with
# microseconds (and a +hh:mm offset for TIMESTAMP_TZ), binary as hex, decimals as plain digits,
# floats' special values as NaN, inf and -inf;
# VERBATIM_TYPES columns as the source wrote them (PostgreSQL: plain digits, and ISO
# timestamps with a space and up to six fraction digits).
# Options left out are Snowflake's documented CSV defaults, which the contract relies on:
# ESCAPE = NONE, RECORD_DELIMITER = '\n', ENCODING = 'UTF8', BINARY_FORMAT = HEX,
# ERROR_ON_COLUMN_COUNT_MISMATCH = TRUE, DATE_FORMAT/TIMESTAMP_FORMAT = AUTO (the session
# sets DATE_INPUT_FORMAT and TIMESTAMP_INPUT_FORMAT to AUTO, see ``snowflake_settings``).
STAGED_SUFFIX = ".csv.deflate"       # what Spark names the part files it writes with that codec
CSV_FILE_FORMAT = (
    "TYPE = CSV FIELD_DELIMITER = ',' SKIP_HEADER = 1 FIELD_OPTIONALLY_ENCLOSED_BY = '\"' "
    "ESCAPE_UNENCLOSED_FIELD = NONE NULL_IF = () EMPTY_FIELD_AS_NULL = TRUE COMPRESSION = DEFLATE"
)


PAD_COLUMN = "_ETL_PAD"


def staged_columns(cols: Sequence[Column]) -> list[Column]:
    """The columns of the staged CSV and staging table: a one-column table gets a constant second one.

    Spark's CSV writer skips a blank line (its univocity writer is set to skip empty lines), and a
    row whose only value is NULL is exactly that: without the pad the row would be lost silently.
    ``stage_dataframe`` writes the pad as 1; loads never read it (they name the table's columns).
    """
    if len(cols) != 1:
        return list(cols)
    name = PAD_COLUMN if cols[0].name != PAD_COLUMN else PAD_COLUMN + "_"
    return [*cols, Column(name.lower(), name, "NUMBER(1,0)")]


def stage_table_name(target_schema: str, target_name: str, run_tag: str) -> str:
    """The staging table's name: one per run and table (the run's tag keeps two runs' apart)."""
    return f"STAGE__{target_schema}__{target_name}__{run_tag}"


def create_stage_table_sql(stage: str, cols: Sequence[Column]) -> str:
    """A temporary table: visible to this session only, gone when it ends, no Fail-safe (docs/SNOWFLAKE.md)."""
    defs = ", ".join(f"{qi(c.name)} {c.stage_type}" for c in cols)
    return f"CREATE TEMPORARY TABLE {stage} ({defs})"


def create_table_sql(target: str, cols: Sequence[Column]) -> str:
    defs = ", ".join(f"{qi(c.name)} {c.sf_type}" for c in cols)
    return f"CREATE TABLE IF NOT EXISTS {target} ({defs})"


def add_column_sql(target: str, col: Column) -> str:
    return f"ALTER TABLE {target} ADD COLUMN {qi(col.name)} {col.sf_type}"


def alter_column_sql(target: str, name: str, sf_type: str) -> str:
    """Widen a column in place ("ALTER TABLE ... ALTER COLUMN", docs/SNOWFLAKE.md section 7)."""
    return f"ALTER TABLE {target} ALTER COLUMN {qi(name)} SET DATA TYPE {sf_type}"


def target_ddl(target: str, cols: Sequence[Column], target_cols: Mapping[str, str], key: str,
               mode: str) -> list[tuple[str, str]]:
    """The DDL to run before the load, as (what, sql) pairs in order: nothing for FULL (it redefines
    the target), CREATE TABLE for a missing target, else ALTER COLUMN ... SET DATA TYPE for each column
    Snowflake can widen in place to hold the source's values and ADD COLUMN for each new source column.

    Raises EtlError naming every column whose type can neither hold the source's values nor be widened,
    with the fix, before anything is written (``_column_changes``). Pure: the dry run shows this list.
    """
    if mode == "FULL":
        return []
    if not target_cols:
        return [("created", create_table_sql(target, cols))]
    new, wider = _column_changes(cols, target_cols, key)
    return [(f"widened {c.name} {old}->{to}", alter_column_sql(target, c.name, to)) for c, old, to in wider] + \
        [(f"added_column {c.name} {c.sf_type}", add_column_sql(target, c)) for c in new]


def copy_into_sql(stage_table: str, location: str, files: Sequence[str], integration: str | None = None) -> str:
    """COPY exactly ``files`` (names relative to ``location``) into the staging table."""
    names = ", ".join(sql_str(f) for f in files)
    via = f" STORAGE_INTEGRATION = {integration}" if integration else ""
    source = location if location.startswith("@") else sql_str(location)
    return (f"COPY INTO {stage_table} FROM {source}{via} FILES = ({names}) "
            f"FILE_FORMAT = ({CSV_FILE_FORMAT}) ON_ERROR = ABORT_STATEMENT")


def _key_join(pk: Sequence[str], left: str = "t", right: str = "s") -> str:
    return " AND ".join(f"{left}.{qi(k)} = {right}.{qi(k)}" for k in pk)


def deduplicated_sql(stage: str, cols: Sequence[Column], pk: Sequence[str], order_by: str | None) -> str:
    """The staged rows, one per primary key (latest ``order_by`` wins), as a subquery."""
    names = ", ".join(qi(c.name) for c in cols)
    if not pk:
        return f"(SELECT {names} FROM {stage})"
    part = ", ".join(qi(k) for k in pk)
    order = f"{qi(order_by)} DESC NULLS LAST" if order_by else part
    return (f"(SELECT {names} FROM {stage} "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY {order}) = 1)")


def _differs(col: Column) -> str:
    """NULL-safe "the target's value is not the staged one" (IS DISTINCT FROM, docs/SNOWFLAKE.md).

    VARIANT values are compared as their JSON text (TO_JSON of both sides): equal values give
    equal text, and the comparison never depends on how VARIANT equality treats objects. A FLOAT
    zero whose sign changed differs too (VERIFY tells 0.0 from -0.0 the same way, ``_float_canon``).
    """
    target = f"t.{qi(col.name)}"
    if col.sf_type == "VARIANT":
        return f"TO_JSON({target}) IS DISTINCT FROM TO_JSON({col.load_expr})"
    if col.sf_type == "FLOAT":         # 0.0 = -0.0 in IEEE; ATAN2(z, -1) is pi for 0.0 and -pi for -0.0
        return (f"({target} IS DISTINCT FROM {col.load_expr} OR ({target} = 0 AND "
                f"ATAN2({target}, -1) <> ATAN2({col.load_expr}, -1)))")
    return f"{target} IS DISTINCT FROM {col.load_expr}"


def merge_sql(target: str, stage: str, cols: Sequence[Column], pk: Sequence[str], order_by: str | None,
              soft: bool = False) -> str:
    """UPSERT / INCREMENTAL: one MERGE from the deduplicated staged rows.

    A matched row is rewritten only when some non-key value differs, so a re-read of unchanged
    rows (``lookback_seconds``) updates nothing and RowsUpdated counts real changes. The source
    has one row per key (``deduplicated_sql``), which keeps the MERGE deterministic.
    ``soft`` (deletes: soft): a soft-deleted key read again is live again (its DELETED_AT cleared).
    """
    src = deduplicated_sql(stage, cols, pk, order_by)
    non_key = [c for c in cols if c.name not in pk]
    names = ", ".join(qi(c.name) for c in cols)
    values = ", ".join(c.load_expr for c in cols)
    matched = ""
    differs = [_differs(c) for c in non_key] + ([f"t.{qi(DELETED_AT)} IS NOT NULL"] if soft else [])
    if differs:
        sets = ", ".join([f"{qi(c.name)} = {c.load_expr}" for c in non_key] + ([f"{qi(DELETED_AT)} = NULL"] if soft
                                                                                else []))
        matched = f" WHEN MATCHED AND ({' OR '.join(differs)}) THEN UPDATE SET {sets}"
    return (f"MERGE INTO {target} t USING {src} s ON {_key_join(pk)}{matched} "
            f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})")


def merge_counts(names: Sequence[str], row: Sequence[Any] | None) -> tuple[int, int]:
    """(inserted, updated) from a MERGE's result row; a column is absent when its clause is."""
    rec = dict(zip([n.lower() for n in names], row or (), strict=False))
    return int(rec.get("number of rows inserted") or 0), int(rec.get("number of rows updated") or 0)


def load_statements(mode: str, truncate_before_insert: bool, target: str, stage: str, cols: Sequence[Column],
                    pk: Sequence[str], order_by: str | None, soft: bool = False) -> list[tuple[str, str]]:
    """The load transaction's statements for a mode other than FULL, as (kind, sql):
    kind "merge" or "insert" gives the row counts, "delete" empties the target first."""
    replace = mode == "TRUNCATE_INSERT" or (mode == "INCREMENTAL" and truncate_before_insert)
    out = [("delete", delete_all_sql(target))] if replace else []
    if pk and mode in ("INCREMENTAL", "UPSERT") and not replace:
        return out + [("merge", merge_sql(target, stage, cols, pk, order_by, soft))]
    dedupe = pk and mode != "APPEND"      # APPEND inserts every row read, no checks
    source = deduplicated_sql(stage, cols, pk, order_by) if dedupe else stage
    return out + [("insert", insert_sql(target, source, cols))]


def insert_sql(target: str, stage: str, cols: Sequence[Column]) -> str:
    names = ", ".join(qi(c.name) for c in cols)
    exprs = ", ".join(c.load_expr for c in cols)
    return f"INSERT INTO {target} ({names}) SELECT {exprs} FROM {stage} s"


# deletes: soft marks a row deleted at the source with the instant of the load transaction that saw it gone.
# TIMESTAMP_TZ: an instant that reads the same whatever the reader's session TIMEZONE (docs/SNOWFLAKE.md).
DELETED_AT = "_DELETED_AT"
DELETED_AT_TYPE = "TIMESTAMP_TZ(6)"
DELETE_BATCH = 10_000        # keys per DELETE/UPDATE, within Snowflake's 16,384 expressions in a list
DELETE_BATCH_BYTES = 500_000  # and their literals' UTF-8 bytes, within its 1 MB statement text (docs/SNOWFLAKE.md)


def key_literal(key: int | str) -> str:
    """A key as VERIFY names it, as a Snowflake literal: an integer key's number, a hashed key's text."""
    return str(int(key)) if isinstance(key, int) else sql_str(key)


def key_lists(keys: Sequence[int | str]) -> Iterator[str]:
    """The keys' literals, comma-separated, in batches of at most DELETE_BATCH keys and DELETE_BATCH_BYTES (a
    statement's size limit is in bytes: a non-ASCII text key takes up to 4 a character)."""
    batch: list[str] = []
    size = 0
    for lit in map(key_literal, keys):
        n = len(lit.encode()) + 2
        if batch and (len(batch) == DELETE_BATCH or size + n > DELETE_BATCH_BYTES):
            yield ", ".join(batch)
            batch, size = [], 0
        batch.append(lit)
        size += n
    if batch:
        yield ", ".join(batch)


def delete_statements(target: str, key: str, keys: Sequence[int | str], soft: bool) -> list[tuple[str, str]]:
    """(kind "deleted", sql) removing (soft: stamping DELETED_AT on the live rows of) the rows whose ``key``
    (an SQL expression over the target: the key column, or a hashed key's text) is one of ``keys``."""
    out = []
    for listed in key_lists(keys):
        chosen = f"{key} IN ({listed})"
        out.append(("deleted", f"UPDATE {target} SET {qi(DELETED_AT)} = CURRENT_TIMESTAMP() WHERE {chosen} "
                               f"AND {qi(DELETED_AT)} IS NULL" if soft else f"DELETE FROM {target} WHERE {chosen}"))
    return out


def deleted_count(names: Sequence[str], row: Sequence[Any] | None) -> int:
    """Rows a DELETE removed (or a soft delete's UPDATE stamped), from its result row."""
    rec = dict(zip([n.lower() for n in names], row or (), strict=False))
    return int(rec.get("number of rows deleted", rec.get("number of rows updated")) or 0)


def delete_all_sql(target: str) -> str:
    # DELETE, not TRUNCATE: it is plain DML and stays inside the load transaction.
    return f"DELETE FROM {target}"


def replace_table_sql(target: str, stage: str, cols: Sequence[Column]) -> str:
    """FULL: swap in a new definition and contents in one atomic statement."""
    defs = ", ".join(f"{qi(c.name)} {c.sf_type}" for c in cols)
    exprs = ", ".join(c.load_expr for c in cols)
    return f"CREATE OR REPLACE TABLE {target} ({defs}) COPY GRANTS AS SELECT {exprs} FROM {stage} s"


def stage_stats_sql(stage: str, pk: Sequence[str], delta_column: str | None) -> str:
    """Rows staged, rows with a NULL key, distinct keys, and the highest delta value."""
    null_key = " OR ".join(f"{qi(k)} IS NULL" for k in pk) or "FALSE"
    distinct = f"COUNT(DISTINCT {', '.join(qi(k) for k in pk)})" if pk else "COUNT(*)"
    high = f"MAX({qi(delta_column)})" if delta_column else "NULL"
    return (f"SELECT COUNT(*), COUNT_IF({null_key}), {distinct}, {high} FROM {stage}")


def count_sql(table: str) -> str:
    return f"SELECT COUNT(*) FROM {table}"


def max_sql(table: str, column: str) -> str:
    return f"SELECT MAX({qi(column)}) FROM {table}"


def drop_table_sql(table: str) -> str:
    return f"DROP TABLE IF EXISTS {table}"


def target_columns_sql(database: str) -> str:
    """Each target column's name and type; ``target_type`` turns a row into the type's text."""
    return (f"SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE "
            f"FROM {qi(database)}.INFORMATION_SCHEMA.COLUMNS "
            f"WHERE TABLE_SCHEMA = %(schema)s AND TABLE_NAME = %(table)s ORDER BY ORDINAL_POSITION")


def create_schema_sql(database: str, schema: str) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {qi(database)}.{qi(schema)}"


STATE_TABLE = "ETL_LOAD_STATE"
_NOW = "CURRENT_TIMESTAMP()::TIMESTAMP_NTZ"


def create_state_table_sql(state: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {state} ("
            f'"TARGET_TABLE" VARCHAR, "SOURCE_TABLE" VARCHAR, "MODE" VARCHAR, '
            f'"WATERMARK_COLUMN" VARCHAR, "WATERMARK" VARCHAR, "RUN_ID" VARCHAR, '
            f'"ROWS_LOADED" NUMBER(19,0), "UPDATED_AT" TIMESTAMP_NTZ(6))')


_STATE_VALUES = (("TARGET_TABLE", "target"), ("SOURCE_TABLE", "source"), ("MODE", "mode"),
                 ("WATERMARK_COLUMN", "column"), ("WATERMARK", "watermark"), ("RUN_ID", "run_id"),
                 ("ROWS_LOADED", "rows"))


def write_state_sql(state: str) -> str:
    """Replace a table's state row in one statement (plain DML: inside the load transaction)."""
    src = ", ".join(f"%({param})s AS {qi(col)}" for col, param in _STATE_VALUES)
    cols = [col for col, _ in _STATE_VALUES]
    sets = ", ".join(f"{qi(c)} = s.{qi(c)}" for c in cols[1:])
    names = ", ".join(qi(c) for c in cols)
    values = ", ".join(f"s.{qi(c)}" for c in cols)
    return (f'MERGE INTO {state} t USING (SELECT {src}) s ON t."TARGET_TABLE" = s."TARGET_TABLE" '
            f'WHEN MATCHED THEN UPDATE SET {sets}, "UPDATED_AT" = {_NOW} '
            f'WHEN NOT MATCHED THEN INSERT ({names}, "UPDATED_AT") VALUES ({values}, {_NOW})')


def read_state_sql(state: str) -> str:
    """A table's committed watermark (VERIFY bounds its comparison there; loads get it from ``plan_read_sql``)."""
    return (f'SELECT "WATERMARK_COLUMN", "WATERMARK", "RUN_ID" FROM {state} '
            f'WHERE "TARGET_TABLE" = %(target)s')


LEASE_TABLE = "ETL_LOAD_LEASE"


def create_lease_table_sql(lease: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {lease} ("
            f'"TARGET_TABLE" VARCHAR, "HOLDER" VARCHAR, "ACQUIRED_AT" TIMESTAMP_NTZ(6), '
            f'"EXPIRES_AT" TIMESTAMP_NTZ(6))')


def lease_sqls(lease: str) -> dict[str, str]:
    """Statements of the per-target lease: one run at a time loads a target table.

    A lease is a row per target, but nothing relies on there being one: Snowflake enforces no
    key and runs INSERTs in parallel, so two first-time ``seed``s can leave two rows. Every
    statement that takes or uses a lease also requires that no other holder's lease on the
    target is live (``_NO_OTHER``), and the load transaction begins with ``hold_release``, an
    UPDATE of the lease rows that holds their lock until COMMIT. The argument is written down
    in docs/GUARANTEES.md ("Two runs at once"). The clock is Snowflake's, never a worker's.
    """
    expires = f"DATEADD(SECOND, %(seconds)s, {_NOW})"
    no_other = (f'NOT EXISTS (SELECT 1 FROM {lease} o WHERE o."TARGET_TABLE" = %(target)s '
                f'AND o."HOLDER" <> %(holder)s AND o."EXPIRES_AT" > {_NOW})')
    ours = f'"TARGET_TABLE" = %(target)s AND "HOLDER" = %(holder)s AND "EXPIRES_AT" > {_NOW} AND {no_other}'
    free = 'NULL, "ACQUIRED_AT" = NULL, "EXPIRES_AT" = NULL'
    return {
        "seed": (f'INSERT INTO {lease} ("TARGET_TABLE") SELECT %(target)s WHERE NOT EXISTS '
                 f'(SELECT 1 FROM {lease} WHERE "TARGET_TABLE" = %(target)s)'),
        "claim": (f'UPDATE {lease} SET "HOLDER" = %(holder)s, "ACQUIRED_AT" = {_NOW}, "EXPIRES_AT" = {expires} '
                  f'WHERE "TARGET_TABLE" = %(target)s AND ("HOLDER" IS NULL OR "HOLDER" = %(holder)s '
                  f'OR "EXPIRES_AT" <= {_NOW}) AND {no_other}'),
        "holder": (f'SELECT "HOLDER", "ACQUIRED_AT", "EXPIRES_AT" FROM {lease} WHERE "TARGET_TABLE" = %(target)s '
                   f'AND "HOLDER" <> %(holder)s AND "EXPIRES_AT" > {_NOW} ORDER BY "EXPIRES_AT" DESC LIMIT 1'),
        # The re-read after a claim (part of the plan read, ``plan_read_sql``): this run's live rows, others' live rows.
        "mine": (f'SELECT COUNT_IF("HOLDER" = %(holder)s AND "EXPIRES_AT" > {_NOW}) FROM {lease} '
                 f'WHERE "TARGET_TABLE" = %(target)s'),
        "others": (f'SELECT MAX("HOLDER") FROM {lease} WHERE "TARGET_TABLE" = %(target)s '
                   f'AND "HOLDER" <> %(holder)s AND "EXPIRES_AT" > {_NOW}'),
        "hold": f'UPDATE {lease} SET "EXPIRES_AT" = {expires} WHERE {ours}',
        "hold_release": f'UPDATE {lease} SET "HOLDER" = {free} WHERE {ours}',
        "renew": f'UPDATE {lease} SET "EXPIRES_AT" = {expires} WHERE "HOLDER" = %(holder)s AND "EXPIRES_AT" > {_NOW}',
        "release": f'UPDATE {lease} SET "HOLDER" = {free} WHERE "TARGET_TABLE" = %(target)s AND "HOLDER" = %(holder)s',
    }


# Snowflake's error for a statement aborted on a lock (too many waiters, or a lock wait timeout);
# the emulator raises it for a write-write conflict (local/fakesnow_server.py).
LOCK_CONFLICT = re.compile(r"\b000625\b")


def is_lock_conflict(message: str) -> bool:
    return bool(LOCK_CONFLICT.search(message))


def backoff_seconds(attempt: int, cap: float, rnd: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: a random wait in [cap/8, min(cap, 0.25 * 2**attempt)]."""
    ceiling = min(cap, 0.25 * 2 ** min(attempt, 16))
    return max(cap / 8, ceiling * rnd())


PLAN_VALUES = 4     # lease rows of this run, another live holder, state watermark column, state watermark


def plan_read_sql(database: str, state: str, lease: str, target: str | None) -> str:
    """One round trip before anything is read from the source: the lease re-read after the claim,
    the table's state row, the target's row count (``target`` given: expected to exist) and the
    target's columns (``target_columns_sql``, one row per column; NULLs when it has none)."""
    sql = lease_sqls(lease)
    state_row = f'FROM {state} WHERE "TARGET_TABLE" = %(target)s'
    values = [f"({sql['mine']})", f"({sql['others']})", f'(SELECT MAX("WATERMARK_COLUMN") {state_row})',
              f'(SELECT MAX("WATERMARK") {state_row})']
    if target:
        values.append(f"(SELECT COUNT(*) FROM {target})")
    return (f"SELECT x.*, c.* FROM (SELECT {', '.join(values)}) x "
            f"LEFT JOIN ({target_columns_sql(database)}) c ON TRUE")


@dataclass(frozen=True)
class PlanRead:
    """What ``plan_read_sql`` returned."""

    mine: int
    other_holder: str | None
    state_column: str | None
    state_watermark: str | None
    target_rows: int | None                  # None: not counted (the target may not exist)
    target_columns: dict[str, str]           # name -> its type's text (``target_type``)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]], counted: bool) -> PlanRead:
        n = PLAN_VALUES + (1 if counted else 0)
        first = rows[0]
        cols = {r[n]: target_type(*r[n + 1:]) for r in rows if r[n] is not None}
        return cls(int(first[0] or 0), first[1], first[2], first[3], int(first[4]) if counted else None, cols)


# ----- source SQL (PostgreSQL / MySQL) --------------------------------------------------


def source_quote(engine: str, name: str) -> str:
    if engine == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def source_table_ref(engine: str, namespace: str, table: str) -> str:
    return f"{source_quote(engine, namespace)}.{source_quote(engine, table)}"


# Column types (information_schema ``data_type``) holding instants. Spark reads every timestamp as
# TimestampNTZ (``preferTimestampNTZ``, UTC session), which keeps wall clocks exact; these
# columns are then turned back into instants (TIMESTAMP_TZ).
ZONED_TYPES = {"postgres": frozenset({"timestamp with time zone"}), "mysql": frozenset({"timestamp"})}
# Column types read as the driver's text and staged verbatim. PostgreSQL sends numeric as plain
# digits at the column's scale, date as 'YYYY-MM-DD' and timestamp as 'YYYY-MM-DD HH:MI:SS[.ffffff]'
# (the driver forces DateStyle ISO), which COPY parses into NUMBER, DATE and TIMESTAMP_NTZ (AUTO
# formats) to the same value. Skipping the driver's decoding and Spark's formatting saves a third of the
# extract+stage CPU (docs/PERFORMANCE.md). Values with no Snowflake equivalent (NaN, infinity,
# BC dates, more than 38 digits) fail the COPY with Snowflake's message naming the value.
# Dates and timestamps as text also keep their calendar: the drivers' typed values go through
# Java's hybrid Julian calendar, which moves the days 1582-10-05..14 (skipped by the Gregorian
# switch) by ten days, and the MariaDB driver shifts every DATETIME before 1582-10-15.
# MySQL DATE and DATETIME are formatted by the server (``source_query``), because that driver
# rebuilds their text from its parse. Zero dates stay NULL, as the driver reads them; a date with
# a zero month or day fails the COPY (the driver would have moved it to another day). MySQL
# DECIMAL stays typed: the driver's text for zero is 0E-10.
VERBATIM_TYPES = {"postgres": frozenset({"numeric", "timestamp without time zone", "date"}),
                  "mysql": frozenset({"datetime", "date"})}
# MySQL type -> (DATE_FORMAT pattern, the text of its zero date)
MYSQL_TEXT_FORMATS = {"datetime": ("%Y-%m-%d %H:%i:%s.%f", "0000-00-00 00:00:00.000000"),
                      "date": ("%Y-%m-%d", "0000-00-00")}


def column_types_query(engine: str, namespace: str, table: str) -> str:
    """Each column's information_schema facts (see ``SourceColumn``): name, data_type and MySQL's
    column_type in lower case, numeric precision and scale, and the character set its text is stored in
    (MySQL: the column's; PostgreSQL: the database's server encoding, which holds every text of it)."""
    detail = "LOWER(column_type)" if engine == "mysql" else "''"
    charset = "character_set_name" if engine == "mysql" else "current_setting('server_encoding')"
    return (f"SELECT column_name AS name, LOWER(data_type) AS type, {detail} AS column_type, "
            f"numeric_precision AS num_precision, numeric_scale AS num_scale, character_maximum_length AS length, "
            f"{charset} AS charset "
            f"FROM information_schema.columns WHERE table_schema = '{namespace}' AND table_name = '{table}' "
            f"ORDER BY ordinal_position")


def source_columns(rows: Iterable[Mapping[str, Any]]) -> dict[str, SourceColumn]:
    """``column_types_query``'s rows as SourceColumns, by lower-case name, in the table's column order."""
    def number(v: Any) -> int | None:
        return None if v is None else int(v)
    return {str(r["name"]).lower(): SourceColumn(str(r["name"]), str(r["type"]), str(r.get("column_type") or ""),
                                                 number(r.get("num_precision")), number(r.get("num_scale")),
                                                 number(r.get("length")), r.get("charset") or None)
            for r in rows}


# ----- type plan: how each source column travels ---------------------------------------
#
# Read from information_schema (``column_types_query``), never from a JDBC driver's quirks
# (tinyInt1isBit, yearIsDateType, how a driver decodes TIME): types whose typed JDBC value
# would not arrive exactly are turned into text (or a number's text) by the pushed-down
# source SQL, and get their Snowflake type here. README "Type mapping" lists every rule.


@dataclass(frozen=True)
class SourceColumn:
    """What information_schema says about one source column."""

    name: str
    type: str                   # data_type, lower case ('tinyint', 'time with time zone', 'array', ...)
    column_type: str = ""       # MySQL's column_type, lower case ('tinyint(1) unsigned'); '' on PostgreSQL
    precision: int | None = None
    scale: int | None = None
    length: int | None = None   # character_maximum_length (also the n of PostgreSQL's bit(n))
    charset: str | None = None  # the character set of its text (MySQL character_set_name, PostgreSQL
                                # server_encoding: 'UTF8', 'LATIN1', ...); None when not read


@dataclass(frozen=True)
class Travel:
    """A column read as text: the SQL giving its text, and its target type."""

    expr: str | None            # pushed-down SQL for its text; None: the column itself, read as text
    sf_type: str | None         # the Snowflake type; None: the one of Spark's typed schema
    typed_ok: bool = False      # a transform gets the typed value instead (its typed value is exact)


@dataclass(frozen=True)
class ValueCheck:
    """A pushed-down search for a value that cannot arrive exactly: finding one fails the table."""

    column: str
    bad: str                    # SQL condition true for such a value
    text: str                   # SQL giving the value's text, for the message
    why: str
    fix: str


_VIEW_FIX = "load a view that casts it, or leave it out with 'columns'"


def _text(engine: str, q: str) -> str:
    return f"CAST({q} AS {'CHAR' if engine == 'mysql' else 'text'})"


def column_travel(engine: str, c: SourceColumn) -> Travel | None:
    """How ``c`` travels when its typed JDBC value would not arrive exactly (None: typed, as Spark reads it)."""
    q = source_quote(engine, c.name)
    if c.type in VERBATIM_TYPES.get(engine, ()):
        if engine == "mysql":
            pattern, zero = MYSQL_TEXT_FORMATS[c.type]
            return Travel(f"NULLIF(DATE_FORMAT({q}, '{pattern}'), '{zero}')", None, typed_ok=True)
        return Travel(None, None, typed_ok=True)
    if engine == "postgres":
        rules = {
            # UTC text with an explicit +00:00 (the server's own text ends in '+00'): no calendar shift.
            "timestamp with time zone": Travel(f"(({q} AT TIME ZONE 'UTC')::text || '+00:00')", "TIMESTAMP_TZ(6)",
                                               typed_ok=True),
            "time without time zone": Travel(_text(engine, q), "TIME(6)"),
            "time with time zone": Travel(_text(engine, q), "VARCHAR"),          # Snowflake's TIME has no offset
            "character": Travel(_text(engine, q), "VARCHAR"),        # the cast drops char(n)'s insignificant blanks
            "money": Travel(_text(engine, f"CAST({q} AS numeric)"), "NUMBER(19,2)"),
            "bit": Travel(_text(engine, q), "VARCHAR"),
            "bit varying": Travel(_text(engine, q), "VARCHAR"),
            "interval": Travel(_text(engine, q), "VARCHAR"),
            "array": Travel(_text(engine, f"to_json({q})"), "VARIANT", typed_ok=True),
        }
        return None if c.type == "bit" and c.length == 1 else rules.get(c.type)   # bit(1): BOOLEAN, like MySQL's
    if c.type == "tinyint" and c.column_type.startswith("tinyint(1)"):
        return Travel(_text(engine, q), "NUMBER(3,0)")       # MySQL's BOOLEAN, holding -128..127 (or 0..255)
    if c.type == "year":
        return Travel(_text(engine, f"{q} + 0"), "NUMBER(4,0)")
    if c.type == "time":
        return Travel(_text(engine, q), "VARCHAR")           # a duration, -838:59:59..838:59:59
    if c.type == "bit" and c.column_type != "bit(1)":
        return Travel(_text(engine, f"{q} + 0"), "NUMBER(20,0)")
    return None


def column_check(engine: str, c: SourceColumn) -> ValueCheck | None:
    """The pushed-down check for ``c``'s values, when Snowflake's type cannot hold every one of them."""
    q = source_quote(engine, c.name)
    if c.type in ("numeric", "decimal") and (c.precision is None or c.precision > 38):
        # Spark reads numeric without precision as Decimal(38,18), and a wider one at most 38 digits.
        scale = 18 if c.precision is None else min(c.scale or 0, 38)
        bound = "1" + "0" * (38 - scale)
        return ValueCheck(c.name, f"{q} <> ROUND({q}, {scale}) OR ABS({q}) >= {bound}", _text(engine, q),
                          f"does not fit NUMBER(38,{scale}) (at most {scale} decimals and {38 - scale} integer "
                          f"digits)", f"declare it numeric(p,s) with p <= 38, or {_VIEW_FIX}")
    if engine == "postgres" and c.type == "time without time zone":
        return ValueCheck(c.name, f"{q} > '23:59:59.999999'", _text(engine, q),
                          "is beyond Snowflake's TIME range (00:00:00 to 23:59:59.999999999)", _VIEW_FIX)
    if engine == "postgres" and c.type == "money":
        n = f"CAST({q} AS numeric)"
        return ValueCheck(c.name, f"{n} <> ROUND({n}, 2)", _text(engine, n),
                          "has more than 2 decimals (lc_monetary), NUMBER(19,2) cannot hold it", _VIEW_FIX)
    return None


@dataclass(frozen=True)
class TypePlan:
    """How a table's selected columns travel: ``text`` ones by name, and the checks of their values."""

    text: Mapping[str, Travel]
    checks: Sequence[ValueCheck]

    @property
    def exprs(self) -> dict[str, str]:
        """Column -> the pushed-down SQL giving its text (for ``source_query``)."""
        return {c: t.expr for c, t in self.text.items() if t.expr}

    def columns(self, fields: Iterable[tuple[str, Any]], typed: Mapping[str, Any], table: str) -> list[Column]:
        """Target columns of the DataFrame's (name, Spark type) fields; a text column (still a string after
        any transform) gets its planned type, or that of Spark's ``typed`` schema."""
        pairs, override = [], {}
        for name, spark_type in fields:
            travel = self.text.get(name)
            if travel is not None and type(spark_type).__name__ == "StringType":
                if travel.sf_type:
                    override[name] = travel.sf_type
                else:
                    spark_type = typed[name]
            pairs.append((name, spark_type))
        return columns_for(pairs, table, override)


def type_plan(engine: str, facts: Mapping[str, SourceColumn], columns: Iterable[str], table: str,
              partition_column: str | None = None, transform: bool = False) -> TypePlan:
    """The plan for ``columns`` (source spelling; ``facts`` keyed by lower-case name).

    A transform gets typed values where they are exact (``Travel.typed_ok``), text otherwise.
    The partition column stays typed (the split predicates compare it) unless its text is the
    column itself; one whose typed value is not exact is refused.
    """
    text, checks = {}, []
    for name in columns:
        fact = facts.get(name.lower())
        if fact is None:
            continue
        check = column_check(engine, fact)
        if check is not None:
            checks.append(check)
        travel = column_travel(engine, fact)
        if travel is None or (transform and travel.typed_ok):
            continue
        if name == partition_column and travel.expr is not None:
            if not travel.typed_ok:
                raise EtlError(f"{table}: partition_column {name} is {fact.column_type or fact.type}, which travels "
                               f"as text; partition on a numeric, date or timestamp column")
            continue
        text[name] = travel
    return TypePlan(text, checks)


def value_problems(row: Mapping[str, Any], checks: Sequence[ValueCheck]) -> list[str]:
    """Each offending value ``source_stats_query`` found, as a message naming column, value and fix."""
    return [f"column {c.column} holds {row[f'bad_{i}']!s}, which {c.why}; {c.fix}"
            for i, c in enumerate(checks) if row.get(f"bad_{i}") is not None]


# ----- delta windows -----------------------------------------------------------------


@dataclass(frozen=True)
class Watermark:
    """The highest delta-column value a table has loaded: a timestamp or a number."""

    column: str
    value: str          # 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC wall clock) or an integer

    @property
    def is_timestamp(self) -> bool:
        return not re.fullmatch(r"-?\d+", self.value)


def timestamp_text(value: dt.datetime) -> str:
    """'YYYY-MM-DD HH:MM:SS.ffffff' in UTC (an aware value is converted), the year always 4 digits."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return f"{value.year:04d}-{value:%m-%d %H:%M:%S.%f}"      # strftime's %Y drops the zeros of year 5


def watermark_text(value: Any) -> str | None:
    """Canonical text of a MAX(delta column): UTC, microseconds, or a plain integer."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return timestamp_text(value)
    if isinstance(value, dt.date):
        return timestamp_text(dt.datetime.combine(value, dt.time()))
    if isinstance(value, (int, Decimal)) and Decimal(value) == int(value):
        return str(int(value))
    if isinstance(value, str) and (re.fullmatch(r"-?\d+", value)
                                   or re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", value)):
        return value
    raise EtlError(f"watermark value {value!r} is neither a timestamp nor an integer; "
                   f"set 'timestamp_column' to a timestamp column")


def delta_predicate(engine: str, column: str, watermark: Watermark | None, *, lookback_seconds: int = 0,
                    null_policy: str = "include") -> str | None:
    """The WHERE clause (source SQL) selecting rows beyond the watermark; None = read everything.

    Timestamps compare with >= (rows sharing the watermark instant are read again and the
    primary-key load makes that idempotent) minus the look-back window for late commits.
    Integer keys compare with > (a key is loaded once).
    """
    if watermark is None:
        return None
    col = source_quote(engine, column)
    if watermark.is_timestamp:
        start = dt.datetime.strptime(watermark.value, "%Y-%m-%d %H:%M:%S.%f")
        start -= dt.timedelta(seconds=lookback_seconds)
        pred = f"{col} >= TIMESTAMP '{timestamp_text(start)}'"
    else:
        pred = f"{col} > {int(watermark.value)}"
    if null_policy == "include":
        pred = f"({pred} OR {col} IS NULL)"
    return pred


def source_query(engine: str, namespace: str, table: str, columns: Sequence[str] | None,
                 predicate: str | None, exprs: Mapping[str, str] | None = None) -> str:
    """The extract's SELECT of ``columns`` (None: all); ``exprs`` maps a column to the pushed-down SQL
    that gives its text (``TypePlan.exprs``), selected under the column's own name."""
    exprs = dict(exprs or {})

    def select(c: str) -> str:
        q = source_quote(engine, c)
        return f"{exprs[c]} AS {q}" if c in exprs else q

    cols = ", ".join(select(c) for c in columns) if columns else "*"
    sql = f"SELECT {cols} FROM {source_table_ref(engine, namespace, table)}"
    return f"{sql} WHERE {predicate}" if predicate else sql


def source_stats_query(engine: str, namespace: str, table: str, predicate: str | None,
                       partition_column: str | None, null_column: str | None,
                       checks: Sequence[ValueCheck] = ()) -> str:
    """One pushed-down scan of the window: its rows, the partition bounds, NULL delta values, and
    for each value check one offending value's text (or NULL) as bad_<i> (``value_problems``)."""
    ref = source_table_ref(engine, namespace, table)
    parts = ["COUNT(*) AS n"]
    if partition_column:
        p = source_quote(engine, partition_column)
        parts += [f"MIN({p}) AS lo", f"MAX({p}) AS hi"]
    if null_column:
        parts.append(f"SUM(CASE WHEN {source_quote(engine, null_column)} IS NULL THEN 1 ELSE 0 END) AS nulls")
    parts += [f"MIN(CASE WHEN {c.bad} THEN {c.text} END) AS bad_{i}" for i, c in enumerate(checks)]
    sql = f"SELECT {', '.join(parts)} FROM {ref}"
    return f"{sql} WHERE {predicate}" if predicate else sql


def null_count_query(engine: str, namespace: str, table: str, column: str) -> str:
    return (f"SELECT COUNT(*) AS n FROM {source_table_ref(engine, namespace, table)} "
            f"WHERE {source_quote(engine, column)} IS NULL")


ROWS_PER_PARTITION = 500_000


def source_literal(value: Any) -> str:
    """A partition bound as SQL both engines read: a number, DATE '...' or TIMESTAMP '...' (UTC)."""
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{timestamp_text(value)}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.year:04d}-{value:%m-%d}'"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    raise EtlError(f"partition bound {value!r} is neither a number, a date nor a timestamp")


def partition_predicates(engine: str, column: str, lo: Any, hi: Any, n: int) -> list[str]:
    """WHERE clauses that split a read on ``column`` into about ``n`` ranges between ``lo`` and ``hi``.

    Together they select every row exactly once: the ranges are half-open and adjoining, the
    first also takes NULLs and values below ``lo``, the last values above ``hi``. Spark's own
    partitioning cannot split on TimestampNTZ columns, which every source timestamp is here.
    """
    if n < 2 or lo is None or hi is None or not lo < hi:
        return []
    if isinstance(lo, Decimal) and isinstance(hi, Decimal) and lo == int(lo) and hi == int(hi):
        lo, hi = int(lo), int(hi)                      # e.g. numeric(12,0) keys: whole-number bounds
    if isinstance(lo, (dt.datetime, Decimal)):
        inner = [lo + (hi - lo) * i / n for i in range(1, n)]
    elif isinstance(lo, dt.date):                                       # whole days
        inner = [lo + dt.timedelta(days=(hi - lo).days * i // n) for i in range(1, n)]
    elif isinstance(lo, int) and not isinstance(lo, bool):
        inner = [lo + (hi - lo) * i // n for i in range(1, n)]
    else:
        raise EtlError(f"partition bounds {lo!r}..{hi!r} of {column} are neither numbers, dates nor timestamps")
    bounds = sorted({b for b in inner if lo < b <= hi})
    if not bounds:
        return []
    q = source_quote(engine, column)
    edges = [source_literal(b) for b in bounds]
    return ([f"({q} < {edges[0]} OR {q} IS NULL)"]
            + [f"{q} >= {a} AND {q} < {b}" for a, b in zip(edges, edges[1:], strict=False)]
            + [f"{q} >= {edges[-1]}"])


def partition_count(rows: int, cores: int, configured: int | None, per_partition: int = ROWS_PER_PARTITION) -> int:
    """How many parallel JDBC reads: configured, else one per ``per_partition`` rows, at most cores."""
    if configured:
        return configured
    if rows <= per_partition:
        return 1
    return max(1, min(cores, -(-rows // per_partition)))


# ----- S3 paths ---------------------------------------------------------------------


def staging_folder(job_name: str, database: str, table_key: str) -> str:
    """<job>/<database>/<table>/ : every run of one table stages below this folder."""
    def clean(part: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", part)
    return f"{clean(job_name)}/{clean(database)}/{clean(table_key)}/"


def staging_prefix(job_name: str, database: str, table_key: str, started: dt.datetime) -> str:
    """<job>/<database>/<table>/<YYYY-MM-DD>/<timestamp>/ : one folder per table per run."""
    stamp = started.strftime("%Y%m%dT%H%M%S%fZ")
    return f"{staging_folder(job_name, database, table_key)}{started:%Y-%m-%d}/{stamp}/"


FOLDER_MARKER = "_$folder$"    # EMRFS (s3:// on Glue) writes an empty "<dir>_$folder$" object beside each dir


def is_older_run(key: str, folder: str, prefix: str) -> bool:
    """Is ``key`` (below ``folder``) a file of a run that started before the run owning ``prefix``?

    EMRFS folder markers count too: ``<day>/<run>_$folder$`` belongs to that run, and
    ``<day>_$folder$`` to a day before this run's (a day folder of earlier runs only).
    """
    if not key.startswith(folder):
        return False                    # e.g. the marker of ``folder`` itself: shared by every run
    rest = key[len(folder):]
    marker = rest.endswith(FOLDER_MARKER)
    parts, mine = rest.removesuffix(FOLDER_MARKER).split("/"), prefix[len(folder):].split("/")
    if marker and len(parts) == 1:
        return parts[0] < mine[0]
    return len(parts) >= (2 if marker else 3) and (parts[0], parts[1]) < (mine[0], mine[1])


# ----- reconcile: canonical forms and fingerprints ----------------------------------------
#
# VERIFY compares a table without moving its rows: each side computes, in its own SQL, a canonical
# text per value that is equal exactly when the loaded value equals the source value, a row hash
# (MD5 over the columns' MD5s, 'N' for NULL, '|' between them: unambiguous, NULL is not ''), and per
# key range (COUNT(*), SUM of the first 15 hex digits of the row hashes as a 60-bit integer). Only
# differing ranges are split further; only small differing ranges send key + row hash.
#
# A column's canonical form is chosen by its *kind*, from the source's information_schema type and
# the target column's Snowflake type. A source type not listed in CANON_KINDS (or a target type of
# another family) makes VERIFY refuse the table, naming the column: never a wrong comparison.

CANON_KINDS = {
    "postgres": {
        "smallint": "int", "integer": "int", "bigint": "int", "numeric": "decimal",
        "real": "float4", "double precision": "float8",
        "text": "text", "character varying": "text", "uuid": "text", "json": "text", "jsonb": "text",
        "boolean": "bool", "date": "date", "timestamp without time zone": "ts_ntz",
        "timestamp with time zone": "ts_tz", "bytea": "binary",
        # loaded as the server's text (``column_travel``: CAST(c AS text); char(n) without its blanks)
        "character": "text", "time with time zone": "text", "interval": "text", "bit varying": "text",
        "bit": "text", "xml": "text", "cidr": "text",
        "time without time zone": "time", "money": "money", "inet": "inet", "array": "json_array",
    },
    "mysql": {
        "tinyint": "int", "smallint": "int", "mediumint": "int", "int": "int", "bigint": "int",
        "decimal": "decimal", "float": "float4", "double": "float8",
        "char": "text", "varchar": "text", "tinytext": "text", "text": "text", "mediumtext": "text",
        "longtext": "text", "enum": "text", "set": "text", "json": "text",
        "date": "date", "datetime": "ts_ntz", "timestamp": "ts_tz",
        "binary": "binary", "varbinary": "binary", "tinyblob": "binary", "blob": "binary",
        "mediumblob": "binary", "longblob": "binary",
        "time": "text", "year": "plus0", "bit": "plus0",    # TIME as its text; YEAR, BIT(n) as the number c + 0
    },
}
# The Snowflake type family (``type_family``) a kind must have been loaded into.
KIND_FAMILIES = {"int": "number", "decimal": "number", "float4": "float", "float8": "float", "text": "text",
                 "bool": "boolean", "date": "date", "ts_ntz": "timestamp", "ts_tz": "timestamp",
                 "binary": "binary", "time": "time", "money": "number", "inet": "text", "json_array": "variant",
                 "bit_bool": "boolean", "plus0": "number"}
NULL_MARK = "'N'"
# Session settings for the fingerprint queries on a source connection (each query has a connection of its
# own). PostgreSQL: its planner estimates GROUP BY FLOOR((key - lo) / width) to have one group per key (the
# key's distinct count), so it sorts every row of the scan, to disk, where a hash aggregate of the few
# buckets is 20% faster: enable_sort off makes it hash-aggregate (a hash aggregate spills by partitions
# should it outgrow work_mem). JIT compiles each fingerprint query (3-5 s on 5M rows) and gains nothing:
# the time is in MD5 and TO_CHAR calls. Both are planner settings any user may set (docs/PERFORMANCE.md).
# DateStyle ISO: the canonical text of a date or timestamp is its output text (``canonical_sql``), which is
# ISO only in that style (the default, but a database or role may set another). jit exists from PostgreSQL
# 11 on: on 9.6 and 10 ``SET jit`` is an error ("unrecognized configuration parameter"), so it is set only
# where the server has it. work_mem at least 16MB: the first level's 65,536 buckets of a hashed key reach every
# parallel worker's hash table, about 15 MB each; within the default 4MB (times hash_mem_multiplier 2) each worker
# spilled 250 MB to disk and the statement took 18.5 s instead of 9.7 s on 5M rows. A larger work_mem is kept.
# parallel_setup_cost and parallel_tuple_cost 0: the planner prices MD5 as one operator, so it planned the key-only
# fingerprint (``deletes``) in one process, 16.6 s by a hashed key on 5M rows where its parallel plan takes 11.0 s
# (same minutes). The workers stay within max_parallel_workers_per_gather, as the database sets it.
PG_JIT_OFF = ("DO $$BEGIN IF current_setting('server_version_num')::int >= 110000 THEN SET jit = off; END IF; "
              "END$$")
PG_WORK_MEM = ("DO $$BEGIN IF pg_size_bytes(current_setting('work_mem')) < 16777216 THEN SET work_mem = '16MB'; "
               "END IF; END$$")
RECONCILE_SESSION = {"postgres": (PG_JIT_OFF, PG_WORK_MEM, "SET enable_sort = off", "SET DateStyle = ISO",
                                   "SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0")}
HASH_HEX_DIGITS = 15          # 60 bits: positive as a signed 64-bit integer on every engine


def canon_kind(engine: str, data_type: str, column_type: str, target_type_text: str) -> tuple[str | None, str]:
    """(kind, "") or (None, why VERIFY cannot compare the column)."""
    kind = CANON_KINDS.get(engine, {}).get(data_type.lower())
    target = target_type_text.upper()
    if kind == "int" and engine == "mysql" and column_type.lower().startswith("tinyint(1)") \
            and type_family(target) == "boolean":
        kind = "bool"                           # MySQL BOOLEAN (tinyint(1)) loaded as BOOLEAN
    if kind is not None and data_type.lower() == "bit" and type_family(target) == "boolean":
        kind = "bit_bool"                       # bit(1), both engines, loaded as BOOLEAN
    if kind is None:
        return None, f"source type {data_type} has no canonical form for VERIFY yet"
    if type_family(target) != KIND_FAMILIES[kind]:
        return None, f"source type {data_type} was loaded as {target_type_text}, which VERIFY does not compare"
    if kind in ("ts_ntz", "ts_tz") and _timestamp_kind(target)[0] != ("NTZ" if kind == "ts_ntz" else "TZ") \
            or kind == "money" and _number_digits(target)[1] < 2:          # money has cents
        return None, f"source type {data_type} was loaded as {target_type_text}, which VERIFY does not compare"
    if kind == "decimal" and _number_digits(target)[1] == 0:
        kind = "int"
    return kind, ""


def _float_canon(dialect: str, x: str) -> str:
    """A finite non-zero double as '<sign><binary exponent>p<53-bit mantissa>': exact, from IEEE arithmetic.

    e = FLOOR(LOG2(|x|)) clamped to the double range and corrected by one either way (a logarithm may
    round across a power of two); |x| / 2^e * 2^52 is then an integer below 2^53, computed exactly
    (division and multiplication by powers of two are exact in IEEE 754, also for subnormals).
    """
    a = f"ABS({x})"
    log2 = {"postgres": f"LN({a}) / LN(CAST(2 AS DOUBLE PRECISION))", "mysql": f"LOG2({a})",
            "snowflake": f"LOG(2, {a})"}[dialect]
    e0 = f"LEAST(GREATEST(FLOOR({log2}), -1074), 1023)"
    e = (f"({e0} + CASE WHEN {a} / POWER(2, {e0}) >= 2 THEN 1 "
         f"WHEN {a} / POWER(2, {e0}) < 1 THEN -1 ELSE 0 END)")
    m = f"{a} / POWER(2, {e}) * POWER(2, 52)"

    def whole(v: str) -> str:
        return {"postgres": f"CAST(CAST({v} AS BIGINT) AS TEXT)", "mysql": f"CAST(CAST({v} AS SIGNED) AS CHAR)",
                "snowflake": f"TO_VARCHAR(CAST({v} AS NUMBER(20,0)))"}[dialect]

    sign = f"CASE WHEN {x} < 0 THEN '-' ELSE '' END"
    concat = "CONCAT({}, {}, 'p', {})" if dialect == "mysql" else "{} || {} || 'p' || {}"
    finite = concat.format(sign, whole(e), whole(m))
    zero = f"WHEN {x} = 0 THEN CASE WHEN ATAN2({x}, -1) < 0 THEN '-0' ELSE '0' END"
    if dialect == "mysql":                 # MySQL/MariaDB DOUBLE holds no NaN or infinity
        return f"CASE {zero} ELSE {finite} END"
    t = "DOUBLE PRECISION" if dialect == "postgres" else "FLOAT"
    nan, inf = ("NaN", "Infinity") if dialect == "postgres" else ("NaN", "inf")
    return (f"CASE WHEN {x} = CAST('{nan}' AS {t}) THEN 'NaN' WHEN {x} = CAST('{inf}' AS {t}) THEN 'inf' "
            f"WHEN {x} = CAST('-{inf}' AS {t}) THEN '-inf' {zero} ELSE {finite} END")


# Kinds whose canonical text is one expression per dialect ({c}: the quoted column), each the text the
# job loads (``column_travel``) on the source side and the same text from the loaded value on Snowflake:
# time: 'HH:MI:SS.ffffff' (PostgreSQL time loaded as TIME(6)). inet: PostgreSQL's output text, as the
# driver reads it ('10.0.0.1'; CAST(inet AS text) would add '/32'). json_array: a PostgreSQL array as
# the JSON text the job stages (to_json), against TO_JSON of the VARIANT that PARSE_JSON made of it.
# bit_bool: bit(1) loaded as BOOLEAN, '1'/'0'. plus0: MySQL YEAR and BIT(n) as the number c + 0.
_FIXED_FORMS = {
    "time": {"postgres": "TO_CHAR({c}, 'HH24:MI:SS.US')", "snowflake": "TO_VARCHAR({c}, 'HH24:MI:SS.FF6')"},
    "inet": {"postgres": "CASE WHEN {c} IS NOT NULL THEN FORMAT('%s', {c}) END", "snowflake": "TO_VARCHAR({c})"},
    "json_array": {"postgres": "CAST(TO_JSON({c}) AS TEXT)", "snowflake": "TO_JSON({c})"},
    "bit_bool": {"postgres": "CAST({c} AS TEXT)", "mysql": "CAST({c} + 0 AS CHAR)",
                 "snowflake": "CASE WHEN {c} THEN '1' WHEN NOT {c} THEN '0' END"},
    "plus0": {"mysql": "CAST({c} + 0 AS CHAR)", "snowflake": "TO_VARCHAR({c})"},
}


def fixed_form_sql(dialect: str, kind: str, col: str) -> str:
    """The canonical text of a ``_FIXED_FORMS`` kind; a dialect that never has the kind is an error."""
    form = _FIXED_FORMS[kind].get(dialect)
    if form is None:
        raise ValueError(f"canonical kind {kind!r} does not occur on {dialect}")
    return form.format(c=col)


NUMBER_DIGITS = 38            # Snowflake's NUMBER: at most 38 digits, the scale's included


def _decimal_canon(dialect: str, col: str, scale: int, source_scale: int | None = None) -> str:
    """A decimal as sign, whole part, '.', and its ``scale`` fraction digits (zero-padded), all digits.

    A PostgreSQL numeric(p, s) column whose s is ``scale`` is its output text: every value of it has
    exactly s fraction digits (the column's typmod rounds each value to s), never an exponent, a '-' only
    below zero (numeric has no negative zero) - the same text, at a third of the cost (docs/PERFORMANCE.md).

    Snowflake keeps a product's scale (S = min(S1 + S2, max(S1, S2, 12))) within 38 digits, so
    fraction * 10^scale overflows once 2 * scale > 38 (NUMBER(38,30)): there the fraction's digits are
    taken in pieces of 38 - scale digits, each step's rest cast exactly to the smaller scale it has.
    """
    sign = f"CASE WHEN {col} < 0 THEN '-' ELSE '' END"
    whole = f"TRUNCATE({col}, 0)" if dialect == "mysql" else f"TRUNC({col})"
    frac = f"ABS({col} - {whole})"
    if dialect == "postgres" and source_scale == scale:
        return f"CAST({col} AS TEXT)"
    if dialect == "postgres":
        digits = f"LPAD(CAST(TRUNC({frac} * 1{'0' * scale}) AS TEXT), {scale}, '0')"
        return f"{sign} || CAST(ABS({whole}) AS TEXT) || '.' || {digits}"
    if dialect == "mysql":
        digits = f"LPAD(CAST(CAST({frac} * 1{'0' * scale} AS DECIMAL(65,0)) AS CHAR), {scale}, '0')"
        return f"CONCAT({sign}, CAST(CAST(ABS({whole}) AS DECIMAL(65,0)) AS CHAR), '.', {digits})"
    # scale >= 1 here (scale 0 is kind int): the whole part has at most 37 digits
    return (f"{sign} || TO_VARCHAR(CAST(ABS({whole}) AS NUMBER(37,0))) || '.' || "
            f"{_snowflake_fraction_digits(frac, scale)}")


def _snowflake_fraction_digits(frac: str, scale: int) -> str:
    """The ``scale`` digits of ``frac`` (0 <= frac < 1, at most ``scale`` decimals) on Snowflake, zero-padded."""
    pieces = []
    while 2 * scale > NUMBER_DIGITS:
        take = NUMBER_DIGITS - scale                 # the product frac * 10^take stays below 10^take
        shifted = f"({frac}) * 1{'0' * take}"
        head = f"TRUNC({shifted})"
        pieces.append(f"LPAD(TO_VARCHAR(CAST({head} AS NUMBER({take},0))), {take}, '0')")
        scale -= take
        frac = f"CAST({shifted} - {head} AS NUMBER({scale},{scale}))"     # exact: it has {scale} decimals
    pieces.append(f"LPAD(TO_VARCHAR(CAST(({frac}) * 1{'0' * scale} AS NUMBER({scale},0))), {scale}, '0')")
    return " || ".join(pieces)


def canonical_sql(dialect: str, kind: str, col: str, scale: int = 0, source_scale: int | None = None) -> str:
    """The canonical text of column ``col`` (quoted) of ``kind`` on ``dialect`` (postgres, mysql, snowflake).

    int: plain digits. decimal: sign, whole part, '.' and the fraction's digits at ``scale`` (the target's
    scale, >= the source column's ``source_scale``), see ``_decimal_canon``. float4/float8: see
    ``_float_canon``; a 4-byte float is first read as the double its shortest text names (what the extract
    staged). text/JSON: the string
    itself (JSON as loaded: the source's text). bool: 1/0 (MySQL tinyint(1): any other value stays its
    digits, so it cannot match).
    date/timestamps: ISO text, a timestamp's fraction without its trailing zeros (none, and no '.', on the
    second), as PostgreSQL writes a timestamp (DateStyle ISO, ``RECONCILE_SESSION``) - its output text is
    a third of TO_CHAR's cost; TIMESTAMP_TZ and timestamptz as the UTC instant.
    binary: lower-case hex. money: its numeric, as decimal. The kinds of ``_FIXED_FORMS``: see there.
    """
    pg, my, sf = dialect == "postgres", dialect == "mysql", dialect == "snowflake"
    if kind in _FIXED_FORMS:
        return fixed_form_sql(dialect, kind, col)
    if kind == "money":        # PostgreSQL money loaded as its numeric (NUMBER(19,2)): compared as that decimal
        kind, col = "decimal", f"CAST({col} AS NUMERIC)" if pg else col
    if kind == "int":
        return f"CAST({col} AS TEXT)" if pg else f"CAST({col} AS CHAR)" if my else f"TO_VARCHAR({col})"
    if kind == "decimal":
        return _decimal_canon(dialect, col, scale, source_scale)
    if kind == "float4" and not sf:
        kind, col = "float8", (f"CAST(CAST({col} AS TEXT) AS DOUBLE PRECISION)" if pg
                               else f"CAST(CAST({col} AS CHAR) AS DOUBLE)")
    if kind in ("float4", "float8"):
        return _float_canon(dialect, col)
    if kind == "text":
        return f"CAST({col} AS TEXT)" if pg else f"CAST({col} AS CHAR)" if my else f"TO_VARCHAR({col})"
    if kind == "bool":
        if my:
            return f"CASE {col} WHEN 1 THEN '1' WHEN 0 THEN '0' ELSE CAST({col} AS CHAR) END"
        return f"CASE WHEN {col} THEN '1' WHEN NOT {col} THEN '0' END"     # NULL stays NULL
    formats = {"date": ("%Y-%m-%d", "YYYY-MM-DD"), "ts_ntz": ("%Y-%m-%d %H:%i:%s.%f", "YYYY-MM-DD HH24:MI:SS.FF6")}
    if kind in ("date", "ts_ntz", "ts_tz"):
        my_fmt, sf_fmt = formats["date" if kind == "date" else "ts_ntz"]
        if pg:
            return f"CAST({col} AT TIME ZONE 'UTC' AS TEXT)" if kind == "ts_tz" else f"CAST({col} AS TEXT)"
        if my:                # zero dates loaded as NULL; the job's session runs in UTC (time_zone '+00:00')
            zero = "0000-00-00" if kind == "date" else "0000-00-00 00:00:00.000000"
            text = f"NULLIF(DATE_FORMAT({col}, '{my_fmt}'), '{zero}')"
            return text if kind == "date" else f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {text}))"
        text = (f"TO_VARCHAR(CONVERT_TIMEZONE('UTC', {col}), '{sf_fmt}')" if kind == "ts_tz"
                else f"TO_VARCHAR({col}, '{sf_fmt}')")
        return text if kind == "date" else f"RTRIM(RTRIM({text}, '0'), '.')"
    if kind == "binary":
        return f"ENCODE({col}, 'hex')" if pg else f"LOWER(HEX({col}))" if my else f"LOWER(HEX_ENCODE({col}))"
    raise ValueError(f"unknown canonical kind {kind!r}")


# Kinds whose canonical text may be any string (and so hold '|' or read 'N'): the row hash frames them with
# their length. Every other kind's text is digits, signs, '.', ':', '-', 'p', hex or a fixed word.
FREE_TEXT_KINDS = frozenset({"text", "json_array"})


# PostgreSQL server encodings whose text bytes are UTF-8 as they are: MD5 and OCTET_LENGTH read the
# stored bytes, and SQL_ASCII stores what the client sent (the JDBC driver sends UTF-8), unconverted.
PG_UTF8_ENCODINGS = frozenset({"UTF8", "SQL_ASCII"})


def row_hash_sql(dialect: str, columns: Sequence[tuple[str, str]], to_utf8: bool = False) -> str:
    """MD5 (hex) of the row: one MD5 over its columns' canonical texts joined by '|' (``row_text_sql``).

    ``columns``: (kind, canonical SQL) in column order. NULL is 'N'; a FREE_TEXT_KINDS text is written as
    its length in bytes (of its UTF-8 form, what MD5 reads), ':' and itself, so no text can pass for
    another split of the columns or for NULL (the other kinds' texts hold no '|' and are never 'N'). Bytes,
    not characters: a text's byte length is stored with it (PostgreSQL counts characters by reading
    them). One MD5 per row, not one per column: the hash function is most of a fingerprint's cost
    (docs/PERFORMANCE.md "VERIFY and REPAIR on 5M").

    ``to_utf8`` (PostgreSQL): the database's server encoding is not UTF-8 (LATIN1, WIN1252, ...; see
    ``PG_UTF8_ENCODINGS``), so the texts' bytes are not what Snowflake hashes: lengths and the MD5 are
    taken of ``convert_to(..., 'UTF8')``. A quarter more on the texts' part, so only where needed.
    """
    return md5_sql(dialect, row_text_sql(dialect, columns, to_utf8), to_utf8)


def md5_sql(dialect: str, text: str, to_utf8: bool = False) -> str:
    """MD5 (hex) of the UTF-8 bytes of ``text`` (``to_utf8``: see ``row_hash_sql``)."""
    return f"MD5(CONVERT_TO({text}, 'UTF8'))" if dialect == "postgres" and to_utf8 else f"MD5({text})"


def row_text_sql(dialect: str, columns: Sequence[tuple[str, str]], to_utf8: bool = False) -> str:
    """The text ``row_hash_sql`` hashes: the canonical texts, framed, joined by '|'."""
    parts = []
    for kind, c in columns:
        if dialect == "mysql":        # the UTF-8 bytes, whatever the column's character set
            c = f"CONVERT({c} USING utf8mb4)"
            framed = f"CONCAT(OCTET_LENGTH({c}), ':', {c})"
        elif dialect == "postgres" and to_utf8:
            framed = f"CAST(OCTET_LENGTH(CONVERT_TO({c}, 'UTF8')) AS TEXT) || ':' || {c}"
        else:
            n = f"CAST(OCTET_LENGTH({c}) AS TEXT)" if dialect == "postgres" else f"TO_VARCHAR(OCTET_LENGTH({c}))"
            framed = f"{n} || ':' || {c}"
        parts.append(f"COALESCE({framed if kind in FREE_TEXT_KINDS else c}, {NULL_MARK})")
    if dialect == "mysql":
        return f"CONCAT_WS('|', {', '.join(parts)})"
    return " || '|' || ".join(parts)


def hash_slice_sql(dialect: str, row_hash: str) -> str:
    """The first HASH_HEX_DIGITS hex digits of a row hash as an integer."""
    head = f"SUBSTR({row_hash}, 1, {HASH_HEX_DIGITS})"
    if dialect == "postgres":         # 'x' and hex digits: a bit string of 4 bits a digit, read as a number
        return f"CAST(CAST('x' || {head} AS BIT({4 * HASH_HEX_DIGITS})) AS BIGINT)"
    if dialect == "mysql":
        return f"CAST(CONV({head}, 16, 10) AS UNSIGNED)"
    return f"TO_NUMBER({head}, '{'X' * HASH_HEX_DIGITS}')"


KeyRanges = Sequence[tuple[int, int]]     # inclusive (lo, hi) key ranges, sorted and disjoint


def bucket_width(lo: int, hi: int, buckets: int) -> int:
    """Width of each of at most ``buckets`` half-open key ranges that cover lo..hi (inclusive)."""
    return max(1, -(-(hi - lo + 1) // max(1, buckets)))


def ranges_sql(key: str, ranges: KeyRanges) -> str:
    """The condition 'key in one of ``ranges``'."""
    one = [f"{key} = {a}" if a == b else f"{key} BETWEEN {a} AND {b}" for a, b in ranges]
    if len(ranges) == 1 and ranges[0][0] != ranges[0][1]:
        a, b = ranges[0]
        return f"{key} >= {a} AND {key} <= {b}"
    return one[0] if len(one) == 1 else "(" + " OR ".join(one) + ")"


def range_fingerprints_sql(dialect: str, table: str, key: str, row_hash: str, lo: int, width: int,
                           ranges: KeyRanges, where: str | None = None, hashed: bool = False) -> str:
    """Per bucket FLOOR((key - lo) / width) of the keys in ``ranges``: (bucket, rows, sum of hash slices).
    ``hashed`` (``hashed_key_sql``; lo 0, width a power of two): the bucket is key >> log2(width)."""
    bucket = shift_sql(dialect, key, width.bit_length() - 1) if hashed else f"FLOOR(({key} - {lo}) / {width})"
    cond = _where(dialect, key, ranges, where, hashed)
    return (f"SELECT {bucket} AS b, COUNT(*) AS n, SUM({hash_slice_sql(dialect, row_hash)}) AS h "
            f"FROM {table}{cond} GROUP BY {bucket}")


def key_hashes_sql(dialect: str, table: str, key: str, row_hash: str, ranges: KeyRanges, where: str | None = None,
                   label: str | None = None) -> str:
    """Key and row hash of the rows in ``ranges``; ``label``: a hashed key's own text too, as kt (its ranges
    then tested as ``hashed_ranges_sql`` does)."""
    cond = _where(dialect, key, ranges, where, label is not None)
    return f"SELECT {key} AS k, {row_hash} AS rh{f', {label} AS kt' if label else ''} FROM {table}{cond}"


def _where(dialect: str, key: str, ranges: KeyRanges, where: str | None, hashed: bool) -> str:
    """' WHERE' the key is in ``ranges`` and ``where`` holds; '' when neither limits the rows."""
    cond = hashed_ranges_sql(dialect, key, ranges) if hashed else ranges_sql(key, ranges)
    parts = [p for p in (cond, f"({where})" if where else None) if p]
    return f" WHERE {' AND '.join(parts)}" if parts else ""


HASHED_KEY_BITS = 4 * HASH_HEX_DIGITS
HASHED_KEY_SPAN = (0, 2 ** HASHED_KEY_BITS - 1)     # the values of a hashed key (``hashed_key_sql``)


def shift_sql(dialect: str, key: str, bits: int) -> str:
    """key >> bits: exact integer arithmetic on every engine (no division, whose rounding could move a
    key across a bucket's edge). Snowflake: BITSHIFTRIGHT (docs/SNOWFLAKE.md)."""
    return f"BITSHIFTRIGHT({key}, {bits})" if dialect == "snowflake" else f"({key} >> {bits})"


def _aligned_bits(a: int, b: int) -> int:
    """The largest n with a and b + 1 multiples of 2^n (at most HASHED_KEY_BITS)."""
    return min(HASHED_KEY_BITS, *((x & -x).bit_length() - 1 for x in (a, b + 1) if x))


def hashed_ranges_sql(dialect: str, key: str, ranges: KeyRanges) -> str | None:
    """'key in ``ranges``' for a hashed key, which each mention recomputes (an MD5 per row: 100 BETWEENs
    cost 60x one on PostgreSQL, docs/PERFORMANCE.md). The ranges VERIFY asks for are unions of aligned
    power-of-two blocks (its widths are powers of two): they are written as the blocks of the smallest
    size they all align to, ``(key >> n) IN (...)``, the key computed once; only were that list to pass
    HASHED_BLOCKS_PER_LIST, one list per block size (once per size). None: every key."""
    if list(ranges) == [HASHED_KEY_SPAN]:
        return None
    n = min(_aligned_bits(a, b) for a, b in ranges)
    if sum(((b + 1 - a) >> n) for a, b in ranges) <= HASHED_BLOCKS_PER_LIST:
        groups = {n: list(ranges)}
    else:
        groups = {}
        for a, b in ranges:
            groups.setdefault(_aligned_bits(a, b), []).append((a, b))
    parts = [f"{shift_sql(dialect, key, n)} IN "
             f"({', '.join(str(i) for a, b in rs for i in range(a >> n, (b >> n) + 1))})"
             for n, rs in sorted(groups.items())]
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


HASHED_BLOCKS_PER_LIST = 10_000     # Snowflake: at most 16,384 expressions in a list (docs/SNOWFLAKE.md)


def hashed_key_sql(dialect: str, key_text: str, to_utf8: bool = False) -> str:
    """A key of any columns and types as an integer: the 60-bit slice of the MD5 of its canonical text
    (``row_text_sql`` of the key columns). VERIFY bisects these like integer keys; two keys sharing a slice
    only share a bucket - the leaves are compared by the key's text."""
    return hash_slice_sql(dialect, md5_sql(dialect, key_text, to_utf8))


def key_bounds_sql(table: str, key: str, where: str | None = None) -> str:
    return f"SELECT MIN({key}) AS lo, MAX({key}) AS hi FROM {table}" + (f" WHERE {where}" if where else "")


# VERIFY's source queries answer up to tens of thousands of rows (the first level's buckets; the keys and row hashes
# of the leaves). Read through the JDBC driver, each value and each next row is a Py4J round trip of its own (about
# 75 us): 4,096 rows of three values took 1.3 s, against 0.1 s as one text. ``bulk_rows_sql`` has the source answer
# one row: the row count and one text holding every row (PostgreSQL: json_agg, 9.3 on; MySQL/MariaDB: GROUP_CONCAT,
# on every version), read with one call and split here. The values are integers, hex digits (row hashes) and free
# texts (a key's canonical text): on MySQL the free texts travel as their UTF-8 in hex, the others as they are.
BULK_SESSION = {"mysql": ("SET SESSION group_concat_max_len = 1073741824",)}   # the default is 1,024 bytes


class BulkCut(EtlError):
    """A bulk answer holding other rows than the source counted (MySQL cuts GROUP_CONCAT at a byte count)."""


def bulk_rows_sql(engine: str, sql: str, names: Sequence[str], texts: Sequence[str] = ()) -> str:
    """``sql``'s rows, whose columns are ``names`` (lower-case aliases; ``texts`` of them free texts, the others
    integers or hex digits), as one row: (n, its row count; j, the rows).

    PostgreSQL: ``OFFSET 0`` keeps ``sql`` planned as it is alone. Pulled up into the outer aggregate, a query
    without its own aggregate (the leaves' keys and row hashes) has its expressions computed above the Gather,
    by the leader alone, or no parallel plan at all: a hashed key's leaves on 5M rows took 6.3 s, not 4.1 s."""
    if engine == "postgres":
        return f"SELECT COUNT(*) AS n, CAST(JSON_AGG(q) AS TEXT) AS j FROM ({sql} OFFSET 0) q"

    def cell(n: str) -> str:
        value = (f"CONCAT('v', HEX(CAST(q.{n} AS CHAR CHARACTER SET utf8mb4)))" if n in texts
                 else f"CONCAT('d', CAST(q.{n} AS CHAR))")
        return f"IFNULL({value}, '-')"
    cells = ", ".join(cell(n) for n in names)
    return f"SELECT COUNT(*) AS n, GROUP_CONCAT(CONCAT_WS(',', {cells}, '.') SEPARATOR ';') AS j FROM ({sql}) q"


def bulk_rows(engine: str, names: Sequence[str], n: int, text: str | bytes | None, what: str) -> list[dict]:
    """``bulk_rows_sql``'s answer as rows (name -> value; numbers as ints on PostgreSQL, as their digits on MySQL).
    A text holding other than the rows counted raises BulkCut, never gives fewer rows or a shorter value: a source
    row missing here would read as a key the source lacks. MySQL cuts GROUP_CONCAT at a byte count (the session's
    group_concat_max_len, the server's max_allowed_packet), so each row ends in '.' there: a row cut anywhere
    lacks it, and whole rows cut off leave fewer than counted."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    rows: list[dict] | None
    try:
        if not text:
            rows = []
        elif engine == "postgres":
            rows = [{k.lower(): v for k, v in r.items()} for r in json.loads(text, parse_float=Decimal)]
        else:
            rows = [_bulk_line(names, line) for line in text.split(";")]
    except ValueError:          # a cut text: a row without its end mark, an odd number of hex digits
        rows = None
    if rows is None or len(rows) != n:
        raise BulkCut(f"{what}: the source counted {n} row(s), and the text it sent them in holds "
                      f"{'fewer' if rows is None else len(rows)}")
    return rows


def _bulk_line(names: Sequence[str], line: str) -> dict:
    """One MySQL row of ``bulk_rows_sql``: its values, then '.', its end; a row cut anywhere lacks the '.'."""
    cells = line.split(",")
    if len(cells) != len(names) + 1 or cells[-1] != ".":
        raise ValueError(line)
    return dict(zip(names, (_bulk_cell(c) for c in cells[:-1]), strict=True))


def _bulk_cell(cell: str) -> str | None:
    """One MySQL value of ``bulk_rows_sql``: '-' NULL, 'd' and the value's text, 'v' and its text's UTF-8 in hex."""
    if cell == "-":
        return None
    if cell.startswith("d"):
        return cell[1:]
    if not cell.startswith("v"):
        raise ValueError(cell)
    return bytes.fromhex(cell[1:]).decode("utf-8")


def differing_buckets(source: Mapping[int, tuple[int, int]], target: Mapping[int, tuple[int, int]]) -> list[int]:
    """Buckets whose (rows, hash sum) differ, in order; a bucket missing on one side is (0, 0) there."""
    return sorted(b for b in set(source) | set(target) if source.get(b, (0, 0)) != target.get(b, (0, 0)))


def bucket_range(lo: int, width: int, bucket: int, hi: int) -> tuple[int, int]:
    """The inclusive key range of ``bucket``."""
    start = lo + bucket * width
    return start, min(hi, start + width - 1)


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` sorted, with overlapping or adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def clip(r: tuple[int, int], ranges: KeyRanges) -> list[tuple[int, int]]:
    """The parts of ``r`` inside ``ranges`` (sorted, disjoint)."""
    i = max(0, bisect.bisect_right(ranges, (r[0], r[0])) - 1)
    out = []
    for a, b in ranges[i:]:
        if a > r[1]:
            break
        if b >= r[0]:
            out.append((max(a, r[0]), min(b, r[1])))
    return out


VERIFY_BUCKETS = 16            # a differing bucket is split into this many at the next level
VERIFY_LEAF_ROWS = 128         # a differing range this small sends key + row hash instead of splitting again
# The first level's buckets are as narrow as a leaf, so a difference it finds is compared key by key at once, with no
# level between (each a scan on both sides: a second level of 5M rows took 1.5 s on the emulator, 4.3 s by a hashed
# key on PostgreSQL). The answers are read in bulk (``bulk_rows_sql``): 65,536 buckets cost what 4,096 did (5M rows:
# PostgreSQL 6.6 s, the emulator 5.8 s, either way), and fit a MySQL 5.7 max_allowed_packet of 4 MB (about 40 bytes
# a bucket). Tables above 8.4M keys get 65,536 wider buckets, and a level more per factor of 16.
VERIFY_BUCKET_KEYS = VERIFY_LEAF_ROWS
VERIFY_TOP_BUCKETS = 65_536
VERIFY_RANGES_PER_STATEMENT = 256   # key ranges one fingerprint or key-hash statement looks into
VERIFY_LOG_KEYS = 100          # differing keys logged one per line (all are counted)


def top_buckets(lo: int, hi: int) -> int:
    """The first level's bucket count: one bucket per VERIFY_BUCKET_KEYS keys, within 16..VERIFY_TOP_BUCKETS."""
    return min(VERIFY_TOP_BUCKETS, max(VERIFY_BUCKETS, -(-(hi - lo + 1) // VERIFY_BUCKET_KEYS)))


Fingerprints = Callable[[int, int, KeyRanges], tuple[Mapping[int, tuple[int, int]], Mapping[int, tuple[int, int]]]]


def differing_ranges(lo: int, hi: int, fingerprints: Fingerprints, buckets: int = VERIFY_BUCKETS,
                     leaf_rows: int = VERIFY_LEAF_ROWS, first: int | None = None
                     ) -> tuple[list[tuple[int, int]], int, int]:
    """Bisect lo..hi, a level at a time, down to the small key ranges whose fingerprints differ.

    ``fingerprints(lo, width, ranges)`` returns (source, target) (rows, hash sum) per bucket
    FLOOR((key - lo) / width) of the keys in ``ranges``. The first level has ``first`` buckets (default
    ``top_buckets``); each next level is ``buckets`` times finer and looks only into the differing
    buckets of the level before (clipped to the ranges it looked into), all of them in one call.
    Returns (the inclusive ranges to compare key by key, source rows in lo..hi, fingerprint calls).
    """
    width = bucket_width(lo, hi, first or top_buckets(lo, hi))
    pending: list[tuple[int, int]] = [(lo, hi)]
    leaves: list[tuple[int, int]] = []
    rows = calls = 0
    while pending:
        src, tgt = fingerprints(lo, width, pending)
        if calls == 0:
            rows = sum(n for n, _ in src.values())
        calls += 1
        deeper = []
        for bucket in differing_buckets(src, tgt):
            small = max(src.get(bucket, (0, 0))[0], tgt.get(bucket, (0, 0))[0]) <= leaf_rows or width == 1
            for part in clip(bucket_range(lo, width, bucket, hi), pending):
                (leaves if small or part[0] == part[1] else deeper).append(part)
        pending, width = merged(deeper), bucket_width(0, width - 1, buckets)
    return sorted(leaves), rows, calls


@dataclass(frozen=True)
class VerifyPlan:
    """What VERIFY computes on each side (``verify_plan``): the row hash, the key it bisects - the column
    itself for one integer column, else ``hashed_key_sql`` of the key's text (the labels, by which the
    leaves are compared) - or the problems that keep it from comparing the table."""

    problems: tuple[str, ...] = ()
    src_hash: str = ""
    tgt_hash: str = ""
    src_key: str = ""
    tgt_key: str = ""
    src_label: str | None = None
    tgt_label: str | None = None
    stage_label: str | None = None      # the target's label over a staging table of its rows (aliased s)
    src_lead: KeyLead | None = None     # a hashed key's first column, when REPAIR can narrow by it (``lead_in_sql``)


class KeyLead(NamedTuple):
    """A hashed key's first column on the source, when its values can be written as literals that an index on the
    key finds (REPAIR: ``lead_in_sql``): an integer, or a text compared as itself (``LEAD_TEXT_TYPES``)."""

    engine: str
    kind: str                 # "int" or "text"
    column: str               # quoted
    type: str = ""            # its information_schema data_type


# Source types a key's first column is narrowed by as a text literal: equal to their canonical text (CAST AS
# TEXT/CHAR), so the literal finds the row (a collation's wider equality - case, trailing blanks - only finds more
# rows, which the hashed key then leaves out). Not MySQL CHAR: its pad rules differ by collation (NO PAD). Not a
# PostgreSQL database in another encoding than UTF-8, nor a MySQL column in another character set than utf8mb4: an
# extra key's text (the target's) may hold a character they cannot convert, an error for the whole statement
# (MariaDB 10.11, a latin1 column: "Illegal mix of collations").
LEAD_TEXT_TYPES = {"postgres": frozenset({"text", "character varying", "uuid"}), "mysql": frozenset({"varchar"})}


class _Canon(NamedTuple):
    """One column's canonical text: its kind, and its SQL on the source, on the target and over the target's
    staging table (aliased s, where BINARY is hex text)."""

    kind: str
    src: str
    tgt: str
    stage: str


def verify_plan(engine: str, cfg: TableConfig, facts: Mapping[str, SourceColumn],
                target_cols: Mapping[str, str]) -> VerifyPlan:
    """VERIFY's SQL for a table, from its source columns' facts (in column order) and its target's types."""
    wanted = {c.lower() for c in cfg.columns} if cfg.columns else None
    problems, src, tgt, canon = [], [], [], {}
    for c in facts.values():
        name = c.name
        if wanted is not None and name.lower() not in wanted:
            continue
        ttype = target_cols.get(name.upper())
        if ttype is None:
            problems.append(f"column {name} is not in {cfg.target}")
            continue
        kind, why = canon_kind(engine, c.type, c.column_type, ttype)
        if kind is None:
            problems.append(f"column {name}: {why}")
            continue
        scale = _number_digits(ttype)[1] if kind in ("decimal", "money") else 0
        col = canon[name.lower()] = _Canon(
            kind,
            canonical_sql(engine, kind, source_quote(engine, name), scale, c.scale if kind == "decimal" else None),
            canonical_sql("snowflake", kind, qi(name.upper()), scale),
            canonical_sql("snowflake", kind, Column(name, name.upper(), ttype).load_expr, scale))
        src.append((kind, col.src))
        tgt.append((kind, col.tgt))
    left_out = [k for k in cfg.primary_key if k.lower() not in canon]
    if left_out and not problems:
        problems.append(f"VERIFY compares rows by their primary_key, and {left_out} is not among the columns "
                        f"compared: add it to 'columns'")
    if problems:
        return VerifyPlan(tuple(problems))
    to_utf8 = engine == "postgres" and any(c.charset not in PG_UTF8_ENCODINGS | {None} for c in facts.values())
    hashes = row_hash_sql(engine, src, to_utf8), row_hash_sql("snowflake", tgt)
    pk = [k.lower() for k in cfg.primary_key]
    if len(pk) == 1 and canon[pk[0]].kind == "int":
        name = facts[pk[0]].name
        return VerifyPlan((), *hashes, source_quote(engine, name), qi(name.upper()))
    keys = [canon[k] for k in pk]       # any other key (several columns, text, dates ...): by its hash
    labels = (row_text_sql(engine, [(k.kind, k.src) for k in keys], to_utf8),
              row_text_sql("snowflake", [(k.kind, k.tgt) for k in keys]),
              row_text_sql("snowflake", [(k.kind, k.stage) for k in keys]))
    first = facts[pk[0]]
    by_text = (keys[0].kind == "text" and first.type in LEAD_TEXT_TYPES.get(engine, ()) and not to_utf8
               and (engine != "mysql" or first.charset == "utf8mb4"))
    lead = (KeyLead(engine, keys[0].kind, source_quote(engine, first.name), first.type)
            if keys[0].kind == "int" or by_text else None)
    return VerifyPlan((), *hashes, hashed_key_sql(engine, labels[0], to_utf8), hashed_key_sql("snowflake", labels[1]),
                      *labels, lead)


@dataclass
class Drift:
    """What VERIFY found: keys missing in the target, extra there, or holding a different row."""

    missing: list = field(default_factory=list)
    extra: list = field(default_factory=list)
    different: list = field(default_factory=list)
    rows: int = 0                  # source rows compared
    changed_since_load: int = 0    # differing keys the source changed after the committed watermark

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.different)


def compare_key_hashes(source: Mapping[Any, str], target: Mapping[Any, str]) -> Drift:
    drift = Drift()
    for k in sorted(set(source) | set(target)):
        if k not in target:
            drift.missing.append(k)
        elif k not in source:
            drift.extra.append(k)
        elif source[k] != target[k]:
            drift.different.append(k)
    return drift


def verify_summary(d: Drift) -> str:
    return (f"VERIFY {d.count} mismatched of {d.rows} rows (missing {len(d.missing)}, extra {len(d.extra)}, "
            f"different {len(d.different)}" + (f"; {d.changed_since_load} changed since the last load, not compared"
                                               if d.changed_since_load else "") + ")")


# ----- repair: reload exactly the keys VERIFY found -------------------------------------
#
# REPAIR (README "REPAIR") re-reads the source rows of the keys VERIFY found missing, extra or different,
# stages them as a load does, and in one transaction under the table's lease deletes the target's keys the
# source no longer has (those the re-read did not bring back) and MERGEs the rows read. It then compares the
# same key ranges again. More differing keys than REPAIR_MAX_KEYS are a reload's job, not a repair's.

REPAIR_MAX_KEYS = 100_000


@dataclass
class Repaired:
    """What REPAIR did: source rows written (inserted + updated), target rows deleted (soft: stamped), and
    what comparing the repaired key ranges again found (``remaining``)."""

    keys: int = 0
    reloaded: int = 0
    deleted: int = 0
    remaining: Drift | None = None


def repair_keys(drift: Drift) -> list:
    """Every key to read again from the source: the extra ones too (the source may have them back)."""
    return sorted({*drift.missing, *drift.different, *drift.extra})


def repair_problem(table: str, target: str, drift: Drift, target_rows: int, fraction: float) -> str | None:
    """Why REPAIR refuses (the load's commit stands; nothing of the repair is written), else None."""
    if drift.count > REPAIR_MAX_KEYS:
        return (f"{table}: REPAIR: {drift.count} keys of {target} differ from the source, more than the "
                f"{REPAIR_MAX_KEYS} one repair reloads; nothing was repaired. Reload the table (mode FULL or "
                f"TRUNCATE_INSERT for one run), then VERIFY again")
    problem = delete_guard(table, target, len(drift.extra), target_rows, fraction,
                           outcome="nothing was repaired")
    return f"REPAIR: {problem}" if problem else None


def repair_statements(target: str, stage: str, cols: Sequence[Column], pk: Sequence[str], key: str,
                      stage_key: str, extra: Sequence[int | str], soft: bool) -> list[tuple[str, str]]:
    """The repair transaction's statements: the ``extra`` keys that the re-read did not bring back are
    deleted (soft: stamped), then the rows read are MERGEd by the ``pk`` columns (``merge_sql``: only
    differing rows are rewritten). ``key`` names a row's key over the target (the key column, or a hashed
    key's text: ``delete_statements``), ``stage_key`` the same over the staging table, aliased s."""
    # NOT IN is safe here: the stage holds no NULL key, since the re-read selects rows by their key
    kept = f"{key} NOT IN (SELECT {stage_key} FROM {stage} s)"
    deletes = [(kind, f"{sql} AND {kept}") for kind, sql in delete_statements(target, key, extra, soft)]
    return deletes + [("merge", merge_sql(target, stage, cols, pk, None, soft))]


def repair_summary(r: Repaired) -> str:
    left = "not compared again" if r.remaining is None else (
        "the repaired ranges now match" if not r.remaining.count else f"{r.remaining.count} still differ")
    return f"REPAIR {r.keys} key(s): {r.reloaded} row(s) written from the source, {r.deleted} deleted; {left}"


# ----- deletes: key sets compared by range ------------------------------------------------
#
# deletes (README "Deletes") compares the source's and the target's key sets with VERIFY's machinery on a
# key-only fingerprint (VERIFY's plan of the key columns alone): per key bucket (COUNT(*), SUM of the key hash
# slices), bisected where they differ, keys fetched only for the small differing ranges. Only the target's key
# range is compared, and a bucket without target keys is never looked into: new source keys (an INCREMENTAL
# target lags by them) cost nothing. A hashed key (any other than one integer column) spreads new keys over
# every bucket, so there the buckets compare the source rows at or before the committed watermark.


@dataclass
class Deletes:
    """Keys in the target that the source no longer has."""

    keys: list = field(default_factory=list)
    target_rows: int = 0           # the target's (live) rows compared
    ranges_queried: int = 0        # fingerprint queries per side
    leaves: int = 0                # ranges whose keys were fetched
    key: str = ""                  # the keys' expression over the target: the key column, or a hashed key's text
    soft: bool = False             # deletes 'soft': stamp DELETED_AT instead of deleting
    add_column: bool = False       # soft, and the target has no DELETED_AT column yet (DDL before the load)


def delete_guard(table: str, target: str, deletes: int, target_rows: int, fraction: float,
                 at_least: bool = False, outcome: str = "nothing was written") -> str | None:
    """The guard's refusal when ``deletes`` exceed ``fraction`` of the target's rows, else None."""
    if deletes == 0 or deletes <= fraction * target_rows:
        return None
    share = deletes / target_rows if target_rows else 1.0
    return (f"{table}: {'at least ' if at_least else ''}{deletes} of the {target_rows} rows of {target} would be "
            f"deleted ({share:.1%}), more than max_delete_fraction {fraction:g}; {outcome}. Check the "
            f"source read (an empty or partial source must not wipe the target); if the rows really are gone, "
            f"raise 'max_delete_fraction' for the table for one run (e.g. 1.0)")


KeySets = Callable[[KeyRanges], tuple[set, set]]


def find_deletes(lo: int, hi: int, fingerprints: Fingerprints, keys: KeySets,
                 guard: Callable[[int, int, bool], None], at_least: int | None = None) -> Deletes:
    """The target's keys in lo..hi that the source lacks.

    ``fingerprints`` as for ``differing_ranges`` (key-only hashes); ``keys(ranges)`` gives (source keys, target
    keys) in those ranges; ``guard(deletes, target_rows, at_least)`` raises to refuse. The first (whole-range)
    call already bounds the deletes from below (a bucket's target rows beyond its source rows), so an emptied
    source is refused after one aggregate per side, before any key is fetched. ``at_least``: that bound, from
    the caller, when the buckets' source rows are not all of the source's (a hashed key: ``DeleteDetector``).
    """
    found = Deletes()

    def target_buckets(origin: int, width: int, ranges: KeyRanges) -> tuple[Mapping, Mapping]:
        src, tgt = fingerprints(origin, width, ranges)
        if not found.ranges_queried:
            found.target_rows = sum(n for n, _ in tgt.values())
            fewer = sum(max(0, n - src.get(k, (0, 0))[0]) for k, (n, _) in tgt.items())
            guard(fewer if at_least is None else at_least, found.target_rows, True)
        found.ranges_queried += 1
        return {k: v for k, v in src.items() if k in tgt}, tgt     # no target keys there: no delete there

    leaves, _, _ = differing_ranges(lo, hi, target_buckets)
    if leaves:
        src, tgt = keys(leaves)
        found.keys = sorted(tgt - src)
    found.leaves = len(leaves)
    guard(len(found.keys), found.target_rows, False)
    return found


# ----- the table plan: facts in, a plan out ------------------------------------------
#
# A table's run gathers facts first (``Survey``: the source's schema and column types, the
# Snowflake plan read, one pushed-down aggregate over the read window), then decides here,
# without I/O: ``plan_window`` (what to read), ``plan_table`` (the read: SQL, splits, rows,
# value checks) and ``plan_load`` (the target's DDL and the load's statements). A dry run
# prints the plan (``TablePlan.describe``/``as_dict``); a run executes it (``Load``).

NUMERIC_SPARK_TYPES = ("ByteType", "ShortType", "IntegerType", "LongType", "DecimalType")


def partition_column(cfg: TableConfig, fields: Mapping[str, Any], pk: Sequence[str]) -> str | None:
    """The column a parallel read splits on: the configured one, else a numeric one-column key."""
    if cfg.partition_column:
        name = resolve_column(cfg.partition_column, list(fields), cfg.key, "partition_column")
        kind = type(fields[name]).__name__
        if kind not in NUMERIC_SPARK_TYPES + ("DateType", "TimestampType", "TimestampNTZType"):
            raise EtlError(f"{cfg.key}: partition_column {name} is {kind}; use a numeric, date or timestamp column")
        return name
    if len(pk) == 1 and type(fields[pk[0]]).__name__ in NUMERIC_SPARK_TYPES:
        return pk[0]
    return None


@dataclass(frozen=True)
class Window:
    """What a run reads: its columns (source spelling), the delta column and where its window starts."""

    pk: tuple[str, ...]
    ts: str | None
    selected: tuple[str, ...]
    delta_col: str | None
    watermark: Watermark | None
    predicate: str | None
    part_col: str | None
    notes: tuple[str, ...] = ()

    @property
    def key_names(self) -> list[str]:
        return [c.upper() for c in self.pk]

    @property
    def order_name(self) -> str | None:
        return self.ts.upper() if self.ts else None


def _columns_of(cfg: TableConfig, names: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    pk = [resolve_column(k, names, cfg.key, "primary_key") for k in cfg.primary_key]
    ts = resolve_column(cfg.timestamp_column, names, cfg.key, "timestamp_column") if cfg.timestamp_column else None
    selected = [resolve_column(c, names, cfg.key, "columns") for c in cfg.columns] if cfg.columns else list(names)
    return pk, ts, selected


def needs_target_max(cfg: TableConfig, names: Sequence[str], read: PlanRead) -> str | None:
    """The target column whose MAX starts an INCREMENTAL window when the state has none, else None."""
    pk, ts, _ = _columns_of(cfg, names)
    delta_col = ts or (pk[0] if len(pk) == 1 else None)
    if cfg.mode != "INCREMENTAL" or delta_col is None or not read.target_columns or not read.target_rows:
        return None
    column = delta_col.upper()
    if read.state_watermark is not None and read.state_column == column:
        return None
    return column if column in read.target_columns else None


def plan_window(cfg: TableConfig, engine: str, fields: Mapping[str, Any], read: PlanRead,
                target_max: str | None = None) -> Window:
    """The read window: INCREMENTAL starts at the state's watermark, else at the target's MAX
    (``target_max``, read when ``needs_target_max`` asked), else reads every row."""
    pk, ts, selected = _columns_of(cfg, list(fields))
    delta_col = ts or (pk[0] if len(pk) == 1 else None)
    watermark, notes = None, []
    if cfg.mode == "INCREMENTAL" and delta_col is not None:
        column = delta_col.upper()
        if not read.target_columns or not read.target_rows:
            notes.append("target missing or empty, loading every row")
        elif read.state_watermark is not None and read.state_column == column:
            watermark = Watermark(column, read.state_watermark)
        elif target_max is not None and column in read.target_columns:
            notes.append(f"no state yet, starting from the target's MAX({column})")
            watermark = Watermark(column, target_max)
    predicate = delta_predicate(engine, delta_col, watermark, lookback_seconds=cfg.lookback_seconds,
                                null_policy=cfg.null_timestamps) if watermark and delta_col else None
    if predicate is None and ts and cfg.null_timestamps == "exclude":
        predicate = f"{source_quote(engine, ts)} IS NOT NULL"
    return Window(tuple(pk), ts, tuple(selected), delta_col, watermark, predicate,
                  partition_column(cfg, fields, pk), tuple(notes))


@dataclass(frozen=True)
class TableFacts:
    """What the adapters found before a table's run decides anything (``Survey`` gathers them)."""

    engine: str
    fields: Mapping[str, Any]                 # the source table's JDBC schema: name -> Spark type
    columns: Mapping[str, SourceColumn]       # information_schema, by lower-case name
    read: PlanRead                            # Snowflake: state, lease, the target's columns and rows
    target_max: str | None = None             # the target's MAX(delta column), when ``needs_target_max``
    stats: Mapping[str, Any] = field(default_factory=dict)   # ``source_stats_query``'s row for the window
    null_rows: int | None = None              # NULL timestamps in the whole table (policy exclude/fail)


@dataclass(frozen=True)
class TablePlan:
    """Everything a table's run will do, decided before it does any of it."""

    key: str
    mode: str
    target: str                               # fully qualified
    window: Window
    types: TypePlan
    read: PlanRead
    source_sql: str
    partitions: tuple[str, ...]
    rows: int                                 # rows in the read window (a pushed-down COUNT)
    stages: bool                              # rows are extracted and staged
    loads: bool                               # the target is loaded (else it and the state stay as they are)
    windowed: bool                            # the read covers part of the table
    notes: tuple[str, ...] = ()               # logged as step=plan note=...
    warnings: tuple[str, ...] = ()            # logged as warnings, e.g. null_timestamps=3 policy=exclude
    columns: tuple[Column, ...] = ()          # the target's columns (``plan_load``)
    ddl: tuple[tuple[str, str], ...] = ()     # (what, sql), run before the load transaction
    statements: tuple[tuple[str, str], ...] = ()   # (kind, sql) of the load
    facts: TableFacts | None = None           # what the plan was made from
    deletes: Deletes | None = None            # source deletes to apply (a table's 'deletes' setting)
    verify: bool = False                      # VERIFY after the load (--VERIFY or the table's 'verify')
    repair: bool = False                      # REPAIR what VERIFY finds (--REPAIR)

    @property
    def target_columns(self) -> dict[str, str]:
        """The target's columns as the plan read found them (FULL redefines them: none needed)."""
        return self.read.target_columns if self.mode != "FULL" else {}

    def as_dict(self) -> dict[str, Any]:
        w = self.window
        return {"table": self.key, "mode": self.mode, "target": self.target,
                "delta_column": w.delta_col, "watermark": w.watermark.value if w.watermark else None,
                "predicate": w.predicate, "source_sql": self.source_sql, "partitions": list(self.partitions),
                "rows": self.rows, "target_rows": self.read.target_rows, "loads": self.loads,
                "text_columns": sorted(self.types.text), "value_checks": [c.column for c in self.types.checks],
                "columns": {c.name: c.sf_type for c in self.columns},
                "ddl": [sql for _, sql in self.ddl], "statements": [sql for _, sql in self.statements],
                "deletes": None if self.deletes is None else {
                    "policy": "soft" if self.deletes.soft else "delete", "keys": len(self.deletes.keys),
                    "first_keys": self.deletes.keys[:20], "target_rows_compared": self.deletes.target_rows},
                "verify": self.verify, "repair": self.repair, "notes": list(self.notes),
                "warnings": list(self.warnings)}

    def describe(self) -> str:
        """A readable block: what will be read, with which watermark, and what Snowflake will be sent."""
        d = self.as_dict()
        lines = [f"== {self.key} ({self.mode} -> {self.target})",
                 f"   read:      {self.source_sql}",
                 f"   watermark: {d['watermark'] or '-'} ({self.window.delta_col or 'no delta column'})",
                 f"   rows:      {self.rows} in the window; target has {_n(self.read.target_rows)}"]
        lines += [f"   split:     {p}" for p in self.partitions]
        lines += [f"   ddl:       {sql}" for sql in d["ddl"]]
        lines += [f"   load:      {sql}" for sql in d["statements"]] or ["   load:      nothing to load"]
        if self.deletes is not None:
            lines.append(f"   deletes:   {len(self.deletes.keys)} key(s) gone from the source "
                         f"({'stamped' if self.deletes.soft else 'deleted'} in the load)")
        if self.verify:
            lines.append("   verify:    after the load, by key range"
                         + ("; then REPAIR reloads the keys that differ" if self.repair else ""))
        lines += [f"   note:      {n}" for n in (*self.notes, *self.warnings)]
        return "\n".join(lines)


def plan_table(cfg: TableConfig, facts: TableFacts, cores: int, target: str, verify: bool = False,
               repair: bool = False) -> TablePlan:
    """The read half of a table's plan; raises EtlError (nothing written yet) for a value or a NULL
    timestamp that cannot arrive under the table's settings."""
    engine, stats = facts.engine, facts.stats
    w = plan_window(cfg, engine, facts.fields, facts.read, facts.target_max)
    types = type_plan(engine, facts.columns, w.selected, cfg.key, w.part_col, cfg.transform is not None)
    warnings = []
    if w.ts:
        policy = cfg.null_timestamps
        nulls = int(stats.get("nulls") or 0) if policy == "include" else int(facts.null_rows or 0)
        if nulls and policy == "fail":
            raise EtlError(f"{cfg.key}: {nulls} row(s) have NULL in timestamp_column {w.ts} and null_timestamps "
                           f"is 'fail'; fix the data or set null_timestamps to 'include' or 'exclude'")
        if nulls:
            warnings.append(f"null_timestamps={nulls} policy={policy}")
    problems = value_problems(stats, types.checks)
    if problems:
        raise EtlError(f"{cfg.key}: nothing was loaded: " + "; ".join(problems))
    rows = int(stats.get("n") or 0)
    sql = _read_sql(cfg, engine, w, types, w.predicate)
    n = partition_count(rows, cores, cfg.num_partitions)
    splits = partition_predicates(engine, w.part_col, stats.get("lo"), stats.get("hi"), n) if w.part_col else []
    stages = not (rows == 0 and cfg.mode in ("INCREMENTAL", "UPSERT", "APPEND"))
    # No rows for a mode that only adds: nothing to send (INCREMENTAL that replaces the target still does).
    loads = stages or (cfg.mode == "INCREMENTAL" and cfg.truncate_before_insert)
    return TablePlan(cfg.key, cfg.mode, target, w, types, facts.read, sql, tuple(splits), rows, stages, loads,
                     cfg.mode == "INCREMENTAL" and bool(w.predicate), w.notes, tuple(warnings), facts=facts,
                     verify=verify or repair or cfg.verify, repair=repair)


def _read_sql(cfg: TableConfig, engine: str, w: Window, types: TypePlan, predicate: str | None) -> str:
    return source_query(engine, cfg.namespace, cfg.source_table,
                        list(w.selected) if cfg.columns or types.text else None, predicate, types.exprs)


def repair_read_sql(plan: TablePlan, cfg: TableConfig, keys: Sequence[int], key: str | None = None,
                    narrow: str | None = None) -> str:
    """The source rows of ``keys``, read as the load reads its window: ``key`` is what they are values of, the
    one-column integer key by default, else a hashed key (``hashed_key_sql``: the rows of those hashes), which
    ``narrow`` (``lead_in_sql``) may confine to rows an index on the key finds."""
    engine, w = plan.facts.engine, plan.window
    predicate = f"{key or source_quote(engine, w.pk[0])} IN ({', '.join(str(int(k)) for k in keys)})"
    if narrow:
        predicate = f"{narrow} AND {predicate}"
    if w.ts and cfg.null_timestamps == "exclude":
        predicate += f" AND {source_quote(engine, w.ts)} IS NOT NULL"
    return _read_sql(cfg, engine, w, plan.types, predicate)


LEAD_MAX_BYTES = 1_000_000     # a narrowing list longer than this is left out: the read is then the scan it was


def lead_in_sql(lead: KeyLead, keys: Sequence[str]) -> str | None:
    """'the key's first column is one of those of ``keys``', keys as VERIFY names a hashed key's rows
    (``row_text_sql``: an integer's digits, or a text framed by its UTF-8 length, up to the first '|'), or None
    when the list would exceed LEAD_MAX_BYTES. A hashed key is a computed value no index serves, so its rows alone
    are a scan of the whole source with an MD5 per row (7.4 s on 5M rows); the rows of these first values are what
    the key's index finds, and include every row of ``keys``."""
    firsts = sorted({first_key_value(lead.kind, k) for k in keys})
    if lead.type == "uuid":     # an extra key's text (the target's) that no uuid reads as: no source row has it
        firsts = [v for v in firsts if is_uuid_text(v)]
    listed = ", ".join(str(v) if lead.kind == "int" else source_text_literal(lead.engine, v) for v in firsts)
    if len(listed.encode()) > LEAD_MAX_BYTES:
        return None
    return f"{lead.column} IN ({listed})" if firsts else "1 = 0"


def is_uuid_text(text: str) -> bool:
    """``text`` is a uuid as PostgreSQL writes one (lower-case hex, hyphenated): the only text a uuid key has."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def first_key_value(kind: str, key: str) -> int | str:
    """The first column's value in a hashed key's text (``row_text_sql``): an int, or a text framed 'n:text'."""
    if kind == "int":
        return int(key.split("|", 1)[0])
    n, colon, rest = key.partition(":")
    raw, size = rest.encode(), int(n) if n.isascii() and n.isdigit() else -1
    if not colon or size < 0 or len(raw) < size or raw[size:size + 1] not in (b"", b"|"):
        raise ValueError(f"not a key text framed by its length: {key!r}")
    return raw[:size].decode()


def source_text_literal(engine: str, text: str) -> str:
    """``text`` as a literal that reads as exactly it whatever the session's settings: PostgreSQL an escape string
    (E'': backslashes and quotes escaped, whatever standard_conforming_strings), MySQL its UTF-8 bytes in hex with
    the utf8mb4 introducer (nothing to escape, whatever sql_mode; a literal yields to the column's collation)."""
    return "E" + sql_str(text) if engine == "postgres" else f"_utf8mb4 X'{text.encode().hex()}'"


def plan_load(plan: TablePlan, cfg: TableConfig, fields: Sequence[tuple[str, Any]], typed: Mapping[str, Any],
              stage_table: str, deletes: Deletes | None = None) -> TablePlan:
    """The load half: target columns of the extract's (name, Spark type) ``fields`` (after any
    transform), the DDL the target needs and the statements of the load, with the source
    ``deletes`` found (``DeleteDetector``): applied first, in the load transaction."""
    cols = plan.types.columns(fields, typed, cfg.key)
    ddl = target_ddl(plan.target, cols, plan.target_columns, cfg.key, cfg.mode)
    soft = bool(deletes and deletes.soft)
    if deletes and deletes.add_column:          # soft deletes stamp a column of their own
        ddl.append((f"added_column {DELETED_AT} {DELETED_AT_TYPE}",
                    add_column_sql(plan.target, Column(DELETED_AT, DELETED_AT, DELETED_AT_TYPE))))
    loads = plan.loads or bool(deletes and deletes.keys)
    if not loads:
        statements: list[tuple[str, str]] = []
    elif cfg.mode == "FULL":
        statements = [("replace", replace_table_sql(plan.target, stage_table, cols))]
    else:
        statements = [*(delete_statements(plan.target, deletes.key, deletes.keys, soft) if deletes else []),
                      *load_statements(cfg.mode, cfg.truncate_before_insert, plan.target, stage_table, cols,
                                       plan.window.key_names, plan.window.order_name, soft)]
    return dataclasses.replace(plan, columns=tuple(cols), ddl=tuple(ddl), statements=tuple(statements),
                               loads=loads, deletes=deletes)


# ----- run summary -------------------------------------------------------------------


@dataclass
class TableResult:
    key: str
    mode: str
    target: str
    status: str = "FAILED"
    source_rows: int | None = None
    delta_rows: int | None = None
    target_rows: int | None = None
    inserted: int | None = None
    updated: int | None = None
    seconds: float = 0.0
    error: str | None = None
    verified: Drift | None = None          # what VERIFY found (status DRIFT when it found any)
    repaired: Repaired | None = None       # what REPAIR did (status OK when nothing remains)
    deleted: int | None = None             # target rows deleted (soft: marked) for source deletes
    # For the load history and freshness (README "Load history", "Freshness"):
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    watermark_column: str | None = None    # the state's watermark column (upper case)
    watermark_before: str | None = None    # the committed watermark when the run started (state row)
    watermark_after: str | None = None     # the watermark the load writes (committed when ``committed``)
    ddl: list[str] = field(default_factory=list)   # schema DDL sent before the load (CREATE / ALTER)
    committed: bool = False                # the load transaction committed (the target changed)

    @property
    def difference(self) -> int | None:
        if self.source_rows is None or self.target_rows is None:
            return None
        return self.source_rows - self.target_rows


def summary_table(results: Sequence[TableResult]) -> str:
    """The end-of-run table: one line per table, errors listed below it."""
    head = ("table", "mode", "target", "source", "delta", "target rows", "diff", "deleted", "seconds", "status")
    rows = [head] + [
        (r.key, r.mode, r.target, _n(r.source_rows), _n(r.delta_rows), _n(r.target_rows), _n(r.difference),
         _n(r.deleted), f"{r.seconds:.1f}", r.status)
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ok = sum(r.status == "OK" for r in results)
    lines.append(f"{ok}/{len(results)} tables OK")
    lines += [f"{r.key}: {verify_summary(r.verified)}" for r in results if r.verified is not None]
    lines += [f"{r.key}: {repair_summary(r.repaired)}" for r in results if r.repaired is not None]
    lines += [r.error if r.error.startswith(f"{r.key}:") else f"{r.key}: {r.error}" for r in results if r.error]
    return "\n".join(lines)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


SUMMARY_TYPE = "etl_run_summary"   # the JSON summary line's "type" (its first member): how a reader finds it


def run_identifier(job_name: str, started: dt.datetime) -> str:
    """The run id in the state, lease rows and summaries: job name and start time (UTC, microseconds)."""
    return f"{job_name}-{started:%Y%m%dT%H%M%S%fZ}"


def _drift_json(d: Drift | None) -> dict | None:
    if d is None:
        return None
    return {"rows": d.rows, "mismatched": d.count, "missing": len(d.missing), "extra": len(d.extra),
            "different": len(d.different), "changed_since_load": d.changed_since_load}


def summary_json(results: Sequence[TableResult], run_id: str, job_name: str, exit_code: int,
                 error: str | None = None, clean: Callable[[str], str] = lambda text: text) -> str:
    """The run summary for machines: ONE line holding one JSON object (ASCII, no line breaks), the
    same numbers as ``summary_table``. ``error`` says why nothing ran; ``clean`` (the Redactor) is
    applied to every error text before it is encoded, so no secret reaches the line."""
    tables = [{
        "key": r.key, "target": r.target, "mode": r.mode, "status": r.status,
        "rows": {"source": r.source_rows, "read": r.delta_rows, "inserted": r.inserted, "updated": r.updated,
                 "deleted": r.deleted, "target": r.target_rows},
        "difference": r.difference, "seconds": round(r.seconds, 3),
        "error": None if r.error is None else clean(r.error), "verified": _drift_json(r.verified),
        "repair": None if r.repaired is None else {
            "keys": r.repaired.keys, "reloaded": r.repaired.reloaded, "deleted": r.repaired.deleted,
            "remaining": None if r.repaired.remaining is None else r.repaired.remaining.count},
    } for r in results]
    doc = {"type": SUMMARY_TYPE, "version": 1, "run_id": run_id, "job": job_name,
           "status": "OK" if exit_code == 0 else "FAILED", "exit_code": exit_code,
           "tables_ok": sum(r.status in ("OK", "PLANNED") for r in results), "tables_total": len(results),
           "error": None if error is None else clean(error), "tables": tables}
    return json.dumps(doc, ensure_ascii=True, allow_nan=False)


# ----- load history and freshness --------------------------------------------------------

HISTORY_TABLE = "ETL_LOAD_HISTORY"
# (column, bind parameter, type): one row per table run (README "Load history").
_HISTORY_COLUMNS = (
    ("RUN_ID", "run_id", "VARCHAR"), ("JOB_NAME", "job", "VARCHAR"), ("TABLE_KEY", "table", "VARCHAR"),
    ("TARGET_TABLE", "target", "VARCHAR"), ("MODE", "mode", "VARCHAR"), ("STATUS", "status", "VARCHAR"),
    ("LOADED", "loaded", "BOOLEAN"), ("ROWS_READ", "rows_read", "NUMBER(19,0)"),
    ("ROWS_INSERTED", "inserted", "NUMBER(19,0)"), ("ROWS_UPDATED", "updated", "NUMBER(19,0)"),
    ("ROWS_DELETED", "deleted", "NUMBER(19,0)"), ("WATERMARK_COLUMN", "column", "VARCHAR"),
    ("WATERMARK_BEFORE", "watermark_before", "VARCHAR"), ("WATERMARK_AFTER", "watermark_after", "VARCHAR"),
    ("DDL_APPLIED", "ddl", "VARCHAR"), ("SECONDS", "seconds", "NUMBER(12,3)"), ("ERROR", "error", "VARCHAR"),
    ("STARTED_AT", "started_at", "TIMESTAMP_NTZ(6)"),
)
# What a later write of the same run and table changes in a row the load transaction wrote:
# the table's final status (DRIFT after VERIFY, FAILED after a later step), never what was loaded.
_HISTORY_FINAL = ("STATUS", "SECONDS", "ERROR")


def create_history_table_sql(history: str) -> str:
    cols = ", ".join(f"{qi(c)} {t}" for c, _, t in _HISTORY_COLUMNS)
    return f'CREATE TABLE IF NOT EXISTS {history} ({cols}, "FINISHED_AT" TIMESTAMP_NTZ(6))'


def write_history_sql(history: str) -> str:
    """A table run's history row in one statement, keyed by (RUN_ID, TABLE_KEY).

    Inside the load transaction it inserts the row that commits with the load; after the run it
    inserts the row of a run that loaded nothing, or sets the final status of the row the load wrote.
    """
    src = ", ".join(f"CAST(%({p})s AS {t}) AS {qi(c)}" for c, p, t in _HISTORY_COLUMNS)
    names = ", ".join(qi(c) for c, _, _ in _HISTORY_COLUMNS)
    values = ", ".join(f"s.{qi(c)}" for c, _, _ in _HISTORY_COLUMNS)
    sets = ", ".join(f"{qi(c)} = s.{qi(c)}" for c in _HISTORY_FINAL)
    return (f'MERGE INTO {history} t USING (SELECT {src}) s '
            f'ON t."RUN_ID" = s."RUN_ID" AND t."TABLE_KEY" = s."TABLE_KEY" '
            f'WHEN MATCHED THEN UPDATE SET {sets}, "FINISHED_AT" = {_NOW} '
            f'WHEN NOT MATCHED THEN INSERT ({names}, "FINISHED_AT") VALUES ({values}, {_NOW})')


def repair_run_id(run_id: str) -> str:
    """The RUN_ID of a REPAIR's history row: the run's own row keeps its load (or its check)."""
    return f"{run_id}/repair"


def committed_watermark(r: TableResult) -> str | None:
    """The table's watermark as committed in the state table once this run is over."""
    return r.watermark_after if r.committed else r.watermark_before


def history_params(r: TableResult, run_id: str, job: str, loaded: bool, now: dt.datetime) -> dict[str, Any]:
    """The bind parameters of ``write_history_sql``. ``loaded``: the row goes into the load's own
    transaction. A row written outside it loaded nothing: 0 rows changed, the watermark unchanged."""
    drift = verify_summary(r.verified) if r.status == "DRIFT" and r.verified is not None else None
    changed = (r.inserted, r.updated, r.deleted) if loaded else (0, 0, 0)
    return {"run_id": run_id, "job": job, "table": r.key, "target": r.target, "mode": r.mode,
            "status": "OK" if loaded else r.status, "loaded": loaded, "rows_read": r.delta_rows,
            "inserted": changed[0], "updated": changed[1], "deleted": changed[2], "column": r.watermark_column,
            "watermark_before": r.watermark_before,
            "watermark_after": r.watermark_after if loaded else committed_watermark(r),
            "ddl": ";\n".join(r.ddl) or None, "seconds": round((now - r.started_at).total_seconds(), 3),
            "error": r.error or drift, "started_at": timestamp_text(r.started_at)}


_TIMESTAMP_TEXT = "%Y-%m-%d %H:%M:%S.%f"


def lag_seconds(watermark: str | None, now: dt.datetime) -> float | None:
    """Freshness: ``now`` minus a timestamp watermark (``timestamp_text``: UTC wall clock); None for
    no watermark or an integer one. A negative lag (a watermark ahead of ``now``) is returned as is."""
    if watermark is None or not Watermark("", watermark).is_timestamp:
        return None
    loaded = dt.datetime.strptime(watermark, _TIMESTAMP_TEXT).replace(tzinfo=dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    return round((now - loaded).total_seconds(), 3)


# ----- secrets never reach logs ----------------------------------------------------------


class Redactor(logging.Filter):
    """Replaces every registered secret value in log records (and in text given to ``clean``)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: Any) -> None:
        with self._lock:
            self._secrets.update(str(v) for v in values if v is not None and len(str(v)) >= 4)

    def clean(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = self.clean(record.getMessage())
            record.args = ()
        return True


REDACTOR = Redactor()


# =====================================================================================
# 2. ADAPTERS
# =====================================================================================


class SecretStore:
    """SSM Parameter Store: SecureString JSON parameters, fetched once per path per run."""

    def __init__(self, ssm_client: Any, redactor: Redactor = REDACTOR):
        self._ssm = ssm_client
        self._redactor = redactor
        self._cache: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> dict:
        with self._lock:
            if path not in self._cache:
                self._cache[path] = self._fetch(path)
            return self._cache[path]

    def _fetch(self, path: str) -> dict:
        try:
            resp = self._ssm.get_parameter(Name=path, WithDecryption=True)
        except Exception as exc:  # botocore ClientError and connection errors
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise EtlError(f"cannot read SSM parameter {path} ({code}); check the path given in the "
                           f"runtime arguments and the job role's ssm:GetParameter/kms:Decrypt") from None
        value = resp["Parameter"]["Value"]
        try:
            secret = json.loads(value)
        except json.JSONDecodeError:
            raise EtlError(f"SSM parameter {path} is not JSON; store a JSON object") from None
        if not isinstance(secret, dict):
            raise EtlError(f"SSM parameter {path} must hold a JSON object")
        self._redactor.add(*(v for k, v in secret.items() if "password" in k.lower() or "key" in k.lower()
                             or "secret" in k.lower() or "token" in k.lower()))
        return secret


def java_error_text(exc: BaseException) -> str:
    """The first line of the Java exception behind a Py4J/Spark error: its class and message."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    cause = java
    while cause is not None and cause.getCause() is not None:   # the root cause says what went wrong
        cause = cause.getCause()
    if cause is not None and cause is not java:
        text = str(cause.toString())
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return REDACTOR.clean(first[:500])


def _python_value(rs: Any, i: int) -> Any:
    """Column ``i`` of a JDBC ResultSet's current row as a Python value (partition bounds keep their type:
    a timestamptz bound must not come back as text with an offset Spark cannot parse for a NTZ column).

    MySQL Connector/J 8.0.23+ returns DATETIME as ``java.time.LocalDateTime`` (and may return the
    other java.time classes); PostgreSQL's and MariaDB's drivers return ``java.sql`` classes.
    """
    from py4j.java_gateway import JavaObject

    v = rs.getObject(i)
    if not isinstance(v, JavaObject):
        return v                        # None, numbers, strings, booleans: converted by Py4J
    kind = v.getClass().getName()
    if kind == "java.sql.Timestamp":
        return _wall_clock(v.toLocalDateTime())
    if kind == "java.time.LocalDateTime":
        return _wall_clock(v)
    if kind == "java.time.OffsetDateTime":      # an instant: its UTC wall clock, as the JVM (UTC) shows it
        return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=v.toEpochSecond(), microseconds=v.getNano() // 1000)
    if kind == "java.sql.Date":
        return _calendar_date(v.toLocalDate())
    if kind == "java.time.LocalDate":
        return _calendar_date(v)
    if kind == "java.time.LocalTime":
        return dt.time(v.getHour(), v.getMinute(), v.getSecond(), v.getNano() // 1000)
    return rs.getString(i)


def _wall_clock(t: Any) -> dt.datetime:
    """A java.time.LocalDateTime as a naive datetime (microseconds; JDBC sources have no finer)."""
    return dt.datetime(t.getYear(), t.getMonthValue(), t.getDayOfMonth(), t.getHour(), t.getMinute(),
                       t.getSecond(), t.getNano() // 1000)


def _calendar_date(d: Any) -> dt.date:
    return dt.date(d.getYear(), d.getMonthValue(), d.getDayOfMonth())


# JDBC properties the job sets per driver class; a secret's "properties" may add others.
# FIXED ones are what the fidelity guarantees rest on: the secret cannot override them.
DRIVER_PROPERTIES = {
    "org.postgresql.Driver": {"connectTimeout": "20", "socketTimeout": "3600"},
    "com.mysql.cj.jdbc.Driver": {"connectTimeout": "20000"},
    "org.mariadb.jdbc.Driver": {"connectTimeout": "20000"},
}
FIXED_DRIVER_PROPERTIES = {
    # Text transfer: VERBATIM_TYPES relies on the server's own text.
    "org.postgresql.Driver": {"binaryTransfer": "false"},
    # MySQL Connector/J 8.0 ("Configuration Properties", Connector/J 8.0 Developer Guide):
    # zero dates read as NULL, as MariaDB Connector/J does (its default is EXCEPTION);
    # the session and the driver agree on UTC, so a TIMESTAMP is the same instant in the JVM.
    # No server-side cursor (useCursorFetch): it switches to the binary protocol, where FLOAT
    # arrives as float32 bits (-3.4e38 would load as -3.3999999521443642e38), and MariaDB keeps
    # the cursor in a temporary table; see STREAMING_FETCH_SIZE instead.
    "com.mysql.cj.jdbc.Driver": {"zeroDateTimeBehavior": "CONVERT_TO_NULL", "connectionTimeZone": "+00:00",
                                 "forceConnectionTimeZoneToSession": "true", "preserveInstants": "true",
                                 "useCursorFetch": "false"},
}
# Connector/J reads a whole result into memory whatever the fetch size, unless the fetch size is
# Integer.MIN_VALUE: then it streams the rows ("JDBC API Implementation Notes", ResultSet). Each
# Spark partition runs one query on its own connection, which is what streaming requires.
STREAMING_FETCH_SIZE = {"com.mysql.cj.jdbc.Driver": -2**31}


class JdbcSource:
    """One source database read through Spark's JDBC data source."""

    def __init__(self, spark: Any, settings: SourceSettings):
        self.spark = spark
        self.settings = settings

    @property
    def engine(self) -> str:
        return self.settings.engine

    @property
    def _session_init(self) -> str:
        return "SET TIME ZONE 'UTC'" if self.engine == "postgres" else "SET time_zone = '+00:00'"

    def _properties(self) -> dict[str, str]:
        """JDBC connection properties: credentials, the driver's defaults (DRIVER_PROPERTIES), the
        secret's own properties, then what the job's guarantees need (FIXED_DRIVER_PROPERTIES)."""
        s = self.settings
        return {"user": s.user, "password": s.password, **DRIVER_PROPERTIES.get(s.driver, {}), **s.properties,
                **FIXED_DRIVER_PROPERTIES.get(s.driver, {})}

    def _reader(self, fetch_size: int = 10_000) -> Any:
        s = self.settings
        reader = (self.spark.read.format("jdbc")
                  .option("url", s.url).option("driver", s.driver)
                  .option("fetchsize", str(STREAMING_FETCH_SIZE.get(s.driver, fetch_size)))
                  .option("sessionInitStatement", self._session_init)
                  .option("preferTimestampNTZ", "true"))
        for k, v in self._properties().items():
            reader = reader.option(k, v)
        return reader

    def schema(self, namespace: str, table: str) -> Any:
        """The table's Spark schema; Spark asks the source with a query that returns no row."""
        try:
            return self._reader().option("dbtable", source_table_ref(self.engine, namespace, table)).load().schema
        except Exception as exc:
            text = java_error_text(exc)
            hint = ("; Spark cannot read that column type: load a view that casts it" if "UNRECOGNIZED_SQL_TYPE"
                    in text else "")
            raise EtlError(f"{namespace}.{table}: cannot read the source table on {self.settings.url}: "
                           f"{text}{hint}") from None

    def query(self, sql: str, settings: Sequence[str] = ()) -> list[dict]:
        """Run a small query on the source (aggregates, metadata) and return its rows; ``settings``:
        statements run first on its connection, after the session's time zone.

        It runs on the driver over the same JDBC driver and session settings as the reads, not as
        a Spark job: a one-row aggregate does not need a scheduler round trip. Values come back as
        Spark's collect() gave them: numbers, ``datetime`` wall clocks (the JVM runs in UTC) and
        ``date``; anything else as the driver's text for it.
        """
        conn = None
        try:
            conn = self._connect()
            stmt = conn.createStatement()
            for s in (self._session_init, *settings):
                stmt.execute(s)
            rs = stmt.executeQuery(sql)
            meta = rs.getMetaData()
            names = [meta.getColumnLabel(i).lower() for i in range(1, meta.getColumnCount() + 1)]
            rows = []
            while rs.next():
                rows.append({n: _python_value(rs, i) for i, n in enumerate(names, start=1)})
            return rows
        except Exception as exc:
            raise EtlError(f"source query failed on {self.settings.url}: {java_error_text(exc)}") from None
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> Any:
        """A JDBC connection in the driver JVM, through the driver class Spark registers for its reads."""
        jvm = self.spark.sparkContext._jvm
        jvm.org.apache.spark.sql.execution.datasources.jdbc.DriverRegistry.register(self.settings.driver)
        props = jvm.java.util.Properties()
        for k, v in self._properties().items():
            props.setProperty(k, v)
        drivers = jvm.java.sql.DriverManager.getDrivers()
        while drivers.hasMoreElements():
            d = drivers.nextElement()
            wrapped = d.wrapped() if d.getClass().getName().endswith("DriverWrapper") else d
            if wrapped.getClass().getName() == self.settings.driver:
                conn = d.connect(self.settings.url, props)
                if conn is not None:
                    return conn
        raise EtlError(f"JDBC driver {self.settings.driver} does not accept {self.settings.url}")

    def query_one(self, sql: str) -> dict:
        rows = self.query(sql)
        return rows[0] if rows else {}

    def rows(self, sql: str, names: Sequence[str], settings: Sequence[str] = (), texts: Sequence[str] = ()
             ) -> list[dict]:
        """The rows of a query that may answer thousands (columns ``names``: integers, hex digits and the free
        ``texts``), read in one call (``bulk_rows_sql``) instead of one Py4J round trip per value. An answer the
        server cut short (MySQL: beyond its max_allowed_packet) is read again row by row."""
        answer = self.query(bulk_rows_sql(self.engine, sql, names, texts),
                            (*BULK_SESSION.get(self.engine, ()), *settings))[0]
        try:
            return bulk_rows(self.engine, names, int(answer.get("n") or 0), answer.get("j"), "bulk answer")
        except BulkCut as exc:
            log.warning("step=verify bulk_answer_cut=%s note=read again row by row; a larger max_allowed_packet "
                        "on %s saves that", exc, self.settings.url)
            return self.query(sql, settings)

    def read(self, sql: str, fetch_size: int, predicates: Sequence[str] = (),
             text_columns: Sequence[str] = ()) -> Any:
        """The query's rows as a DataFrame, one Spark partition per predicate (see
        ``partition_predicates``); ``text_columns`` arrive as the driver's text (strings)."""
        reader = self._reader(fetch_size)
        if text_columns:
            reader = reader.option("customSchema", ", ".join(f"`{c.replace('`', '``')}` STRING"
                                                             for c in text_columns))
        if predicates:
            return reader.jdbc(self.settings.url, f"({sql}) etl_src", predicates=list(predicates))
        return reader.option("dbtable", f"({sql}) etl_src").load()


class S3Staging:
    """The staging bucket: Spark writes CSV part files there, Snowflake COPYs them."""

    def __init__(self, s3_client: Any, bucket: str):
        self._s3 = s3_client
        self.bucket = bucket

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def part_files(self, prefix: str) -> list[str]:
        """Names (relative to the prefix) of the CSV part files Spark committed there."""
        names = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if "/" not in name and name.startswith("part-") and name.endswith(STAGED_SUFFIX):
                    names.append(name)
        return sorted(names)

    def delete(self, prefix: str, keep: Callable[[str], bool] = lambda key: False) -> int:
        """Delete the objects below ``prefix`` and its EMRFS folder marker (``<prefix>_$folder$``),
        except those ``keep`` names; returns how many."""
        marker = prefix.rstrip("/") + FOLDER_MARKER
        keys = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                       Prefix=prefix.rstrip("/")):
            keys += [{"Key": o["Key"]} for o in page.get("Contents", [])
                     if (o["Key"].startswith(prefix) or o["Key"] == marker) and not keep(o["Key"])]
        for i in range(0, len(keys), 1000):
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
        return len(keys)


def write_output(where: str, text: str, s3_client: Any) -> None:
    """Write ``text`` (UTF-8) to a local file or to an ``s3://bucket/key`` object (one put_object).
    A local file is replaced at once (written beside it, then renamed), so a reader never sees half
    of it. Any failure is an EtlError naming ``where``."""
    data = text.encode("utf-8")
    try:
        if where.startswith("s3://"):
            location = s3_location(where)
            if location is None:
                raise EtlError(f"{where!r} is not an s3://<bucket>/<key> object URI")
            s3_client.put_object(Bucket=location[0], Key=location[1], Body=data)
            return
        part = f"{where}.{uuid.uuid4().hex[:8]}.part"
        try:
            with open(part, "wb") as fh:
                fh.write(data)
            os.replace(part, where)
        finally:
            if os.path.exists(part):
                os.remove(part)
    except EtlError:
        raise
    except Exception as exc:  # OSError, botocore ClientError/EndpointConnectionError
        raise EtlError(f"cannot write {where}: {type(exc).__name__}: {exc}") from None


def stage_dataframe(df: Any, uri: str) -> None:
    """Write ``df`` as compressed CSV under ``uri`` following the CSV contract (see CSV_FILE_FORMAT).

    Hadoop's deflate codec at zlib level 1 (``.deflate`` files, zlib streams that COPY reads as
    COMPRESSION = DEFLATE): a quarter less CPU than its gzip codec, whose level is fixed at 6
    where Hadoop's native zlib is missing, for files a sixth larger (docs/PERFORMANCE.md).
    """
    from pyspark.sql import functions as F

    def prepare(f: Any) -> Any:
        kind = type(f.dataType).__name__
        c = F.col(f"`{f.name}`")
        if kind == "BinaryType":
            return F.hex(c).alias(f.name)
        if kind in ("ArrayType", "MapType", "StructType"):
            return F.to_json(c).alias(f.name)
        if kind in ("FloatType", "DoubleType"):
            # Spark's writer spells Infinity/-Infinity (Double.toString); Snowflake documents 'NaN',
            # 'inf' and '-inf' as FLOAT's special values. Finite values keep Java's shortest
            # round-trip text, as the writer itself would write them.
            return (F.when(F.isnan(c), F.lit("NaN"))
                    .when(c == F.lit(float("inf")), F.lit("inf"))
                    .when(c == F.lit(float("-inf")), F.lit("-inf"))
                    .otherwise(c.cast("string"))).alias(f.name)
        if kind == "DecimalType":
            # Plain digits at full scale; BigDecimal.toString would write 1E-7.
            pattern = "0." + "0" * f.dataType.scale if f.dataType.scale else "0"
            return F.expr(f"format_number(`{f.name}`, '{pattern}')").alias(f.name)
        return c

    staged = [prepare(f) for f in df.schema.fields]
    if len(staged) == 1:          # see staged_columns: never a blank line for a row whose only value is NULL
        pad = staged_columns([Column(df.schema.fields[0].name, df.schema.fields[0].name.upper(), "")])[1]
        staged.append(F.lit(1).alias(pad.source))
    (df.select(staged)
       .write.mode("errorifexists")
       .option("header", "true").option("compression", "deflate").option("zlib.compress.level", "BEST_SPEED")
       .option("encoding", "UTF-8")
       .option("sep", ",").option("quote", '"').option("escape", '"').option("quoteAll", "false")
       .option("nullValue", None).option("emptyValue", '""')
       .option("ignoreLeadingWhiteSpace", "false").option("ignoreTrailingWhiteSpace", "false")
       .option("lineSep", "\n")
       .option("dateFormat", "yyyy-MM-dd")
       # xxx: always a +hh:mm offset (+00:00 for UTC; XXX would write Z, not among Snowflake's AUTO forms)
       .option("timestampFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSSSSxxx")
       .option("timestampNTZFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
       .csv(uri))


class LockConflict(EtlError):
    """A statement could not lock a table in time (Snowflake 000625, LOCK_TIMEOUT or too many waiters)."""


_LOCKED = re.compile(r"has locked table '([^']*)' in transaction (\d+)")


def snowflake_error(exc: BaseException) -> EtlError:
    """The job's error for a failed statement: what happened and the fix, with Snowflake's own words.

    000625 (SQLSTATE 57014) is Snowflake's lock-conflict error ("Statement ... has locked table 'T' in
    transaction N and this lock has not yet been released"), 000630 its statement timeout.
    """
    errno, text = getattr(exc, "errno", None), str(exc)
    if errno == 625 or "has locked table" in text:
        found = _LOCKED.search(text)
        table, txn = (f"table {found.group(1)}", found.group(2)) if found else ("a table", None)
        abort = f" or end it first with SELECT SYSTEM$ABORT_TRANSACTION({txn})" if txn else ""
        return LockConflict(f"Snowflake: could not lock {table} within LOCK_TIMEOUT: another session's "
                            f"transaction holds it (usually a killed run's load, which Snowflake aborts "
                            f"once it has blocked others for 5 idle minutes); run again{abort}. "
                            f"Snowflake said: {text}")
    if errno == 630:
        return EtlError(f"Snowflake: the statement ran longer than STATEMENT_TIMEOUT_IN_SECONDS and was "
                        f"cancelled; raise 'statement_timeout_seconds' in the Snowflake SSM parameter (or the "
                        f"warehouse's own limit). Snowflake said: {text}")
    return EtlError(f"Snowflake: {text}")


class Warehouse:
    """One Snowflake connection (one per table pipeline: its transactions are its own).

    A connection whose ROLLBACK (or COMMIT) failed may still hold an open transaction; the next DDL
    on it would commit half a load. It is closed at once (closing a session rolls its transaction
    back) and marked ``broken``: every later statement is refused.
    """

    def __init__(self, connection: Any, redactor: Redactor = REDACTOR):
        self._conn = connection
        self._redactor = redactor
        self.broken: str | None = None

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        if self.broken:
            raise EtlError(f"Snowflake: this connection was closed after {self.broken}; it is not used again "
                           f"(the table's next run gets a new one)")
        cur = self._conn.cursor()
        try:
            cur.execute(sql, params)
        except Exception as exc:
            err = snowflake_error(exc)
            raise type(err)(self._redactor.clean(str(err))) from None
        return cur

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
        return self.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.execute("BEGIN")
        try:
            yield
        except BaseException:
            try:
                self._conn.cursor().execute("ROLLBACK")
            except Exception as exc:  # the original error matters more than the rollback's
                self._break("a failed ROLLBACK", exc)
            raise
        try:
            self._conn.cursor().execute("COMMIT")
        except Exception as exc:      # committed or not: unknown, so the session must not go on
            self._break("a failed COMMIT", exc)
            raise EtlError(self._redactor.clean(f"{snowflake_error(exc)} (COMMIT failed; the connection was "
                                                f"closed, which rolls back whatever it had not committed)")) \
                from None

    def _break(self, what: str, exc: BaseException) -> None:
        self.broken = what
        log.warning("step=%s error=%s note=connection closed, never reused", what.split()[-1].lower(),
                    self._redactor.clean(str(exc)))
        self.close()

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # closing a broken connection must not hide the real error
            pass


def connect_snowflake(settings: SnowflakeSettings) -> Warehouse:
    import snowflake.connector

    args = dict(settings.connect_args)
    pem = args.pop("private_key", None)
    passphrase = args.pop("private_key_passphrase", None)
    if pem:
        from cryptography.hazmat.primitives import serialization
        key = serialization.load_pem_private_key(pem.encode(), passphrase.encode() if passphrase else None)
        args["private_key"] = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption())
    try:
        return Warehouse(snowflake.connector.connect(**args))
    except Exception as exc:
        raise EtlError(REDACTOR.clean(f"cannot connect to Snowflake account {args.get('account')} as "
                                      f"{args.get('user')}: {exc}")) from None


class LeaseTaken(EtlError):
    """Another run holds the target's lease (found by the re-read after the claim): skip the table."""


class Leases:
    """Per-target leases held by this run, kept alive by a heartbeat on a connection of its own.

    ``acquire`` claims a target's lease (waiting up to ``wait`` seconds for a live holder to let
    go); a run that cannot claim it skips the table. The plan read re-reads the lease
    (``confirm``); the load transaction checks it and takes its lock (``hold``). A run killed
    outright stops renewing, so its leases expire after ``seconds`` and the next run takes over.
    """

    def __init__(self, connect: Callable[[], Warehouse], table: str, holder: str, seconds: int, wait: int = 0):
        self._connect = connect
        self.table = table
        self._sql = lease_sqls(table)
        self.holder = holder
        self.seconds = seconds
        self.wait = wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def params(self, target: str = "") -> dict:
        return {"target": target, "holder": self.holder, "seconds": self.seconds}

    def acquire(self, wh: Warehouse, target: str) -> str | None:
        """Claim ``target``; None when this run holds it, else who holds it (for the log).

        Only a lock conflict (a concurrent claim) is retried, after a jittered backoff; any other
        error fails the table with the error.
        """
        deadline = time.monotonic() + self.wait
        pause = max(0.5, min(5.0, self.seconds / 4))
        for attempt in range(1000):
            try:
                if attempt == 0 and wh.execute(self._sql["claim"], self.params(target)).rowcount:
                    return None          # the usual case: the target's lease row exists and is free
                wh.execute(self._sql["seed"], self.params(target))
                if wh.execute(self._sql["claim"], self.params(target)).rowcount:
                    return None
                row = wh.rows(self._sql["holder"], self.params(target))
            except EtlError as exc:
                if not (isinstance(exc, LockConflict) or is_lock_conflict(str(exc))):
                    raise EtlError(f"cannot claim the lease of {target} in {self.table}: {exc}") from None
                log.info("step=lease target=%s claim_conflict=%s", target, exc)
                time.sleep(backoff_seconds(attempt, pause))
                continue
            if not row:                  # released between our claim and our look: claim again
                time.sleep(backoff_seconds(attempt, pause))
                continue
            holder, since, until = row[0]
            if time.monotonic() >= deadline:
                return f"run {holder} (since {since} UTC, lease until {until} UTC)"
            log.info("step=lease target=%s waiting_for=%s", target, holder)
            time.sleep(pause * (0.75 + 0.5 * random.random()))
        raise EtlError(f"cannot claim the lease of {target} in {self.table}")

    def confirm(self, target: str, plan: PlanRead) -> None:
        """The re-read after the claim: this run's lease is live and no other run's is."""
        if plan.other_holder is not None or not plan.mine:
            raise LeaseTaken(f"run {plan.other_holder or '(unknown)'} claimed {target} at the same time")

    def hold(self, wh: Warehouse, target: str, release: bool) -> bool:
        """Still ours and nobody else's? The UPDATE locks the lease rows until the transaction ends;
        with ``release`` they are freed by the same COMMIT that commits the load."""
        return bool(wh.execute(self._sql["hold_release" if release else "hold"], self.params(target)).rowcount)

    def release(self, wh: Warehouse, target: str) -> None:
        for attempt in range(3):
            try:
                wh.execute(self._sql["release"], self.params(target))
                return
            except EtlError as exc:      # a write conflict with our own heartbeat: try again
                if attempt == 2:
                    log.warning("step=lease target=%s release_failed=%s expires_in=%ds", target, exc, self.seconds)
                time.sleep(backoff_seconds(attempt, 1.0))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _beat(self) -> None:
        wh = None
        while not self._stop.wait(max(0.5, self.seconds / 4)):
            try:
                wh = wh or self._connect()
                wh.execute(self._sql["renew"], self.params())
            except Exception as exc:   # the next beat tries again; a lease outlives a few missed beats
                log.warning("step=lease heartbeat_failed=%s", REDACTOR.clean(str(exc)))
                if wh is not None:
                    wh.close()
                wh = None
        if wh is not None:
            wh.close()


class ThreadConnections:
    """One Snowflake connection per worker thread, reused by the tables that thread runs in turn.

    A login costs a round trip or more (seconds with key-pair or SSO); a table that failed
    discards its thread's connection, so no broken session is reused.
    """

    def __init__(self, connect: Callable[[], Warehouse]):
        self._connect = connect
        self._local = threading.local()
        self._open: list[Warehouse] = []
        self._lock = threading.Lock()

    def get(self) -> Warehouse:
        wh = getattr(self._local, "wh", None)
        if wh is None:
            wh = self._local.wh = self._connect()
            with self._lock:
                self._open.append(wh)
        return wh

    def discard(self) -> None:
        wh, self._local.wh = getattr(self._local, "wh", None), None
        if wh is not None:
            wh.close()

    def close_all(self) -> None:
        with self._lock:
            for wh in self._open:
                wh.close()
            self._open.clear()


class Metrics:
    """CloudWatch custom metrics, one put_metric_data per table (dimensions JobName, Table)."""

    NAMESPACE = "GlueETL"
    UNITS = {"DurationSeconds": "Seconds", "LagSeconds": "Seconds"}

    def __init__(self, cloudwatch_client: Any, job_name: str, namespace: str = NAMESPACE):
        self._cw = cloudwatch_client
        self.job_name = job_name
        self.namespace = namespace

    def publish(self, table: str, values: Mapping[str, float | None]) -> None:
        dims = [{"Name": "JobName", "Value": self.job_name}, {"Name": "Table", "Value": table}]
        data = [{"MetricName": name, "Dimensions": dims, "Value": float(v), "Unit": self.UNITS.get(name, "Count")}
                for name, v in values.items() if v is not None]
        self._cw.put_metric_data(Namespace=self.namespace, MetricData=data)


# Published by VERIFY and REPAIR (``Table._verify``), beside ``metric_values``; charted on the dashboard.
RECONCILE_METRICS = ("VerifiedRows", "MismatchedRows", "RepairedRows")


def metric_values(r: TableResult, now: dt.datetime | None = None) -> dict[str, float | None]:
    """The table's metrics; ``now`` (default: this worker's clock, UTC) is what LagSeconds is measured at."""
    ok = r.status == "OK"
    return {
        "SourceRecordCount": r.source_rows, "FilteredRecordCount": r.delta_rows,
        "TargetRecordCount": r.target_rows, "RowDifference": r.difference,
        "RowsInserted": r.inserted, "RowsUpdated": r.updated, "RowsDeleted": r.deleted,
        "DurationSeconds": round(r.seconds, 3),
        "Success": 1 if ok else 0, "Failure": 0 if ok else 1,
        "LagSeconds": lag_seconds(committed_watermark(r), now or dt.datetime.now(dt.UTC)),
    }


class LoadHistory:
    """Writes each table run's row in <STATE_SCHEMA>.ETL_LOAD_HISTORY (README "Load history").

    ``write`` runs inside the load transaction: the row commits with the load or not at all.
    ``finish`` runs when the table's run is over: the row of a run that loaded nothing (failed,
    skipped, no delta), on a usable connection, or the final status of a loaded row (DRIFT, or
    FAILED by a step after the load). A failure to write it is logged and changes no result.
    """

    def __init__(self, connections: ThreadConnections, table: str, state_table: str, job: str, run_id: str):
        self._connections = connections
        self.table = table
        self._state = state_table
        self._job = job
        self._run_id = run_id

    def write(self, wh: Warehouse, r: TableResult) -> None:
        wh.execute(write_history_sql(self.table), self._params(r, loaded=True))

    def write_repair(self, wh: Warehouse, r: TableResult, read: int, inserted: int, updated: int,
                     deleted: int) -> None:
        """REPAIR's own row, inside the repair's transaction (it commits with the repair or not at all):
        RUN_ID '<run>/repair', MODE REPAIR, LOADED TRUE, what the repair read and wrote; the watermark as
        committed (a repair never moves it)."""
        mark = committed_watermark(r)
        row = dataclasses.replace(r, mode="REPAIR", status="OK", error=None, delta_rows=read, inserted=inserted,
                                  updated=updated, deleted=deleted, watermark_before=mark, watermark_after=mark,
                                  ddl=[])
        wh.execute(write_history_sql(self.table), {**self._params(row, loaded=True), "run_id": repair_run_id(
            self._run_id)})

    def finish(self, r: TableResult) -> None:
        if r.committed and r.status == "OK":
            return                                  # the load's own row says it all
        try:
            wh = self._connections.get()            # a failed table's connection was discarded: a new one
            if not r.committed and r.status != "OK" and r.watermark_before is None:
                # Failed before the plan read (or skipped): the state still has the committed watermark.
                row = wh.rows(read_state_sql(self._state), {"target": r.target})
                if row:
                    r.watermark_column, r.watermark_before = row[0][0], row[0][1]
            wh.execute(write_history_sql(self.table), self._params(r, loaded=False))
        except Exception as exc:  # the history must never hide the table's own result
            log.warning("table=%s step=history error=%s note=no history row written for this run", r.key,
                        REDACTOR.clean(f"{type(exc).__name__}: {exc}"))
            self._connections.discard()

    def _params(self, r: TableResult, loaded: bool) -> dict[str, Any]:
        params = history_params(r, self._run_id, self._job, loaded, dt.datetime.now(dt.UTC))
        if params["error"]:
            params["error"] = REDACTOR.clean(params["error"])
        return params


# =====================================================================================
# 3. ORCHESTRATION
# =====================================================================================


@dataclass
class RunContext:
    """What every table pipeline of one run shares."""

    args: JobArgs
    run_started: dt.datetime
    spark: Any
    secrets: SecretStore
    staging: S3Staging
    warehouse: Callable[[], Warehouse]       # opens a new Snowflake connection
    snowflake: SnowflakeSettings
    metrics: Metrics
    cores: int = 2
    leases: Leases = field(init=False)
    connections: ThreadConnections = field(init=False)
    history: LoadHistory = field(init=False)

    def __post_init__(self) -> None:
        self.connections = ThreadConnections(self.warehouse)
        self.history = LoadHistory(self.connections, self.history_table, self.state_table, self.args.job_name,
                                   self.run_id)
        # The lease holder names this run and is unique even for two runs started in the same microsecond.
        self.leases = Leases(self.warehouse, self.lease_table, f"{self.run_id}-{uuid.uuid4().hex[:8]}",
                             self.args.lease_seconds, self.args.lease_wait_seconds)

    @property
    def run_id(self) -> str:
        return run_identifier(self.args.job_name, self.run_started)

    @property
    def state_table(self) -> str:
        return fqn(self.snowflake.database, self.args.state_schema, STATE_TABLE)

    @property
    def lease_table(self) -> str:
        return fqn(self.snowflake.database, self.args.state_schema, LEASE_TABLE)

    @property
    def history_table(self) -> str:
        return fqn(self.snowflake.database, self.args.state_schema, HISTORY_TABLE)


class TableLog(logging.LoggerAdapter):
    def process(self, msg: str, kwargs: Any) -> tuple[str, Any]:
        return f"table={self.extra['table']} {msg}", kwargs


def in_background(fn: Callable[..., Any], *args: Any) -> Future:
    """Run ``fn(*args)`` on a daemon thread; the Future holds its result or its exception."""
    done: Future = Future()

    def work() -> None:
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever asks for the result
            done.set_exception(exc)

    threading.Thread(target=work, daemon=True).start()
    return done


class Reconciler:
    """VERIFY: compare a loaded table with its source by primary-key ranges, everything pushed down.

    Each side answers (rows, sum of 60-bit row-hash slices) per key bucket; differing buckets are split
    again until they hold at most VERIFY_LEAF_ROWS rows, whose keys and row hashes are then compared.
    Timestamp tables are bounded at the committed watermark on the source side; a differing key whose
    source row changed after it is counted as ``changed_since_load``, not as drift.
    """

    tgt_where: str | None = None       # target rows compared (DeleteDetector: soft-deleted rows are left out)
    src_label: str | None = None       # a hashed key (``hashed_key_sql``): the key's text on each side, by
    tgt_label: str | None = None       # which the leaves are compared and the keys reported (and REPAIR's
    stage_label: str | None = None     # over its staging table)
    src_lead: KeyLead | None = None    # a hashed key's first column, when REPAIR can narrow by it (``lead_in_sql``)

    def __init__(self, source: JdbcSource, wh: Warehouse, cfg: TableConfig, target: str,
                 facts: Mapping[str, SourceColumn], target_cols: Mapping[str, str], state_table: str,
                 log: logging.LoggerAdapter, loaded: bool = True):
        """``facts``: the source columns as ``source_columns`` reads them (in column order); ``loaded``: this
        run loaded the table first (False: --LOAD false), for the error that says what stands."""
        self.source, self.wh, self.cfg, self.target, self.log = source, wh, cfg, target, log
        self.loaded = loaded
        self.facts, self.target_cols, self.state_table = facts, target_cols, state_table
        self.src_table = source_table_ref(source.engine, cfg.namespace, cfg.source_table)
        self.leaves: list[tuple[int, int]] = []     # the key ranges ``verify`` compared key by key
        self.hashed: dict[str, int] = {}            # a hashed key's text -> its hashed key, as the leaves held them
        if cfg.deletes == "soft" and DELETED_AT in target_cols:
            self.tgt_where = f"{qi(DELETED_AT)} IS NULL"     # a soft-deleted row stays, marked: not drift

    def _plan(self) -> None:
        p = verify_plan(self.source.engine, self.cfg, self.facts, self.target_cols)
        if p.problems:
            stands = "its load committed" if self.loaded else "nothing was loaded: --LOAD false"
            raise EtlError(f"{self.cfg.key}: VERIFY cannot compare this table ({stands}): "
                           f"{'; '.join(p.problems)}. Leave the column "
                           f"out with 'columns', or turn 'verify' off for the table")
        self.src_hash, self.tgt_hash, self.src_key, self.tgt_key = p.src_hash, p.tgt_hash, p.src_key, p.tgt_key
        self.src_label, self.tgt_label, self.stage_label = p.src_label, p.tgt_label, p.stage_label
        self.src_lead = p.src_lead
        self.bound = self._bound()

    def _bound(self) -> str | None:
        """Source rows at or before the table's committed watermark (timestamp tables only)."""
        ts = self.cfg.timestamp_column
        state = self.wh.rows(read_state_sql(self.state_table), {"target": self.cfg.target})
        if not ts or not state or state[0][0] != ts.upper() or state[0][1] is None:
            return None
        wm = Watermark(state[0][0], state[0][1])
        if not wm.is_timestamp:
            return None
        q = source_quote(self.source.engine, self.facts[ts.lower()].name)
        nulls = "" if self.cfg.null_timestamps == "exclude" else f" OR {q} IS NULL"
        return f"{q} <= TIMESTAMP '{wm.value}'{nulls}"

    def _both(self, source_sql: str, names: Sequence[str], target_sql: str) -> tuple[list[dict], list[tuple]]:
        """One query per side, both at once: the source's (its columns ``names``, read in bulk; "kt" a key's text)
        on a thread of its own (its own JDBC connection)."""
        s = in_background(self.source.rows, source_sql, names, RECONCILE_SESSION.get(self.source.engine, ()), ("kt",))
        t = self.wh.rows(target_sql)
        return s.result(), t

    def _buckets(self, origin: int, width: int, ranges: KeyRanges) -> tuple[dict, dict]:
        """Per bucket (rows, hash sum) of both sides, VERIFY_RANGES_PER_STATEMENT ranges per statement."""
        src: dict = {}
        tgt: dict = {}
        for part in batches(ranges, VERIFY_RANGES_PER_STATEMENT):
            hashed = self.src_label is not None
            s, t = self._both(range_fingerprints_sql(self.source.engine, self.src_table, self.src_key, self.src_hash,
                                                     origin, width, part, self.bound, hashed), ("b", "n", "h"),
                              range_fingerprints_sql("snowflake", self.target, self.tgt_key, self.tgt_hash, origin,
                                                     width, part, self.tgt_where, hashed))
            for into, rows in ((src, ((r["b"], r["n"], r["h"]) for r in s)), (tgt, t)):
                for b, n, h in rows:        # a bucket cut by two statements' ranges adds up
                    had = into.get(int(b), (0, 0))
                    into[int(b)] = (had[0] + int(n), had[1] + int(h or 0))
        return src, tgt

    def _key_rows(self, ranges: KeyRanges, src_value: str, tgt_value: str, bounded: bool = True
                  ) -> tuple[dict, dict]:
        """key -> value of both sides' rows in ``ranges``, VERIFY_RANGES_PER_STATEMENT ranges per statement;
        ``bounded``: the source's rows at or before the committed watermark only (``bound``)."""
        src: dict = {}
        tgt: dict = {}
        where = self.bound if bounded else None
        names = ("k", "rh", "kt") if self.src_label else ("k", "rh")
        for part in batches(ranges, VERIFY_RANGES_PER_STATEMENT):
            s, t = self._both(key_hashes_sql(self.source.engine, self.src_table, self.src_key, src_value, part,
                                             where, self.src_label), names,
                              key_hashes_sql("snowflake", self.target, self.tgt_key, tgt_value, part, self.tgt_where,
                                             self.tgt_label))
            if self.src_label is None:
                src.update({int(r["k"]): r["rh"] for r in s})
                tgt.update({int(k): h for k, h in t})
                continue
            src.update({r["kt"]: r["rh"] for r in s})       # a hashed key: by the key's text
            tgt.update({kt: h for _, h, kt in t})
            self.hashed.update({r["kt"]: int(r["k"]) for r in s})
            self.hashed.update({kt: int(k) for k, _, kt in t})
        return src, tgt

    def verify(self) -> Drift:
        self._plan()
        if self.src_label is None:
            s = self.source.query_one(key_bounds_sql(self.src_table, self.src_key, self.bound))
            t = self.wh.rows(key_bounds_sql(self.target, self.tgt_key, self.tgt_where))[0]
            ends = [int(v) for v in (s.get("lo"), s.get("hi"), *t) if v is not None]
            if not ends:
                return Drift()
        else:
            ends = list(HASHED_KEY_SPAN)     # every hashed key lies in it: no bounds to read
        self.leaves, rows, queries = differing_ranges(min(ends), max(ends), self._buckets)
        drift = self._compare(self.leaves)
        drift.rows = rows
        self.log.info("step=verify ranges_queried=%d leaves=%d", queries, len(self.leaves))
        return drift

    def recheck(self) -> Drift:
        """The key ranges ``verify`` compared key by key, compared again (after a REPAIR)."""
        return self._compare(self.leaves, "repair_check")

    def _compare(self, leaves: Sequence[tuple[int, int]], what: str = "verify") -> Drift:
        drift = compare_key_hashes(*self._key_rows(leaves, self.src_hash, self.tgt_hash)) if leaves else Drift()
        if self.bound and drift.count:           # re-check: rows the source changed after the last load
            keys = drift.missing + drift.extra + drift.different
            later = set()
            for part in batches(keys, 1000):
                later |= self._changed_after_bound(part)
            drift.missing, drift.extra, drift.different = ([k for k in ks if k not in later] for ks in
                                                           (drift.missing, drift.extra, drift.different))
            drift.changed_since_load = len(later)
        shown = [("missing_in_target", k) for k in drift.missing] + [("extra_in_target", k) for k in drift.extra] \
            + [("different", k) for k in drift.different]
        for found, k in shown[:VERIFY_LOG_KEYS]:
            self.log.warning("step=%s %s key=%s", what, found, k)
        if len(shown) > VERIFY_LOG_KEYS:
            self.log.warning("step=%s more_keys_not_logged=%d", what, len(shown) - VERIFY_LOG_KEYS)
        return drift

    def _changed_after_bound(self, keys: Sequence[Any]) -> set:
        """Those of ``keys`` whose source row changed after the committed watermark (``bound``)."""
        hashed = self.src_label is not None
        label = self.src_label if hashed else self.src_key
        values = sorted({self.hashed[k] for k in keys}) if hashed else keys
        rows = self.source.rows(f"SELECT {label} AS k FROM {self.src_table} WHERE {self.src_key} IN "
                                f"({', '.join(str(v) for v in values)}) AND NOT ({self.bound})", ("k",),
                                texts=("k",) if hashed else ())
        return {r["k"] if hashed else int(r["k"]) for r in rows} & set(keys)


class DeleteDetector(Reconciler):
    """deletes: the target's keys that the source no longer has (``find_deletes``), with the guard.

    The same bucket queries as VERIFY on a key-only hash; runs before anything is written, so the guard's
    refusal leaves the target and the state as they were. With 'soft', rows already marked are left out.
    """

    @classmethod
    def for_table(cls, source: JdbcSource, wh: Warehouse, cfg: TableConfig, target: str,
                  facts: Mapping[str, SourceColumn], target_cols: Mapping[str, str], state_table: str,
                  log: logging.LoggerAdapter) -> Deletes | None:
        """The table's source deletes, or None when it does not look for them."""
        if cfg.deletes == "ignore" or cfg.mode not in ("INCREMENTAL", "UPSERT") or cfg.truncate_before_insert:
            return None
        with step(log, "deletes", policy=cfg.deletes) as info:
            found = cls(source, wh, cfg, target, facts, target_cols, state_table, log).detect()
            info.update(deletes=len(found.keys), target_rows=found.target_rows, ranges_queried=found.ranges_queried,
                        leaves=found.leaves)
        return found

    def _plan(self) -> None:
        """The key-only fingerprint: VERIFY's plan of the key columns alone (``verify_plan``), so an integer key
        is bisected by its values and any other by its hash, and the hash is that of the key's text."""
        cfg = self.cfg
        p = verify_plan(self.source.engine, dataclasses.replace(cfg, columns=cfg.primary_key), self.facts,
                        self.target_cols)
        if p.problems:
            raise EtlError(f"{cfg.key}: deletes '{cfg.deletes}' compares the source's and the target's keys, and "
                           f"cannot compare them: {'; '.join(p.problems)}; nothing was loaded. Set 'deletes' to "
                           f"'ignore' (FULL or TRUNCATE_INSERT see deletes)")
        self.src_hash, self.tgt_hash, self.src_key, self.tgt_key = p.src_hash, p.tgt_hash, p.src_key, p.tgt_key
        self.src_label, self.tgt_label = p.src_label, p.tgt_label
        self.tgt_where = f"{qi(DELETED_AT)} IS NULL" if DELETED_AT in self.target_cols else None
        # A hashed key scatters the keys the target has not loaded yet over every range: the ranges compare
        # the source's rows at or before the committed watermark (all of which the target holds), the leaves
        # all of its keys. An integer key's new keys lie above the target's highest: no bound needed.
        self.bound = self._bound() if self.src_label is not None else None

    def detect(self) -> Deletes:
        cfg = self.cfg
        soft = cfg.deletes == "soft"
        if soft and any(c.name.upper() == DELETED_AT for c in self.facts.values()):
            raise EtlError(f"{cfg.key}: deletes 'soft' adds a column {DELETED_AT} to {cfg.target}, and the source "
                           f"has a column of that name; nothing was loaded. Leave it out with 'columns', or use "
                           f"deletes 'delete'")
        found = Deletes()
        if self.target_cols:            # none yet: the first load, nothing to delete
            self._plan()
            if self.src_label is None:
                lo, hi = self.wh.rows(key_bounds_sql(self.target, self.tgt_key, self.tgt_where))[0]
                if lo is not None:
                    found = find_deletes(int(lo), int(hi), self._buckets, self._keys, self._guard)
            else:
                found = find_deletes(*HASHED_KEY_SPAN, self._buckets, self._keys, self._guard, self._fewer_rows())
        found.key = self.tgt_label or qi(cfg.primary_key[0].upper())
        found.soft = soft
        found.add_column = soft and DELETED_AT not in self.target_cols
        return found

    def _fewer_rows(self) -> int:
        """The target's (live) rows beyond the source's, at least that many deletes: a hashed key's ranges hold
        keys the target has not loaded yet, so their counts bound nothing; the guard's early check is this."""
        n = in_background(self.source.query_one, f"SELECT COUNT(*) AS n FROM {self.src_table}")   # both at once
        where = f" WHERE {self.tgt_where}" if self.tgt_where else ""
        target = int(self.wh.scalar(f"SELECT COUNT(*) FROM {self.target}{where}"))
        return max(0, target - int(n.result().get("n") or 0))

    def _keys(self, ranges: KeyRanges) -> tuple[set, set]:
        s, t = self._key_rows(ranges, self.src_key, self.tgt_key, bounded=False)    # every source key there
        return set(s), set(t)

    def _guard(self, deletes: int, target_rows: int, at_least: bool) -> None:
        problem = delete_guard(self.cfg.key, self.cfg.target, deletes, target_rows, self.cfg.max_delete_fraction,
                               at_least)
        if problem:
            raise EtlError(problem)


@contextmanager
def step(logger: logging.LoggerAdapter, name: str, **fields: Any) -> Iterator[dict]:
    """Log one step of a table's run with its duration and what it found (``out``)."""
    t0 = time.monotonic()
    out: dict = {}
    yield out
    extra = " ".join(f"{k}={v}" for k, v in {**fields, **out}.items())
    logger.info("step=%s seconds=%.3f %s", name, time.monotonic() - t0, extra)


def extract(source: JdbcSource, cfg: TableConfig, columns: Mapping[str, SourceColumn], sql: str,
            partitions: Sequence[str] = (), text: Sequence[str] = ()) -> Any:
    """The rows of ``sql`` as the table stages them (defined, not read): zoned timestamps as instants,
    then the table's transform."""
    df = source.read(sql, cfg.fetch_size, list(partitions), list(text))
    zoned = ZONED_TYPES[source.engine]
    df = df.select([df[f"`{f.name}`"].cast("timestamp").alias(f.name)
                    if f.name.lower() in columns and columns[f.name.lower()].type in zoned
                    and type(f.dataType).__name__ == "TimestampNTZType"
                    else df[f"`{f.name}`"] for f in df.schema.fields])
    return cfg.transform(df) if cfg.transform is not None else df


class Survey:
    """Gathers a table's facts (source schema and types, the plan read, one pushed-down scan of the
    window) and turns them into its plan; reads only, writes nothing anywhere."""

    def __init__(self, table: Table, source: JdbcSource, wh: Warehouse, claimed: bool = True, deletes: bool = True):
        self.t, self.source, self.wh, self.claimed, self.deletes = table, source, wh, claimed, deletes

    def plan(self) -> tuple[TablePlan, Any]:
        """(the plan, the extract's DataFrame: defined, not read)."""
        t, cfg, source = self.t, self.t.cfg, self.source
        engine, ns, name = source.engine, cfg.namespace, cfg.source_table
        with step(t.log, "plan") as info:
            fields = {f.name: f.dataType for f in source.schema(ns, name).fields}
            read = self._plan_read()
            t.result.watermark_column, t.result.watermark_before = read.state_column, read.state_watermark
            column = needs_target_max(cfg, list(fields), read)
            target_max = watermark_text(self.wh.scalar(max_sql(t.target, column))) if column else None
            w = plan_window(cfg, engine, fields, read, target_max)
            columns = source_columns(source.query(column_types_query(engine, ns, name)))
            types = type_plan(engine, columns, w.selected, cfg.key, w.part_col, cfg.transform is not None)
            stats = source.query_one(source_stats_query(engine, ns, name, w.predicate, w.part_col, w.ts, types.checks))
            nulls = int(source.query_one(null_count_query(engine, ns, name, w.ts))["n"]) \
                if w.ts and cfg.null_timestamps != "include" else None
            plan = plan_table(cfg, TableFacts(engine, fields, columns, read, target_max, stats, nulls),
                              t.ctx.cores, t.target, t.ctx.args.verify, t.ctx.args.repair)
            for note in plan.notes:
                t.log.info("step=plan note=%s", note)
            for warning in plan.warnings:
                t.log.warning("step=plan %s", warning)
            info.update(mode=cfg.mode, watermark=w.watermark.value if w.watermark else None,
                        window_rows=plan.rows, predicate=json.dumps(w.predicate))
        # Source deletes (a table's 'deletes' setting): found, and the guard applied, before anything is written.
        deletes = DeleteDetector.for_table(source, self.wh, cfg, t.target, columns, plan.target_columns,
                                           t.ctx.state_table, t.log) if self.deletes else None
        with step(t.log, "extract") as info:
            df = extract(source, cfg, columns, plan.source_sql, plan.partitions, plan.types.text)
            plan = plan_load(plan, cfg, [(f.name, f.dataType) for f in df.schema.fields], fields, t.stage_table,
                             deletes)
            info.update(partitions=max(1, len(plan.partitions)), verbatim=len(plan.types.text),
                        sql=json.dumps(plan.source_sql),
                        **({"split": json.dumps(list(plan.partitions))} if plan.partitions else {}))
        return plan, df

    def check(self) -> tuple[dict[str, SourceColumn], PlanRead]:
        """--LOAD false: the facts a VERIFY of the target as it is starts from - the source's columns
        (information_schema) and the plan read (lease, state, the target's columns) - without a load's: no JDBC
        schema, no scan of the read window (a FULL table's is the whole table)."""
        t, cfg, source = self.t, self.t.cfg, self.source
        with step(t.log, "plan") as info:
            columns = source_columns(source.query(column_types_query(source.engine, cfg.namespace, cfg.source_table)))
            if not columns:
                raise EtlError(f"{cfg.key}: the source has no table {cfg.source_table} in {cfg.namespace} "
                               f"(information_schema lists no column of it on {source.settings.url}); check the "
                               f"registry's key and the connection's database")
            read = self._plan_read()
            t.result.watermark_column, t.result.watermark_before = read.state_column, read.state_watermark
            info.update(mode="REPAIR" if t.ctx.args.repair else "VERIFY", watermark=read.state_watermark)
        return columns, read

    def _plan_read(self) -> PlanRead:
        """Lease re-read, state, target columns and row count in one statement (docs/PERFORMANCE.md).

        The count needs the target: it is asked for first, and a target that does not exist yet
        (error 002003) costs one more statement, on the first run only. A dry run before the job's
        first run finds no state table either: then no state, and the target as it is.
        """
        t = self.t
        params = {**t.ctx.leases.params(t.cfg.target), "schema": t.cfg.target_schema, "table": t.cfg.target_name}
        db, state, lease = t.ctx.snowflake.database, t.ctx.state_table, t.ctx.leases.table
        failed: EtlError | None = None
        for counted in ((True, False) if t.cfg.mode != "FULL" else (False,)):
            try:
                rows = self.wh.rows(plan_read_sql(db, state, lease, t.target if counted else None), params)
                break
            except EtlError as exc:
                if "002003" not in str(exc):
                    raise
                failed = exc
        else:       # the job's state table is missing too: a dry run before the job's first run
            if self.claimed:
                raise failed
            cols = {r[0]: target_type(*r[1:]) for r in self.wh.rows(target_columns_sql(db), params)}
            return PlanRead(0, None, None, None, int(self.wh.scalar(count_sql(t.target))) if cols else None, cols)
        read = PlanRead.from_rows(rows, counted)
        if self.claimed:
            t.ctx.leases.confirm(t.cfg.target, read)
        return read


class StagedFiles:
    """One run's staging folder on S3 for one table: write the extract there, sweep dead runs, remove."""

    def __init__(self, table: Table, database: str, sub: str = ""):
        """``sub``: a folder of its own below the run's (REPAIR's files are never the load's)."""
        self.t, self.database = table, database
        self.prefix = staging_prefix(table.ctx.args.job_name, database, table.cfg.key, table.ctx.run_started) + sub
        self.files: list[str] = []

    def write(self, df: Any) -> list[str]:
        t = self.t
        with step(t.log, "stage", uri=t.ctx.staging.uri(self.prefix)) as info:
            try:
                stage_dataframe(df, t.ctx.staging.uri(self.prefix))
            except Exception as exc:
                raise EtlError(f"{t.cfg.key}: extract/stage failed: {java_error_text(exc)}") from None
            self.files = t.ctx.staging.part_files(self.prefix)
            info.update(files=len(self.files))
        return self.files

    def sweep(self) -> None:
        """Delete staging files that earlier runs of this table left behind (killed before cleanup).

        They are never loaded (COPY names this run's files only); this keeps the bucket clean.
        """
        t = self.t
        folder = staging_folder(t.ctx.args.job_name, self.database, t.cfg.key)
        try:
            removed = t.ctx.staging.delete(folder, keep=lambda key: not is_older_run(key, folder, self.prefix))
        except Exception as exc:  # the bucket's lifecycle rule is the backstop
            t.log.warning("step=cleanup folder=%s error=%s", folder, REDACTOR.clean(str(exc)))
            return
        if removed:
            t.log.info("step=cleanup removed_dead_run_files=%d", removed)

    def remove(self) -> None:
        """Delete this run's files, success or not (never loaded twice), unless --KEEP_STAGING."""
        t = self.t
        if t.ctx.args.keep_staging:
            return
        try:
            t.ctx.staging.delete(self.prefix)
        except Exception as exc:  # a lifecycle rule on the bucket catches what is left
            t.log.warning("step=cleanup prefix=%s error=%s", self.prefix, REDACTOR.clean(str(exc)))


class Load:
    """Executes a table's plan: extract and stage -> COPY -> the plan's DDL -> the load transaction."""

    def __init__(self, table: Table, plan: TablePlan, df: Any, source: JdbcSource, wh: Warehouse):
        self.t, self.plan, self.df, self.source, self.wh = table, plan, df, source, wh
        self.cfg, self.r = table.cfg, table.result
        self.source_count: Future | None = None

    def run(self) -> None:
        t, cfg, plan = self.t, self.cfg, self.plan
        if plan.windowed and cfg.count_source:
            # Only the summary needs the whole table's count: it runs beside extract, stage and COPY.
            self.source_count = in_background(self.source.query_one, source_stats_query(
                self.source.engine, cfg.namespace, cfg.source_table, None, None, None))
        staged = StagedFiles(t, self.source.settings.database)
        staged.sweep()
        try:
            files = staged.write(self.df) if plan.stages else []
            if plan.loads:
                self._load_staged(staged.prefix, files)
            else:
                self._nothing_to_load()
        finally:
            if plan.loads:
                self._drop_stage_table()
            staged.remove()

    def _drop_stage_table(self) -> None:
        """The staging table is temporary (gone with the session), but the session goes on to the
        thread's next table: drop it now rather than keep its storage until the session ends."""
        try:
            self.wh.execute(drop_table_sql(self.t.stage_table))
        except EtlError as exc:
            self.t.log.warning("step=cleanup stage_table=%s error=%s", self.t.stage_table, exc)

    def _load_staged(self, prefix: str, files: Sequence[str]) -> None:
        """COPY the run's files into the staging table, check them, then load the target."""
        t, cfg, plan, wh, r = self.t, self.cfg, self.plan, self.wh, self.r
        w = plan.window
        delta = (w.delta_col or "").upper() or None
        with step(t.log, "copy") as info:
            wh.execute(create_stage_table_sql(t.stage_table, staged_columns(plan.columns)))
            loaded = self._copy(prefix, files)
            staged, null_keys, distinct, high = wh.rows(stage_stats_sql(t.stage_table, w.key_names, delta))[0]
            info.update(rows=loaded, staged=staged)
        r.delta_rows = int(staged)
        if null_keys:
            raise EtlError(f"{cfg.key}: {null_keys} source row(s) have a NULL in primary_key "
                           f"{list(cfg.primary_key)}; a key must identify every row - fix the data or the key")
        if distinct != staged:
            t.log.warning("step=copy duplicate_keys=%d note=the latest %s wins", staged - distinct,
                          w.order_name or "row")
        new_wm = watermark_text(high) if delta else None
        if new_wm is None and w.watermark is not None:
            new_wm = w.watermark.value           # nothing new: keep the old watermark
        state = {"target": cfg.target, "source": cfg.key, "mode": cfg.mode, "column": delta, "watermark": new_wm,
                 "run_id": t.ctx.run_id, "rows": int(staged)}
        r.watermark_column, r.watermark_after = delta, new_wm
        self._before_load()
        with step(t.log, "load") as info:
            self._load(int(staged), state)
            info.update(inserted=r.inserted, updated=r.updated, watermark=new_wm)
        r.target_rows = int(wh.scalar(count_sql(t.target)))
        if r.source_rows is None and not plan.windowed:
            r.source_rows = int(staged)     # the read covered the whole table

    def _nothing_to_load(self) -> None:
        """The source read has no rows for a mode that only adds: the target and the state stay as they are."""
        r = self.r
        r.delta_rows, r.inserted, r.updated = 0, 0, 0
        r.deleted = 0 if self.plan.deletes is not None else None
        self._before_load()
        r.target_rows = self.plan.read.target_rows or 0
        if r.source_rows is None and not self.plan.windowed:
            r.source_rows = 0

    def _before_load(self) -> None:
        """The whole table's count (a failed count fails the table), then the plan's DDL (outside the
        load transaction: Snowflake DDL commits by itself)."""
        if self.source_count is not None:
            self.r.source_rows = int(self.source_count.result()["n"])
        for what, sql in self.plan.ddl:
            self.wh.execute(sql)
            self.r.ddl.append(sql)
            self.t.log.info("step=ddl %s", what)

    def _copy(self, prefix: str, files: Sequence[str]) -> int:
        t = self.t
        sf = t.ctx.snowflake
        if sf.stage:
            location, integration = f"@{sf.stage}/{prefix}", None
        else:
            location, integration = t.ctx.staging.uri(prefix), sf.storage_integration
        loaded = 0
        for i in range(0, len(files), 1000):        # Snowflake takes at most 1000 FILES per COPY
            cur = self.wh.execute(copy_into_sql(t.stage_table, location, files[i:i + 1000], integration))
            names = [d[0].lower() for d in (cur.description or [])]
            for row in cur.fetchall():
                rec = dict(zip(names, row, strict=False))
                if "rows_loaded" in rec:
                    loaded += int(rec["rows_loaded"] or 0)
        return loaded

    def _load(self, staged: int, state: Mapping[str, Any]) -> None:
        """Apply the mode and move the watermark in one transaction (FULL: atomic swap, then state).

        The transaction begins with the lease check, which locks the lease until COMMIT and
        releases it with the same COMMIT (docs/GUARANTEES.md "Two runs at once").
        """
        t, wh, r = self.t, self.wh, self.r
        release = not self.plan.verify          # VERIFY (and REPAIR) run under the lease: the table's run frees it
        if self.cfg.mode == "FULL":
            self._check_lease(release=False)         # DDL commits by itself: no transaction to lock in
            for _, sql in self.plan.statements:
                wh.execute(sql)
            r.inserted, r.updated = staged, 0
            with wh.transaction():                       # the history row commits with the state
                t.ctx.history.write(wh, r)
                wh.execute(write_state_sql(t.ctx.state_table), state)
            r.committed = True
            if release:
                t.ctx.leases.release(wh, self.cfg.target)     # the target is loaded: counting it needs no lease
                t.released = True
            return
        with wh.transaction():
            self._check_lease(release=release)
            r.deleted = 0 if self.plan.deletes is not None else None
            for kind, sql in self.plan.statements:
                cur = wh.execute(sql)
                if kind == "deleted":
                    r.deleted += deleted_count([c[0] for c in cur.description or []], cur.fetchone())
                elif kind == "merge":
                    r.inserted, r.updated = merge_counts([d[0] for d in cur.description or []], cur.fetchone())
                elif kind == "insert":
                    r.inserted, r.updated = cur.rowcount, 0
            t.ctx.history.write(wh, r)                   # commits with the load, or not at all
            wh.execute(write_state_sql(t.ctx.state_table), state)
        r.committed = True
        t.released = release

    def _check_lease(self, release: bool) -> None:
        """Refuse to change the target when this run's lease has expired (another run may own it now)."""
        t = self.t
        if not t.ctx.leases.hold(self.wh, self.cfg.target, release):
            raise EtlError(f"{self.cfg.key}: this run's lease on {self.cfg.target} expired before the load "
                           f"(no heartbeat for {t.ctx.leases.seconds} s); nothing was changed - run again")


class Repair(Load):
    """REPAIR (README "REPAIR"): the keys VERIFY found are read again from the source, staged and COPied as a
    load's rows are, then one transaction under the table's lease deletes the extra keys the re-read did not
    bring back and MERGEs the rows read; ``checker`` (the VERIFY that found them) compares those ranges again."""

    def __init__(self, table: Table, plan: TablePlan, source: JdbcSource, wh: Warehouse, checker: Reconciler):
        super().__init__(table, plan, None, source, wh)
        self.checker = checker

    def repair(self, drift: Drift) -> Repaired:
        t, cfg, plan, wh, checker = self.t, self.cfg, self.plan, self.wh, self.checker
        problem = repair_problem(cfg.key, cfg.target, drift, self.r.target_rows or 0, cfg.max_delete_fraction)
        if problem:
            raise EtlError(problem)
        keys = repair_keys(drift)
        done = Repaired(keys=len(keys))
        if checker.src_label is None:               # one integer column: the keys themselves
            sql = repair_read_sql(plan, cfg, keys)
            target_key, stage_key = qi(plan.window.key_names[0]), f"s.{qi(plan.window.key_names[0])}"
        else:                                       # a hashed key: the rows of those hashes, deleted by their text
            narrow = lead_in_sql(checker.src_lead, keys) if checker.src_lead else None
            sql = repair_read_sql(plan, cfg, sorted({checker.hashed[k] for k in keys}), checker.src_key, narrow)
            target_key, stage_key = checker.tgt_label, checker.stage_label
        staged = StagedFiles(t, self.source.settings.database, "repair/")
        try:
            files = staged.write(extract(self.source, cfg, plan.facts.columns, sql, (), plan.types.text))
            with step(t.log, "repair", keys=len(keys)) as info:
                wh.execute(create_stage_table_sql(t.stage_table, staged_columns(plan.columns)))
                read = self._copy(staged.prefix, files) if files else 0
                soft = cfg.deletes == "soft" and DELETED_AT in checker.target_cols
                inserted = updated = 0
                with wh.transaction():
                    self._check_lease(release=False)
                    for kind, stmt in repair_statements(plan.target, t.stage_table, plan.columns,
                                                        plan.window.key_names, target_key, stage_key, drift.extra,
                                                        soft):
                        cur = wh.execute(stmt)
                        names, row = [d[0] for d in cur.description or []], cur.fetchone()
                        if kind == "deleted":
                            done.deleted += deleted_count(names, row)
                        else:
                            inserted, updated = merge_counts(names, row)
                            done.reloaded = inserted + updated
                    t.ctx.history.write_repair(wh, self.r, read, inserted, updated, done.deleted)
                info.update(read=read, reloaded=done.reloaded, deleted=done.deleted)
        finally:
            self._drop_stage_table()
            staged.remove()
        with step(t.log, "repair_check") as info:
            done.remaining = checker.recheck()
            info.update(mismatched=done.remaining.count)
        return done


class Table:
    """One registry entry's run: lease -> plan (``Survey``) -> execute (``Load``) -> verify -> report."""

    def __init__(self, cfg: TableConfig, ctx: RunContext):
        self.cfg, self.ctx = cfg, ctx
        self.log = TableLog(log, {"table": cfg.key})
        self.result = TableResult(cfg.key, cfg.mode, cfg.target)
        self.released = False              # the load's COMMIT released the lease
        db = ctx.snowflake.database
        self.target = fqn(db, cfg.target_schema, cfg.target_name)
        # A temporary table of this run's session, named per run, in the job's own schema.
        self.stage_table = fqn(db, ctx.args.state_schema,
                               stage_table_name(cfg.target_schema, cfg.target_name, uuid.uuid4().hex[:12].upper()))

    def run(self) -> TableResult:
        started = time.monotonic()
        try:
            source, wh = self._source(), self.ctx.connections.get()
            holder = self.ctx.leases.acquire(wh, self.cfg.target)
            if holder:
                self.result.status = "SKIPPED"
                self.result.error = (f"{self.cfg.key}: skipped, {self.cfg.target} is being loaded by {holder}; "
                                     f"run again once it has finished (or pass --LEASE_WAIT_SECONDS to wait)")
                self.log.warning("step=lease skipped=true holder=%s", holder)
                return self.result
            try:
                if self.ctx.args.load:
                    plan, df = Survey(self, source, wh).plan()
                    Load(self, plan, df, source, wh).run()
                    if plan.verify:
                        self._verify(source, wh, plan.facts.columns, plan.repair, lambda: plan)
                else:
                    self._check(source, wh)
            except LeaseTaken as exc:
                self.result.status, self.result.error = "SKIPPED", f"{self.cfg.key}: skipped, {exc}; run again"
                self.log.warning("step=lease skipped=true %s", exc)
                return self.result
            finally:
                if not self.released:
                    self.ctx.leases.release(wh, self.cfg.target)
            r = self.result
            left = r.repaired.remaining if r.repaired is not None else r.verified
            r.status = "DRIFT" if left is not None and left.count else "OK"
        except Exception as exc:
            self._failed(exc)
        finally:
            self.result.seconds = time.monotonic() - started
            self.ctx.history.finish(self.result)
            self._publish()
        return self.result

    def dry_run(self) -> TablePlan | None:
        """The table's plan, from facts only: no lease, no staging, no Snowflake change, no metric."""
        started = time.monotonic()
        try:
            plan, _ = Survey(self, self._source(), self.ctx.connections.get(), claimed=False).plan()
            self.result.status, self.result.delta_rows = "PLANNED", plan.rows
            self.result.target_rows = plan.read.target_rows
            return plan
        except Exception as exc:
            self._failed(exc)
            return None
        finally:
            self.result.seconds = time.monotonic() - started

    def _check(self, source: JdbcSource, wh: Warehouse) -> None:
        """--LOAD false: VERIFY (or REPAIR) the target as it is; nothing is staged or loaded, the state keeps its
        watermark and source deletes are not looked for (VERIFY reports them as extra keys). Only what the check
        needs is read first (``Survey.check``); the load's plan, which REPAIR stages by, only once VERIFY found
        keys to repair."""
        r, repair = self.result, self.ctx.args.repair
        r.mode = "REPAIR" if repair else "VERIFY"
        survey = Survey(self, source, wh, deletes=False)
        columns, read = survey.check()
        if not read.target_columns:
            raise EtlError(f"{self.cfg.key}: --LOAD false checks {self.cfg.target}, which does not exist yet: "
                           f"load it first (a run without --LOAD false)")
        counted = read.target_rows          # the plan read counts the target, but for a FULL table
        r.target_rows = counted if counted is not None else int(wh.scalar(count_sql(self.target)))
        self._verify(source, wh, columns, repair, lambda: survey.plan()[0])

    def _source(self) -> JdbcSource:
        path = self.ctx.args.groups[self.cfg.ssm_key]
        return JdbcSource(self.ctx.spark, source_settings(self.ctx.secrets.get(path), path))

    def _failed(self, exc: Exception) -> None:
        self.result.error = REDACTOR.clean(str(exc) if isinstance(exc, EtlError) else f"{type(exc).__name__}: {exc}")
        if isinstance(exc, LockConflict):       # name the table whose load waited
            self.result.error = f"{self.cfg.key}: loading {self.cfg.target}: {self.result.error}"
        self.log.error("step=failed error=%s", self.result.error)
        self.ctx.connections.discard()

    def _verify(self, source: JdbcSource, wh: Warehouse, columns: Mapping[str, SourceColumn], repair: bool,
                load_plan: Callable[[], TablePlan]) -> None:
        """VERIFY, under the table's lease (see Reconciler), from the source's information_schema ``columns``;
        metrics VerifiedRows/MismatchedRows. With ``repair``, then REPAIR what it found by the table's
        ``load_plan`` (RepairedRows)."""
        checker = Reconciler(source, wh, self.cfg, self.target, columns, self._target_columns(wh),
                             self.ctx.state_table, self.log, loaded=self.ctx.args.load)
        with step(self.log, "verify") as info:
            drift = checker.verify()
            info.update(rows=drift.rows, mismatched=drift.count, changed_since_load=drift.changed_since_load)
        self.result.verified = drift
        self._publish(dict(zip(RECONCILE_METRICS[:2], (drift.rows, drift.count), strict=True)))
        if repair and drift.count:
            done = self.result.repaired = Repair(self, load_plan(), source, wh, checker).repair(drift)
            self.result.target_rows = int(wh.scalar(count_sql(self.target)))
            self._publish({RECONCILE_METRICS[2]: done.reloaded + done.deleted})

    def _target_columns(self, wh: Warehouse) -> dict[str, str]:
        """The target's columns as they are after the load (FULL and the plan's DDL may have changed them)."""
        rows = wh.rows(target_columns_sql(self.ctx.snowflake.database),
                       {"schema": self.cfg.target_schema, "table": self.cfg.target_name})
        return {row[0]: target_type(*row[1:]) for row in rows}

    def _publish(self, values: Mapping[str, float] | None = None) -> None:
        try:
            self.ctx.metrics.publish(self.cfg.key, metric_values(self.result) if values is None else values)
        except Exception as exc:  # metrics must not turn a good load into a failure
            self.log.warning("step=metrics error=%s", REDACTOR.clean(f"{type(exc).__name__}: {exc}"))


def run_tables(tables: Sequence[TableConfig], ctx: RunContext) -> list[TableResult]:
    """Run every table, ``ctx.args.parallelism`` at a time; one failing does not stop the others."""
    wh = ctx.warehouse()
    try:
        # Schemas are created once, up front: concurrent CREATE SCHEMA from parallel tables can conflict.
        for schema in sorted({ctx.args.state_schema, *(t.target_schema for t in tables)}):
            wh.execute(create_schema_sql(ctx.snowflake.database, schema))
        wh.execute(create_state_table_sql(ctx.state_table))
        wh.execute(create_lease_table_sql(ctx.lease_table))
        wh.execute(create_history_table_sql(ctx.history_table))
    finally:
        wh.close()
    ctx.leases.start()
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(ctx.args.parallelism, len(tables)))) as pool:
            return list(pool.map(lambda cfg: Table(cfg, ctx).run(), tables))
    finally:
        ctx.leases.stop()
        ctx.connections.close_all()


def dry_run_tables(tables: Sequence[TableConfig], ctx: RunContext) -> list[tuple[TableResult, TablePlan | None]]:
    """--DRY_RUN: every table's plan, from reads only. Nothing is created, staged, leased or published."""
    def plan(cfg: TableConfig) -> tuple[TableResult, TablePlan | None]:
        t = Table(cfg, ctx)
        return t.result, t.dry_run()
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(ctx.args.parallelism, len(tables)))) as pool:
            return list(pool.map(plan, tables))
    finally:
        ctx.connections.close_all()


def load_registry(args: JobArgs, read_s3: Callable[[str, str], bytes] | None = None) -> Any:
    """The TABLES dict: from --CONFIG (JSON, local path or s3:// URI) or from config.py."""
    if not args.config_path:
        try:
            import config
        except ModuleNotFoundError as exc:
            if exc.name != "config":
                raise
            raise ConfigError(["config.py cannot be imported: ship it with the job (Glue: --extra-py-files "
                               "s3://<bucket>/<path>/config.py, see docs/GLUE.md) or pass --CONFIG <JSON file>"]
                              ) from None
        return config.TABLES
    path = args.config_path
    try:
        if path.startswith("s3://"):
            bucket, _, key = path[5:].partition("/")
            text = read_s3(bucket, key).decode("utf-8") if read_s3 else ""
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"--CONFIG {path} cannot be read: {exc}"]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([f"--CONFIG {path} is not valid JSON ({exc.msg}, line {exc.lineno})"]) from None
    except Exception as exc:  # S3 client errors
        raise ConfigError([f"--CONFIG {path} cannot be read: {type(exc).__name__}"]) from None
    return data.get("TABLES", data) if isinstance(data, dict) else data


def plan_run(args: JobArgs, registry: Any) -> list[TableConfig]:
    """Validate everything the run depends on, before anything runs."""
    tables = validate_config(registry, args.groups.keys())
    tables = apply_overrides(tables, parse_obj(args.obj, tables.keys()))
    return list(select_tables(tables, args.tables).values())


def on_glue(environ: Mapping[str, str] | None = None, argv: Sequence[str] = ()) -> bool:
    """Does this process run as an AWS Glue job? Glue passes --JOB_RUN_ID to every run's script (one
    of awsglue 5.0's Job.id_params); GLUE_VERSION in the environment counts too (reported for Glue
    5.0 job environments, not documented by AWS); see docs/GLUE.md."""
    env = os.environ if environ is None else environ
    return bool(env.get("GLUE_VERSION")) or any(a == "--JOB_RUN_ID" or a.startswith("--JOB_RUN_ID=") for a in argv)


def local_spark_options(environ: Mapping[str, str]) -> dict[str, str]:
    """The Spark options the local stack asks for through its environment (``local.stack env``), and
    nothing else: on Glue none of these variables exist, and Glue's own JVM and S3 settings stay.

    ``ETL_SPARK_JARS``: JDBC drivers and S3A (s3:// through S3A, no _SUCCESS files);
    ``ETL_SPARK_JAVA_OPTIONS``: driver JVM options (UTC, the class-data sharing archive);
    ``AWS_ENDPOINT_URL(_S3)``: S3A pointed at a local S3 (path-style).
    """
    options: dict[str, str] = {}
    java_options = environ.get("ETL_SPARK_JAVA_OPTIONS", "").strip()
    if java_options:
        options["spark.driver.extraJavaOptions"] = java_options
    jars = environ.get("ETL_SPARK_JARS")
    if jars:
        options.update({"spark.jars": jars,
                        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
                        "spark.hadoop.fs.s3a.aws.credentials.provider":
                            "com.amazonaws.auth.EnvironmentVariableCredentialsProvider",
                        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false"})
        endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options.update({"spark.hadoop.fs.s3a.endpoint": endpoint,
                            "spark.hadoop.fs.s3a.path.style.access": "true",
                            "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https")).lower()})
    return options


def spark_session(app_name: str, glue: bool | None = None) -> tuple[Any, Any]:
    """(SparkSession, GlueContext or None). The only place that knows where it runs.

    On Glue (``on_glue``) the session comes from GlueContext; if GlueContext cannot start there,
    that is logged and the job goes on with the plain session Glue started. Elsewhere a session
    is built with ``local_spark_options`` only: no JVM option is set unless the local stack asks.
    """
    from pyspark.sql import SparkSession

    glue = on_glue() if glue is None else glue
    context = None
    if glue:
        from pyspark import SparkContext

        sc = SparkContext.getOrCreate()
        try:
            from awsglue.context import GlueContext
            context = GlueContext(sc)
            spark = context.spark_session
        except Exception as exc:
            log.error("step=setup GlueContext cannot start on Glue (%s): going on with a plain SparkSession, "
                      "without Job.init/commit", REDACTOR.clean(str(exc))[:300])
            spark = SparkSession.builder.getOrCreate()
    else:
        builder = SparkSession.builder.appName(app_name).config("spark.ui.showConsoleProgress", "false")
        for key, value in local_spark_options(os.environ).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    # Runtime SQL settings (also applied when Glue already created the session):
    # UTC end to end, and CHAR(n)/VARCHAR(n) read as the source's exact strings (Spark would
    # otherwise pad CHAR values, e.g. a MySQL ENUM reported as CHAR(8): 'gold' -> 'gold    ').
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.legacy.charVarcharAsString", "true")
    zone = spark.sparkContext._jvm.java.util.TimeZone.getDefault().getID()
    log.info("step=setup glue=%s jvm_timezone=%s", glue, zone)
    return spark, context


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter("%(asctime)sZ %(levelname)s %(name)s %(message)s")
    formatter.converter = time.gmtime          # log times in UTC, whatever the machine's zone
    handler.setFormatter(formatter)
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("py4j", "botocore", "boto3", "urllib3", "snowflake", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class JobFailed(EtlError):
    """Ends a run on Glue that did not succeed: Glue marks the run FAILED and shows this message as
    its ErrorMessage (workflow triggers and alarms react to FAILED). Locally the exit code says it."""


def failure_message(results: Sequence[TableResult], limit: int = 300) -> str:
    """One line naming every table that did not load and why (errors cut at ``limit`` characters)."""
    bad = [r for r in results if r.status != "OK"]

    def why(r: TableResult) -> str:     # a DRIFT table loaded, and VERIFY found the target differs
        return r.error or (verify_summary(r.verified) if r.verified is not None else "no error recorded")

    items = "; ".join(f"{r.key} {r.status}: {why(r)[:limit]}" for r in bad)
    return f"{len(bad)} of {len(results)} table(s) did not load: {items}"


def run(argv: Sequence[str]) -> tuple[int, str]:
    """Run the job: (exit code, failure message). 0 only when every table succeeded; 2 when the
    configuration or arguments are wrong (nothing ran); 1 otherwise. Once the arguments are read,
    every outcome ends with the JSON summary line (``report_run``)."""
    import boto3

    setup_logging()
    started = dt.datetime.now(dt.UTC)
    try:
        args = parse_args(argv)
    except ConfigError as exc:
        log.error("step=config %s", exc)
        print(f"\nNothing ran: {exc}", file=sys.stderr)
        return 2, f"Nothing ran: {exc}"
    s3 = boto3.client("s3")
    code, message, results = run_job(args, argv, started, s3)
    return report_run(args, started, code, message, results, s3)


def run_job(args: JobArgs, argv: Sequence[str], started: dt.datetime, s3: Any
            ) -> tuple[int, str, list[TableResult]]:
    """Everything after the arguments: (exit code, failure message, the tables' results)."""
    import boto3

    try:
        tables = plan_run(args, load_registry(args, lambda b, k: s3.get_object(Bucket=b, Key=k)["Body"].read()))
    except ConfigError as exc:
        log.error("step=config %s", exc)
        print(f"\nNothing ran: {exc}", file=sys.stderr)
        return 2, f"Nothing ran: {exc}", []
    secrets = SecretStore(boto3.client("ssm"))
    try:
        sf = snowflake_settings(secrets.get(args.snowflake_path), args.snowflake_path)
        bucket = args.staging_bucket or sf.staging_bucket
        if not bucket:
            raise EtlError("no staging bucket: pass --STAGING_BUCKET or set 'staging_bucket' in the "
                           f"Snowflake SSM parameter {args.snowflake_path}")
        connect_snowflake(sf).close()      # fail fast, before Spark starts, on bad credentials
    except EtlError as exc:
        log.error("step=setup %s", REDACTOR.clean(str(exc)))
        print(f"\nNothing ran: {REDACTOR.clean(str(exc))}", file=sys.stderr)
        return 1, f"Nothing ran: {REDACTOR.clean(str(exc))}", []
    spark, glue = spark_session(args.job_name, glue=on_glue(argv=argv))
    job = None
    if glue is not None:
        from awsglue.job import Job
        job = Job(glue)
        job.init(args.job_name, args.resolved)
    ctx = RunContext(args=args, run_started=started, spark=spark, secrets=secrets,
                     staging=S3Staging(s3, bucket), warehouse=lambda: connect_snowflake(sf), snowflake=sf,
                     metrics=Metrics(boto3.client("cloudwatch"), args.job_name),
                     cores=spark.sparkContext.defaultParallelism)
    log.info("step=run run_id=%s tables=%d parallelism=%d", ctx.run_id, len(tables), args.parallelism)
    if args.dry_run:
        return dry_run(tables, ctx, s3)
    try:
        results = run_tables(tables, ctx)
    except EtlError as exc:             # the job's schemas or state table could not be prepared
        log.error("step=setup %s", exc)
        print(f"\nNothing ran: {exc}", file=sys.stderr)
        return 1, f"Nothing ran: {exc}", []
    print("\n" + summary_table(results), flush=True)
    if job is not None:
        job.commit()
    if all(r.status == "OK" for r in results):
        return 0, "", results
    return 1, REDACTOR.clean(failure_message(results)), results


def report_run(args: JobArgs, started: dt.datetime, code: int, message: str, results: Sequence[TableResult],
               s3: Any) -> tuple[int, str]:
    """The JSON summary: written to --SUMMARY_OUTPUT (whatever the outcome, so a reader never finds
    an older run's there unnoticed), then printed as the last line on stdout. A summary that cannot
    be written makes the run fail (exit 1), and the printed line says so."""
    run_id = run_identifier(args.job_name, started)
    nothing_ran = message if message.startswith("Nothing ran:") else None
    line = summary_json(results, run_id, args.job_name, code, nothing_ran, REDACTOR.clean)
    if args.summary_output:
        try:
            write_output(args.summary_output, line + "\n", s3)
            log.info("step=summary written=%s", args.summary_output)
        except EtlError as exc:
            problem = REDACTOR.clean(f"--SUMMARY_OUTPUT: {exc}")
            log.error("step=summary %s", problem)
            print(f"\n{problem}", file=sys.stderr)
            code, message = max(code, 1), "; ".join(m for m in (message, problem) if m)
            line = summary_json(results, run_id, args.job_name, code, nothing_ran or problem, REDACTOR.clean)
    sys.stdout.write(line + "\n")      # one write: no log line can land inside it
    sys.stdout.flush()
    return code, message


def dry_run(tables: Sequence[TableConfig], ctx: RunContext, s3_client: Any
            ) -> tuple[int, str, list[TableResult]]:
    """Print each table's plan (a block per table, then one JSON document; also to --PLAN_OUTPUT).
    Exit code 0 when every table could be planned, else 1; the run summary follows (``report_run``)."""
    planned = dry_run_tables(tables, ctx)
    results = [r for r, _ in planned]
    for r, p in planned:
        print("\n" + (p.describe() if p else f"== {r.key}: cannot be planned: {r.error}"))
    docs = [p.as_dict() if p else {"table": r.key, "error": r.error} for r, p in planned]
    doc = REDACTOR.clean(json.dumps({"run_id": ctx.run_id, "dry_run": True, "tables": docs}, default=str))
    print(doc, flush=True)
    problems = [f"{r.key}: {(r.error or '')[:300]}" for r in results if r.status != "PLANNED"]
    if ctx.args.plan_output:
        try:
            write_output(ctx.args.plan_output, doc + "\n", s3_client)
        except EtlError as exc:
            problems.append(REDACTOR.clean(f"--PLAN_OUTPUT: {exc}"))
            log.error("step=plan %s", problems[-1])
    ok = sum(r.status == "PLANNED" for r in results)
    print(f"{ok}/{len(results)} tables planned (dry run: nothing was written)", flush=True)
    if not problems:
        return 0, "", results
    return 1, REDACTOR.clean(f"dry run: {len(results) - ok} of {len(results)} table(s) cannot be planned: "
                             + "; ".join(problems)), results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; the exit code is 0 only when every table succeeded (2: nothing ran, bad input)."""
    return run(list(sys.argv if argv is None else argv))[0]


def script(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """The script's entry point. A successful run simply returns. Otherwise, on Glue, JobFailed
    (the run is FAILED with the failed tables as its ErrorMessage); elsewhere exit code 1 or 2."""
    argv = list(sys.argv if argv is None else argv)
    code, message = run(argv)
    if code == 0:
        return
    if on_glue(environ, argv):
        raise JobFailed(message)
    sys.exit(code)


if __name__ == "__main__":
    script()
