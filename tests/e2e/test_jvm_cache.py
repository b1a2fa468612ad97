"""The local stack's class-data sharing archive (local/jvm_cache.py) is really used by the driver JVM.

A JVM that finds its archive stale ignores it without failing, so only a look at what the JVM
mapped tells whether the faster start happens.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e.helpers import ROOT

PROBE = """
import sys
import glue_etl_job as job
spark, _ = job.spark_session("jvm-cache-probe")
pid = spark._jvm.java.lang.ProcessHandle.current().pid()
maps = open(f"/proc/{pid}/maps").read()
print("mapped" if sys.argv[1] in maps else "not mapped")
spark.stop()
"""


def _probe(env: dict, archive: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE, archive], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_driver_jvm_maps_the_stacks_class_archive(stack):
    options = stack.get("ETL_SPARK_JAVA_OPTIONS", "")
    assert options.startswith("-XX:SharedArchiveFile="), "`local.stack up` built no archive: see .state/logs/"
    archive = options.split()[0].split("=", 1)[1]
    assert os.path.getsize(archive) > 10_000_000
    env = {**os.environ, **stack}
    assert _probe(env, archive) == "mapped"
    without = {k: v for k, v in env.items() if k != "ETL_SPARK_JAVA_OPTIONS"}
    assert _probe(without, archive) == "not mapped"
