"""`python -m deploy` end to end against the local moto server (create, update, no-change update).

moto's CloudFormation does not create Glue jobs/workflows/triggers or alarms by itself; the stack's
moto server loads local/moto_cfn.py, which creates them through moto's own Glue and CloudWatch
backends, so everything below is read back through the ordinary AWS APIs. moto does not enforce
IAM: the role's statements are checked as stored and as written in the template.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import glue_etl_job as job_module
from deploy import __main__ as deploy_cli
from deploy import deployer
from local import stack as local_stack
from tests.unit.test_deploy import (
    EXPRESSION,
    pinned_connector,
    published_dimensions,
    published_metrics,
    template_statements,
)

ROOT = Path(__file__).resolve().parents[2]
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def aws(stack):
    """boto3 clients for moto without retries: a 500 from the emulator fails the test at once."""
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"})

    def client(name):
        return boto3.client(name, endpoint_url=stack["AWS_ENDPOINT_URL"], region_name=local_stack.AWS_REGION,
                            aws_access_key_id=local_stack.AWS_KEY, aws_secret_access_key=local_stack.AWS_KEY,
                            config=config)

    with pytest.MonkeyPatch.context() as mp:      # the same for the clients `python -m deploy` builds
        mp.setenv("AWS_MAX_ATTEMPTS", "1")
        mp.setenv("AWS_RETRY_MODE", "standard")
        yield client


@pytest.fixture(scope="module")
def names(aws):
    suffix = uuid.uuid4().hex[:6]
    out = {"job": f"etl-deploy-{suffix}", "bucket": f"etl-artifacts-{suffix}", "downstream": f"etl-after-{suffix}"}
    aws("s3").create_bucket(Bucket=out["bucket"])
    # The conditional trigger starts this job when ours SUCCEEDED (a stand-in for downstream work).
    aws("glue").create_job(Name=out["downstream"], Role="arn:aws:iam::123456789012:role/x",
                           Command={"Name": "glueetl", "ScriptLocation": "s3://x/y.py"})
    return out


def _deploy(names, capsys, *params: str) -> tuple[int, str, str]:
    argv = ["--artifact-bucket", names["bucket"], "--poll-seconds", "0.1",
            "--param", f"JobName={names['job']}", "--param", "SsmPrefix=/etl/test",
            "--param", f"SecretsKmsKeyArn={KMS_KEY}", "--param", "SnowflakePath=/etl/test/snowflake",
            "--param", "AffiliatePath=/etl/test/affiliate", "--param", "OpsPath=/etl/test/ops",
            "--param", f"DownstreamJobName={names['downstream']}"]
    for p in params:
        argv += ["--param", p]
    rc = deploy_cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _statements(iam, role: str, policy: str) -> dict[str, dict]:
    """The inline policy's statements by Sid (boto3 decodes IAM's URL-encoded JSON document to a dict)."""
    doc = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    assert isinstance(doc, dict), doc
    return {s["Sid"]: s for s in doc["Statement"]}


def _expression_parts(expression: str) -> tuple[str, str, str, set[str], str]:
    m = EXPRESSION.fullmatch(expression)
    assert m, f"not a Metrics Insights query of the expected form: {expression}"
    dims = {d.strip().strip('"') for d in m["dims"].split(",")}
    return m["fn"], m["metric"], m["namespace"], dims, m["job"]


def test_deploy_create_update_and_read_back(aws, names, capsys):
    glue, cw, iam, s3, cfn = aws("glue"), aws("cloudwatch"), aws("iam"), aws("s3"), aws("cloudformation")
    job = names["job"]
    version = deployer.artifact_version((deployer.SCRIPT, deployer.CONFIG))

    # ---- create ------------------------------------------------------------------------------
    rc, out, err = _deploy(names, capsys)
    assert rc == 0, err
    assert "stack CREATE_COMPLETE" in out and f"stack {job}: CREATE done" in out
    stack = cfn.describe_stacks(StackName=job)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["JobName"] == job and outputs["WorkflowName"] == f"{job}-workflow"
    prefix = f"s3://{names['bucket']}/glue-etl/{version}"
    assert outputs["ScriptLocation"] == f"{prefix}/glue_etl_job.py"
    console = "https://us-east-1.console.aws.amazon.com/gluestudio/home?region=us-east-1"
    assert f"console job          {console}#/editor/job/{job}/runs" in out

    # The uploaded files are byte for byte the repository's.
    for name in ("glue_etl_job.py", "config.py"):
        body = s3.get_object(Bucket=names["bucket"], Key=f"glue-etl/{version}/{name}")["Body"].read()
        assert body == (ROOT / name).read_bytes()

    staging = outputs["StagingBucketName"]
    got = glue.get_job(JobName=job)["Job"]
    assert got["Command"] == {"Name": "glueetl", "ScriptLocation": f"{prefix}/glue_etl_job.py", "PythonVersion": "3"}
    assert (got["GlueVersion"], got["MaxRetries"], got["ExecutionProperty"], got["Timeout"]) == \
        ("5.0", 0, {"MaxConcurrentRuns": 1}, 120)
    assert (got["WorkerType"], got["NumberOfWorkers"], got["Role"]) == ("G.1X", 2, outputs["RoleArn"])
    assert got["DefaultArguments"] == {
        "--extra-py-files": f"{prefix}/config.py",
        "--additional-python-modules": pinned_connector(),
        "--job-bookmark-option": "job-bookmark-disable",
        "--TempDir": f"s3://{staging}/glue-temp/{job}/",
        "--enable-metrics": "true",
        "--enable-observability-metrics": "true",
        "--SNOWFLAKE": "/etl/test/snowflake",
        "--AFFILIATE": "/etl/test/affiliate",
        "--OPS": "/etl/test/ops",
        "--PARALLELISM": "4",
        "--STAGING_BUCKET": staging,
    }
    # The job's own argument parser (awsglue's getResolvedOptions, as on Glue) accepts them.
    argv = [f"{prefix}/glue_etl_job.py", "--JOB_NAME", job]
    for key, value in got["DefaultArguments"].items():
        argv += [key, value]
    args = job_module.parse_args(argv)
    assert (args.job_name, args.snowflake_path, args.staging_bucket, args.parallelism) == \
        (job, "/etl/test/snowflake", staging, 4)
    assert args.groups == {"AFFILIATE": "/etl/test/affiliate", "OPS": "/etl/test/ops"}

    # Trigger chain: schedule -> our job; our job SUCCEEDED -> the downstream job.
    schedule = glue.get_trigger(Name=f"{job}-schedule")["Trigger"]
    assert (schedule["Type"], schedule["Schedule"], schedule["WorkflowName"], schedule["Actions"], schedule["State"]) \
        == ("SCHEDULED", "cron(0 2 * * ? *)", f"{job}-workflow", [{"JobName": job}], "ACTIVATED")
    chained = glue.get_trigger(Name=f"{job}-on-success")["Trigger"]
    assert chained["Type"] == "CONDITIONAL" and chained["WorkflowName"] == f"{job}-workflow"
    assert chained["Predicate"] == {"Logical": "ANY", "Conditions": [
        {"LogicalOperator": "EQUALS", "JobName": job, "State": "SUCCEEDED"}]}
    assert chained["Actions"] == [{"JobName": names["downstream"]}]
    assert glue.get_workflow(Name=f"{job}-workflow")["Workflow"]["MaxConcurrentRuns"] == 1

    # Alarms and dashboard: the job's namespace, metric names and exactly its dimensions.
    metric_names = published_metrics()
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix=job)["MetricAlarms"]}
    assert set(alarms) == {f"{job}-table-failed", f"{job}-rows-missing", f"{job}-rows-extra"}
    seen = {}
    for name, alarm in alarms.items():
        (query,) = alarm["Metrics"]
        fn, metric, namespace, dims, where_job = _expression_parts(query["Expression"])
        assert (namespace, dims, where_job) == (job_module.Metrics.NAMESPACE, published_dimensions(), job)
        assert metric in metric_names and query["ReturnData"] is True
        seen[name] = (fn, metric, alarm["ComparisonOperator"], alarm["Threshold"])
    assert seen == {f"{job}-table-failed": ("MAX", "Failure", "GreaterThanThreshold", 0.0),
                    f"{job}-rows-missing": ("MAX", "RowDifference", "GreaterThanThreshold", 0.0),
                    f"{job}-rows-extra": ("MIN", "RowDifference", "LessThanThreshold", 0.0)}
    body = json.loads(cw.get_dashboard(DashboardName=outputs["DashboardName"])["DashboardBody"])
    charted = set()
    for widget in body["widgets"]:
        for (query,) in widget["properties"]["metrics"]:
            _, metric, namespace, dims, where_job = _expression_parts(query["expression"])
            assert (namespace, dims, where_job) == (job_module.Metrics.NAMESPACE, published_dimensions(), job)
            charted.add(metric)
    assert charted == metric_names

    # Role: the statements moto stored are the template's, resolved for this account and region.
    stored = _statements(iam, f"{job}-glue-role", "glue-etl-job")
    assert set(stored) == set(template_statements())
    for sid, written in template_statements().items():
        assert stored[sid]["Action"] == written["Action"], sid
    assert stored["ReadSecrets"]["Resource"] == "arn:aws:ssm:us-east-1:123456789012:parameter/etl/test/*"
    assert stored["DecryptSecretsThroughSsm"]["Resource"] == KMS_KEY
    assert stored["DecryptSecretsThroughSsm"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}
    assert stored["ReadArtifacts"]["Resource"] == f"arn:aws:s3:::{names['bucket']}/glue-etl/*"
    assert stored["ListStaging"]["Resource"] == f"arn:aws:s3:::{staging}"
    assert stored["ReadWriteStaging"]["Resource"] == [f"arn:aws:s3:::{staging}/{job}/*",
                                                      f"arn:aws:s3:::{staging}/glue-temp/{job}/*"]
    assert stored["PublishJobMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": job_module.Metrics.NAMESPACE}}
    # No connection given: no network policy.
    assert iam.list_role_policies(RoleName=f"{job}-glue-role")["PolicyNames"] == ["glue-etl-job"]
    encryption = s3.get_bucket_encryption(Bucket=staging)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    # A workflow run and a job run on moto, read back.
    run_id = glue.start_workflow_run(Name=f"{job}-workflow")["RunId"]
    run = glue.get_workflow_run(Name=f"{job}-workflow", RunId=run_id)["Run"]
    assert (run["Name"], run["WorkflowRunId"], run["Status"]) == (f"{job}-workflow", run_id, "RUNNING")
    one_table = {"--TABLES": "sales.orders", "--OBJ": '{"sales.orders": "FULL"}'}    # docs/DEPLOY.md's example
    job_run_id = glue.start_job_run(JobName=job, Arguments=one_table)["JobRunId"]
    job_run = glue.get_job_run(JobName=job, RunId=job_run_id)["JobRun"]
    assert job_run["JobName"] == job
    # moto reports the run's arguments merged over the job's defaults (what the run sees).
    assert {k: job_run["Arguments"][k] for k in one_table} == one_table
    assert job_run["Arguments"]["--SNOWFLAKE"] == "/etl/test/snowflake"

    # ---- update: more workers, another schedule, a table subset, a VPC connection -------------
    update = ("NumberOfWorkers=3", "Schedule=cron(30 3 * * ? *)", "Tables=sales.orders", "GlueConnectionName=etl-vpc")
    rc, out, err = _deploy(names, capsys, *update)
    assert rc == 0, err
    assert "stack UPDATE_COMPLETE" in out and f"stack {job}: UPDATE done" in out
    assert "artifacts: " in out and "already there" in out            # same files: nothing uploaded
    got = glue.get_job(JobName=job)["Job"]
    assert got["NumberOfWorkers"] == 3 and got["DefaultArguments"]["--TABLES"] == "sales.orders"
    assert got["Command"]["ScriptLocation"] == f"{prefix}/glue_etl_job.py"
    assert glue.get_trigger(Name=f"{job}-schedule")["Trigger"]["Schedule"] == "cron(30 3 * * ? *)"
    assert glue.get_trigger(Name=f"{job}-on-success")["Trigger"]["Actions"] == [{"JobName": names["downstream"]}]
    assert [r["Id"] for r in glue.get_job_runs(JobName=job)["JobRuns"]] == [job_run_id]   # runs survive an update
    assert got["Connections"] == {"Connections": ["etl-vpc"]}
    assert sorted(iam.list_role_policies(RoleName=f"{job}-glue-role")["PolicyNames"]) == \
        ["glue-etl-connection", "glue-etl-job"]                          # the conditional policy appeared
    described = cfn.describe_stacks(StackName=job)["Stacks"][0]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert (params["NumberOfWorkers"], params["ArtifactVersion"]) == ("3", version)

    # ---- the same again: no changes is success -----------------------------------------------
    rc, out, err = _deploy(names, capsys, *update)
    assert rc == 0, err
    assert f"stack {job}: no changes (artifact version {version})" in out

    # ---- the connection removed again: its policy goes, the job has no connection -------------
    rc, out, err = _deploy(names, capsys, *update[:-1], "GlueConnectionName=")
    assert rc == 0, err
    assert "Connections" not in glue.get_job(JobName=job)["Job"]
    assert iam.list_role_policies(RoleName=f"{job}-glue-role")["PolicyNames"] == ["glue-etl-job"]

    # ---- remove: the stack's Glue resources and alarms go, the staging bucket stays ------------
    cfn.delete_stack(StackName=job)
    assert cfn.describe_stacks(StackName=described["StackId"])["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_job(JobName=job)
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_trigger(Name=f"{job}-schedule")
    assert cw.describe_alarms(AlarmNamePrefix=job)["MetricAlarms"] == []
    s3.head_bucket(Bucket=staging)                                     # DeletionPolicy: Retain


def test_deploy_names_a_missing_artifact_bucket(aws, names, capsys):
    rc, _, err = _deploy({**names, "bucket": f"{names['bucket']}-missing"}, capsys)
    assert rc == 1
    assert f"artifact bucket '{names['bucket']}-missing' does not exist" in err


def test_deploy_check_validates_against_the_endpoint(aws, names, capsys):
    rc = deploy_cli.main(["--check", "--param", "SsmPrefix=/etl/test", "--param", f"SecretsKmsKeyArn={KMS_KEY}",
                          "--param", "SnowflakePath=/etl/test/snowflake", "--artifact-bucket", names["bucket"]])
    out = capsys.readouterr().out
    assert rc == 0
    assert "cfn-lint: " in out and "CloudFormation ValidateTemplate: OK" in out


def test_local_moto_rejects_a_resource_type_it_cannot_create(aws):
    """moto alone would skip an unsupported type and report CREATE_COMPLETE; the local server fails."""
    body = json.dumps({"Resources": {"P": {"Type": "AWS::S3::BucketPolicy", "Properties": {
        "Bucket": "b", "PolicyDocument": {"Statement": []}}}}})
    with pytest.raises(ClientError) as err:
        aws("cloudformation").create_stack(StackName=f"unsupported-{uuid.uuid4().hex[:6]}", TemplateBody=body)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert "AWS::S3::BucketPolicy is not supported by the local moto server" in err.value.response["Error"]["Message"]


def test_deploy_with_connection_existing_bucket_and_extra_jars(aws, names, capsys):
    """The template's other branches: a VPC connection, an existing staging bucket, jars, a security config."""
    glue, iam, s3 = aws("glue"), aws("iam"), aws("s3")
    job = f"{names['job']}-vpc"
    staging = f"{names['bucket']}-staging"
    s3.create_bucket(Bucket=staging)
    jars = f"s3://{names['bucket']}/glue-etl/jars/mariadb-java-client-2.7.6.jar"
    rc, out, err = _deploy({**names, "job": job}, capsys, f"StagingBucket={staging}", "GlueConnectionName=etl-vpc",
                           f"ExtraJars={jars}", "SecurityConfiguration=etl-encrypted", "Parallelism=8")
    assert rc == 0, err
    got = glue.get_job(JobName=job)["Job"]
    assert got["Connections"] == {"Connections": ["etl-vpc"]} and got["SecurityConfiguration"] == "etl-encrypted"
    arguments = got["DefaultArguments"]
    assert (arguments["--extra-jars"], arguments["--STAGING_BUCKET"], arguments["--PARALLELISM"]) == \
        (jars, staging, "8")
    assert arguments["--TempDir"] == f"s3://{staging}/glue-temp/{job}/"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in
               aws("cloudformation").describe_stacks(StackName=job)["Stacks"][0]["Outputs"]}
    assert outputs["StagingBucketName"] == staging           # no bucket created
    assert not [b for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(f"{job}-stagingbucket")]
    role = f"{job}-glue-role"
    assert sorted(iam.list_role_policies(RoleName=role)["PolicyNames"]) == ["glue-etl-connection", "glue-etl-job"]
    statements = _statements(iam, role, "glue-etl-connection")
    assert statements["ReadConnection"]["Resource"] == [
        "arn:aws:glue:us-east-1:123456789012:catalog", "arn:aws:glue:us-east-1:123456789012:connection/etl-vpc"]
    assert "ec2:CreateNetworkInterface" in statements["JobNetworkInterfaces"]["Action"]
    write = _statements(iam, role, "glue-etl-job")["ReadWriteStaging"]
    assert write["Resource"] == [f"arn:aws:s3:::{staging}/{job}/*", f"arn:aws:s3:::{staging}/glue-temp/{job}/*"]
