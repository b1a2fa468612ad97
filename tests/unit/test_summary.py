"""Issue 16 item 6 and its arguments: --DRY_RUN / --PLAN_OUTPUT / --SUMMARY_OUTPUT parsed strictly,
write_output (local file or S3 object), the run summary as one JSON line (summary_json,
report_run). No local stack: moto runs in-process."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from awsglue.utils import getResolvedOptions

import glue_etl_job as g

BASE = ["glue_etl_job.py", "--JOB_NAME", "etl-prod", "--SNOWFLAKE", "/etl/prod/snowflake"]


def parse(*extra: str) -> g.JobArgs:
    return g.parse_args([*BASE, *extra], resolve=getResolvedOptions)


def problems(*extra: str) -> list[str]:
    with pytest.raises(g.ConfigError) as info:
        parse(*extra)
    return info.value.problems


# ----- arguments ----------------------------------------------------------------------


def test_the_new_arguments_default_to_a_normal_run():
    args = parse()
    assert (args.dry_run, args.plan_output, args.summary_output) == (False, None, None)


def test_dry_run_takes_true_or_false_and_nothing_else():
    assert parse("--DRY_RUN", "true").dry_run is True
    assert parse("--DRY_RUN", "TRUE").dry_run is True
    assert parse("--DRY_RUN", "false").dry_run is False
    assert parse("--DRY_RUN=1").dry_run is True
    # A misspelt value would otherwise be a real load where a dry run was wanted.
    assert problems("--DRY_RUN", "ture") == ["--DRY_RUN must be true or false, got 'ture'"]
    assert problems("--DRY_RUN") == ["--DRY_RUN needs a value, but it is the last word (a value may not start "
                                     "with '-')"]


def test_the_new_names_are_strict_like_the_others():
    assert problems("--DRY_RUNS", "true") == ["unknown runtime argument --DRY_RUNS (did you mean --DRY_RUN?)"]
    assert problems("--dry_run", "true") == ["unknown runtime argument --dry_run (did you mean --DRY_RUN?)"]
    assert problems("--SUMMARY", "/tmp/s.json") == [
        "unknown runtime argument --SUMMARY (did you mean --SUMMARY_OUTPUT?)"]


def test_plan_output_needs_a_dry_run():
    args = parse("--DRY_RUN", "true", "--PLAN_OUTPUT", "s3://etl-artifacts/plans/nightly.json")
    assert (args.dry_run, args.plan_output) == (True, "s3://etl-artifacts/plans/nightly.json")
    fix = "--PLAN_OUTPUT is written by a dry run only: add --DRY_RUN true, or leave --PLAN_OUTPUT out"
    assert problems("--PLAN_OUTPUT", "/tmp/plan.json") == [fix]
    assert problems("--DRY_RUN", "false", "--PLAN_OUTPUT", "/tmp/plan.json") == [fix]


def test_summary_output_is_for_a_run_that_loads():
    assert parse("--SUMMARY_OUTPUT", "/tmp/run/summary.json").summary_output == "/tmp/run/summary.json"
    assert parse("--SUMMARY_OUTPUT", "s3://etl.runs-1/a/b.json").summary_output == "s3://etl.runs-1/a/b.json"
    assert problems("--DRY_RUN", "true", "--SUMMARY_OUTPUT", "s3://etl-runs/s.json") == [
        "--SUMMARY_OUTPUT is written by a run that loads; a dry run loads nothing: use --PLAN_OUTPUT for its "
        "plan, or leave --SUMMARY_OUTPUT out"]


@pytest.mark.parametrize("uri", ["s3://", "s3://etl-runs", "s3://etl-runs/", "s3://etl-runs/folder/",
                                 "s3://Etl-Runs/s.json", "s3://ab/s.json", "s3://etl..runs/s.json",
                                 "s3://-etl/s.json", "s3://etl_runs/s.json"])
def test_an_s3_output_must_name_an_object_in_a_valid_bucket(uri):
    assert problems("--SUMMARY_OUTPUT", uri) == [
        f"--SUMMARY_OUTPUT {uri!r} must be s3://<bucket>/<key>: a valid bucket name (3-63 characters: a-z, 0-9, "
        f"'.', '-') and an object key that does not end with '/'"]


def test_other_outputs_are_refused_with_what_can_be_written():
    assert problems("--SUMMARY_OUTPUT", "s3a://etl-runs/s.json") == [
        "--SUMMARY_OUTPUT 's3a://etl-runs/s.json': only a local path or an s3://<bucket>/<key> URI can be written"]
    assert problems("--DRY_RUN", "true", "--PLAN_OUTPUT", "https://example.com/p") == [
        "--PLAN_OUTPUT 'https://example.com/p': only a local path or an s3://<bucket>/<key> URI can be written"]
    assert problems("--SUMMARY_OUTPUT", "/tmp/runs/") == ["--SUMMARY_OUTPUT '/tmp/runs/' must name a file, "
                                                          "not a directory"]


def test_s3_location():
    assert g.s3_location("s3://etl-runs/2026/12/summary.json") == ("etl-runs", "2026/12/summary.json")
    assert g.s3_location("s3://etl-runs/") is None and g.s3_location("/tmp/x") is None


# ----- write_output -------------------------------------------------------------------


@pytest.fixture
def s3(moto_s3):
    moto_s3.create_bucket(Bucket="etl-runs")
    return moto_s3


def test_write_output_to_a_local_file_replaces_it_whole(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("an older run's summary, longer than the new one\n")
    g.write_output(str(path), '{"a": "\u00e9"}\n', None)
    assert path.read_bytes() == '{"a": "\u00e9"}\n'.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]       # no temporary file left


def test_write_output_names_the_path_it_cannot_write(tmp_path):
    where = str(tmp_path / "missing-dir" / "summary.json")
    with pytest.raises(g.EtlError, match=rf"^cannot write {where}: FileNotFoundError: "):
        g.write_output(where, "x", None)
    assert list(tmp_path.iterdir()) == []


def test_write_output_to_s3(s3):
    g.write_output("s3://etl-runs/nightly/summary.json", '{"ok": true}\n', s3)
    assert s3.get_object(Bucket="etl-runs", Key="nightly/summary.json")["Body"].read() == b'{"ok": true}\n'


def test_write_output_to_a_missing_bucket_or_a_bad_uri(s3):
    with pytest.raises(g.EtlError, match=r"^cannot write s3://etl-nope/s.json: NoSuchBucket: "):
        g.write_output("s3://etl-nope/s.json", "x", s3)
    with pytest.raises(g.EtlError, match=r"is not an s3://<bucket>/<key> object URI"):
        g.write_output("s3://etl-runs/", "x", s3)


# ----- summary_json -------------------------------------------------------------------


def results() -> list[g.TableResult]:
    ok = g.TableResult("sales.orders", "INCREMENTAL", "RAW.ORDERS", "OK", 120, 7, 120, 3, 4, 2.34567)
    failed = g.TableResult("ops.tickets", "FULL", "RAW.TICKETS", source_rows=50, seconds=0.5,
                           error="ops.tickets: cannot connect as etl with password s3cr\"et!\nretry later")
    drift = g.TableResult("sales.events", "UPSERT", "RAW.EVENTS", "DRIFT", 10, 10, 11, 10, 0, 1.0,
                          verified=g.Drift(missing=[4], extra=[11, 12], rows=10, changed_since_load=1),
                          repaired=g.Repaired(3, 1, 1, g.Drift(extra=[12])))
    return [ok, failed, drift]


def test_summary_json_is_one_line_with_every_number():
    redactor = g.Redactor()
    redactor.add('s3cr"et!')
    line = g.summary_json(results(), "etl-prod-20261202T010203000004Z", "etl-prod", 1, clean=redactor.clean)
    assert "\n" not in line and line.isascii()
    doc = json.loads(line)
    assert list(doc)[0] == "type" and doc["type"] == g.SUMMARY_TYPE == "etl_run_summary"
    assert {k: v for k, v in doc.items() if k != "tables"} == {
        "type": "etl_run_summary", "version": 1, "run_id": "etl-prod-20261202T010203000004Z", "job": "etl-prod",
        "status": "FAILED", "exit_code": 1, "tables_ok": 1, "tables_total": 3, "error": None}
    assert doc["tables"] == [
        {"key": "sales.orders", "target": "RAW.ORDERS", "mode": "INCREMENTAL", "status": "OK",
         "rows": {"source": 120, "read": 7, "inserted": 3, "updated": 4, "deleted": None, "target": 120},
         "difference": 0, "seconds": 2.346, "error": None, "verified": None, "repair": None},
        {"key": "ops.tickets", "target": "RAW.TICKETS", "mode": "FULL", "status": "FAILED",
         "rows": {"source": 50, "read": None, "inserted": None, "updated": None, "deleted": None, "target": None},
         "difference": None, "seconds": 0.5,
         "error": "ops.tickets: cannot connect as etl with password ***\nretry later", "verified": None,
         "repair": None},
        {"key": "sales.events", "target": "RAW.EVENTS", "mode": "UPSERT", "status": "DRIFT",
         "rows": {"source": 10, "read": 10, "inserted": 10, "updated": 0, "deleted": None, "target": 11},
         "difference": -1, "seconds": 1.0, "error": None,
         "verified": {"rows": 10, "mismatched": 3, "missing": 1, "extra": 2, "different": 0,
                      "changed_since_load": 1},
         "repair": {"keys": 3, "reloaded": 1, "deleted": 1, "remaining": 1}}]
    assert "s3cr" not in line          # redacted before encoding: the escaped form \" cannot slip through


def test_summary_json_of_a_run_where_nothing_ran():
    doc = json.loads(g.summary_json([], "etl-prod-1", "etl-prod", 2, "Nothing ran: --TABLES names 'x'"))
    assert (doc["status"], doc["exit_code"], doc["tables_total"], doc["tables"], doc["error"]) == (
        "FAILED", 2, 0, [], "Nothing ran: --TABLES names 'x'")
    assert json.loads(g.summary_json(results()[:1], "r", "j", 0))["status"] == "OK"


# ----- report_run: where the line goes ------------------------------------------------

STARTED = dt.datetime(2026, 12, 2, 1, 2, 3, 4, tzinfo=dt.UTC)


def test_report_run_writes_the_summary_and_prints_it_as_the_last_line(tmp_path, capsys):
    path = tmp_path / "summary.json"
    args = parse("--SUMMARY_OUTPUT", str(path))
    code, message = g.report_run(args, STARTED, 1, "1 of 3 table(s) did not load: ...", results(), None)
    assert (code, message) == (1, "1 of 3 table(s) did not load: ...")
    last = capsys.readouterr().out.splitlines()[-1]
    assert path.read_text() == last + "\n"
    doc = json.loads(last)
    assert doc["run_id"] == "etl-prod-20261202T010203000004Z" and doc["error"] is None
    assert [t["status"] for t in doc["tables"]] == ["OK", "FAILED", "DRIFT"]


def test_a_summary_that_cannot_be_written_fails_the_run(tmp_path, capsys):
    where = str(tmp_path / "gone" / "summary.json")
    code, message = g.report_run(parse("--SUMMARY_OUTPUT", where), STARTED, 0, "", results()[:1], None)
    out, err = capsys.readouterr()
    assert code == 1 and message.startswith(f"--SUMMARY_OUTPUT: cannot write {where}: FileNotFoundError")
    assert message in err
    doc = json.loads(out.splitlines()[-1])
    assert (doc["status"], doc["exit_code"], doc["error"]) == ("FAILED", 1, message)
    assert doc["tables"][0]["status"] == "OK"      # the table did load; the summary file is what is missing


def test_report_run_when_nothing_ran(capsys):
    code, _ = g.report_run(parse(), STARTED, 2, "Nothing ran: bad config", [], None)
    doc = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 2 and (doc["exit_code"], doc["error"]) == (2, "Nothing ran: bad config")
