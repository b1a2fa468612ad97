"""deploy/template.yaml and `python -m deploy`, offline: cfn-lint bites, the alarms and dashboard
use the job's own metrics and dimensions, the role is least privilege, errors are clear."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

import glue_etl_job as job_module
from deploy import __main__ as deploy_cli
from deploy import deployer

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_TEXT = deployer.TEMPLATE.read_text()
# The Metrics Insights queries of the alarms and the dashboard (after Fn::Sub; quotes unescaped).
EXPRESSION = re.compile(r"SELECT (?P<fn>MAX|MIN)\((?P<metric>\w+)\) FROM SCHEMA\((?P<namespace>\w+), "
                        r"(?P<dims>[^)]*)\) WHERE JobName = '(?P<job>[^']+)' GROUP BY \"Table\"")


# ----- helpers shared with tests/e2e/test_deploy.py ------------------------------------


def published_metrics() -> set[str]:
    """The metric names the job publishes (metric_values' keys, and VERIFY's and REPAIR's)."""
    return set(job_module.metric_values(job_module.TableResult(key="s.t", mode="FULL", target="T", status="OK"))) \
        | set(job_module.RECONCILE_METRICS)


def published_dimensions() -> set[str]:
    """The dimension names Metrics.publish writes, read from a call with a fake CloudWatch client."""
    calls = []

    class FakeCloudWatch:
        def put_metric_data(self, **kwargs):
            calls.append(kwargs)

    job_module.Metrics(FakeCloudWatch(), "job").publish("s.t", {"Failure": 1})
    (call,) = calls
    assert call["Namespace"] == job_module.Metrics.NAMESPACE
    return {d["Name"] for datum in call["MetricData"] for d in datum["Dimensions"]}


def pinned_connector() -> str:
    pins = [line.strip() for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
            if line.startswith("snowflake-connector-python==")]
    assert len(pins) == 1
    return pins[0]


def template() -> dict:
    return deployer.load_template(deployer.TEMPLATE)


def template_statements() -> dict[str, dict]:
    (policy,) = template()["Resources"]["JobRole"]["Properties"]["Policies"]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def _template_expressions() -> list[str]:
    """Every Metrics Insights query in the template, with ${JobName} and the JSON escapes resolved."""
    found = re.findall(r'"(SELECT .*?GROUP BY .*?)"\n', TEMPLATE_TEXT)
    return [q.replace('\\\\\\"', '"').replace('\\"', '"').replace("${JobName}", "job") for q in found]


# ----- cfn-lint ------------------------------------------------------------------------


def test_template_passes_cfn_lint():
    deployer.lint(deployer.TEMPLATE)      # raises with the findings otherwise


BROKEN = {
    "wrong property name": ('GlueVersion: "5.0"', 'GlueVerison: "5.0"', "E3002"),
    "wrong property type": ("MaxRetries: 0", "MaxRetries: [0]", "E3012"),
    "missing required property": ("      Role: !GetAtt JobRole.Arn\n", "", "E3003"),
    "bad Ref": ("JobName: !Ref Job\n", "JobName: !Ref NoSuchJob\n", "E1020"),
    "bad trigger type": ("Type: SCHEDULED", "Type: NIGHTLY", "E3030"),
    "bad GetAtt": ("Role: !GetAtt JobRole.Arn", "Role: !GetAtt JobRole.Nope", "E1010"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_cfn_lint_fails_on_a_broken_copy(case, tmp_path):
    old, new, rule = BROKEN[case]
    assert old in TEMPLATE_TEXT, old
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE_TEXT.replace(old, new, 1))
    with pytest.raises(deployer.InputError) as err:
        deployer.lint(broken)
    assert rule in str(err.value) and str(broken) in str(err.value)


def test_make_deploy_check_passes_and_fails_on_a_broken_copy(tmp_path):
    ok = subprocess.run(["make", "-s", "deploy-check"], cwd=ROOT, capture_output=True, text=True, check=False,
                        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "cfn-lint: " in ok.stdout and " OK" in ok.stdout
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE_TEXT.replace('GlueVersion: "5.0"', 'GlueVerison: "5.0"'))
    bad = subprocess.run(["make", "-s", "deploy-check", f"DEPLOY_ARGS=--template {broken}"], cwd=ROOT,
                         capture_output=True, text=True, check=False,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert bad.returncode != 0
    assert "E3002" in bad.stderr and "GlueVerison" in bad.stderr


# ----- the template against glue_etl_job.py --------------------------------------------


def test_alarms_and_dashboard_use_the_jobs_namespace_metrics_and_dimensions():
    queries = _template_expressions()
    assert len(queries) == 3 + 14            # three alarms, fourteen dashboard widgets
    charted = set()
    for query in queries:
        m = EXPRESSION.fullmatch(query)
        assert m, query
        assert m["namespace"] == job_module.Metrics.NAMESPACE
        assert {d.strip().strip('"') for d in m["dims"].split(",")} == published_dimensions() == {"JobName", "Table"}
        assert m["metric"] in published_metrics()
        charted.add(m["metric"])
    assert charted == published_metrics()
    alarms = {name: r for name, r in template()["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    alarmed = {EXPRESSION.search(r["Properties"]["Metrics"][0]["Expression"].replace("${JobName}", "job"))["metric"]
               for r in alarms.values()}
    assert alarmed == {"Failure", "RowDifference"}


def test_job_arguments_are_the_ones_parse_args_knows():
    args = template()["Resources"]["Job"]["Properties"]["DefaultArguments"]
    own = {k[2:] for k in args if k[2:].isupper()}
    known = set(job_module.REQUIRED_ARGS) | set(job_module.OPTIONAL_ARGS)
    assert own <= known, own - known
    assert own == {"SNOWFLAKE", "AFFILIATE", "PROGRAM360", "OPS", "OBJ", "TABLES", "PARALLELISM", "STAGING_BUCKET"}
    assert "--JOB_NAME" not in args               # Glue passes it itself
    assert template()["Parameters"]["PythonModules"]["Default"] == pinned_connector()
    assert args["--job-bookmark-option"] == "job-bookmark-disable"
    assert template()["Parameters"]["ExtraJars"]["Default"] == ""


def test_role_is_least_privilege():
    statements = template_statements()
    for sid, s in statements.items():
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions), sid
        if s["Resource"] == "*":          # PutMetricData has no resource: each namespace by condition
            assert s["Action"] == "cloudwatch:PutMetricData" and list(s["Condition"]) == ["StringEquals"], sid
    assert statements["PublishJobMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": job_module.Metrics.NAMESPACE}}
    assert statements["PublishGlueMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Glue"}}
    assert statements["ReadSecrets"]["Action"] == "ssm:GetParameter"
    assert statements["ReadSecrets"]["Resource"].endswith(":parameter${SsmPrefix}/*")
    assert statements["DecryptSecretsThroughSsm"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "ssm.${AWS::Region}.amazonaws.com"}}
    bucket = template()["Resources"]["StagingBucketResource"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    rules = {r["Prefix"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert set(rules) == {"${JobName}/", "glue-temp/${JobName}/"}      # the job stages below <JobName>/
    assert job_module.staging_prefix("J", "db", "s.t", dt.datetime(2026, 1, 1)).startswith("J/")


# ----- parameters, artifacts, errors ----------------------------------------------------


def test_check_parameters_names_each_problem():
    problems = deployer.check_parameters(template(), {"SsmPrefix": "etl/no-slash", "WorkerType": "G.3X",
                                                      "NumberOfWorkers": "1", "Nope": "x"})
    text = "\n".join(problems)
    assert "unknown parameter 'Nope'" in text
    assert "parameter SsmPrefix='etl/no-slash' does not match" in text
    assert "parameter WorkerType='G.3X' is not one of" in text
    assert "parameter NumberOfWorkers=1 is below 2" in text
    assert "parameter SnowflakePath is required" in text and "parameter ArtifactBucket is required" in text


def test_artifact_version_follows_the_content(tmp_path):
    a, b = tmp_path / "glue_etl_job.py", tmp_path / "config.py"
    a.write_text("x = 1\n")
    b.write_text("TABLES = {}\n")
    first = deployer.artifact_version((a, b))
    assert first == deployer.artifact_version((a, b)) and re.fullmatch(r"[0-9a-f]{16}", first)
    b.write_text("TABLES = {'a.b': {}}\n")
    assert deployer.artifact_version((a, b)) != first


def _client(name):
    return boto3.client(name, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_upload_names_a_missing_permission():
    s3 = _client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", service_error_code="403", service_message="Forbidden",
                              http_status_code=403)
        with pytest.raises(deployer.DeployError) as err:
            deployer.upload_artifacts(s3, "art", "glue-etl", (deployer.SCRIPT,))
    assert "missing permission: s3:ListBucket on art was denied" in str(err.value)
    assert "needs s3:ListBucket on arn:aws:s3:::art" in str(err.value)


def test_upload_names_a_missing_bucket():
    s3 = _client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
        with pytest.raises(deployer.DeployError, match=r"artifact bucket 'art' does not exist: create it"):
            deployer.upload_artifacts(s3, "art", "glue-etl", (deployer.SCRIPT,))


def test_a_failed_stack_shows_the_resource_and_the_reason():
    cfn = _client("cloudformation")
    now = dt.datetime.now(dt.UTC)
    stack_id = "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"
    event = {"StackId": stack_id, "EventId": "1", "StackName": "s", "Timestamp": now}
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", {"Stacks": [{"StackName": "s", "StackId": stack_id, "CreationTime": now,
                                                          "StackStatus": "ROLLBACK_COMPLETE"}]})
        stub.add_response("describe_stack_events", {"StackEvents": [
            {**event, "EventId": "3", "LogicalResourceId": "s", "ResourceType": "AWS::CloudFormation::Stack",
             "ResourceStatus": "ROLLBACK_COMPLETE"},
            {**event, "EventId": "2", "LogicalResourceId": "Job", "ResourceType": "AWS::Glue::Job",
             "ResourceStatus": "CREATE_FAILED",
             "ResourceStatusReason": "Resource handler returned message: \"Invalid GlueVersion\""}]})
        with pytest.raises(deployer.DeployError) as err:
            deployer.StackDeployer(cfn, say=lambda _: None)._wait_stack(stack_id, "CREATE", now.timestamp(), 60, 0)
    assert str(err.value) == ('stack ROLLBACK_COMPLETE:\n  Job (AWS::Glue::Job): CREATE_FAILED: '
                              'Resource handler returned message: "Invalid GlueVersion"')


def test_cli_rejects_bad_input_before_touching_aws(capsys):
    assert deploy_cli.main(["--param", "oops"]) == 2
    assert "--param 'oops': expected KEY=VALUE" in capsys.readouterr().err
    assert deploy_cli.main(["--param", "ArtifactVersion=0123456789abcdef", "--artifact-bucket", "b"]) == 2
    assert "ArtifactVersion are set by the deploy itself" in capsys.readouterr().err
    assert deploy_cli.main(["--check", "--param", "WorkerType=G.3X"]) == 2
    assert "parameter WorkerType='G.3X' is not one of" in capsys.readouterr().err
