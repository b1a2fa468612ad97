"""python -m deploy: put glue_etl_job.py on AWS Glue with deploy/template.yaml (docs/DEPLOY.md).

    python -m deploy --artifact-bucket my-artifacts --param SsmPrefix=/etl/prod \\
        --param SecretsKmsKeyArn=arn:aws:kms:... --param SnowflakePath=/etl/prod/snowflake ...
    python -m deploy --check [--param ...]     # lint + validate, no deploy

Steps: cfn-lint the template; upload glue_etl_job.py and config.py to
s3://<bucket>/<prefix>/<content hash>/ (a deploy never changes files a running job uses);
create or update the stack through a change set (no changes = success); wait; print the outputs
and console links. --endpoint-url (or AWS_ENDPOINT_URL) points it at any AWS-compatible endpoint.
Exit status: 0 deployed (or nothing to change), 1 the deploy failed, 2 bad input or lint failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from deploy import deployer
from deploy.deployer import DeployError, DeployRequest, InputError


def _parameters(args: argparse.Namespace) -> dict[str, str]:
    params: dict[str, str] = {}
    if args.params_file:
        try:
            data = json.loads(Path(args.params_file).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"--params-file {args.params_file}: {exc}") from None
        if isinstance(data, list):          # the CloudFormation CLI's [{"ParameterKey":..,"ParameterValue":..}]
            data = {p["ParameterKey"]: p["ParameterValue"] for p in data}
        params.update({str(k): str(v) for k, v in data.items()})
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param {item!r}: expected KEY=VALUE")
        params[key] = value
    own = [k for k in params if k in deployer.OWN_PARAMETERS]
    if own:
        raise InputError(f"{', '.join(own)} are set by the deploy itself (use --artifact-bucket/--artifact-prefix)")
    return params


def _session(args: argparse.Namespace):
    import boto3

    session = boto3.session.Session(region_name=args.region)
    if not session.region_name:
        raise InputError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    return session


def _client(session, name: str, endpoint: str | None):
    return session.client(name, endpoint_url=endpoint) if endpoint else session.client(name)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact-bucket", help="bucket for the job's files (must exist)")
    p.add_argument("--artifact-prefix", default="glue-etl", help="key prefix of the artifact versions")
    p.add_argument("--stack-name", help="CloudFormation stack (default: the JobName parameter, else glue-etl)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter")
    p.add_argument("--params-file", help="JSON object (or CloudFormation parameter list) of template parameters")
    p.add_argument("--template", default=str(deployer.TEMPLATE), help="template (default deploy/template.yaml)")
    p.add_argument("--config", default=str(deployer.CONFIG), help="config.py to deploy with the job")
    p.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                   help="AWS-compatible endpoint (default $AWS_ENDPOINT_URL)")
    p.add_argument("--region", help="AWS region (default from the AWS configuration)")
    p.add_argument("--check", action="store_true", help="lint and validate only; deploy nothing")
    p.add_argument("--poll-seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def check(args: argparse.Namespace, params: dict[str, str]) -> None:
    template = Path(args.template)
    deployer.lint(template)
    print(f"cfn-lint: {template} OK")
    body = deployer.load_template(template)
    given = dict(params)
    if args.artifact_bucket:
        given["ArtifactBucket"] = args.artifact_bucket
    skip = {k: "" for k in deployer.OWN_PARAMETERS}
    if not params:          # nothing to check but the template's own defaults
        skip.update({k: "" for k, spec in body.get("Parameters", {}).items() if "Default" not in spec})
    problems = deployer.check_parameters(body, given, previous=skip)
    if problems:
        raise InputError("parameters:\n  " + "\n  ".join(problems))
    print(f"parameters: {len(given)} given, OK" if params else "parameters: none given (only the template checked)")
    session = _session(args) if (args.endpoint_url or os.environ.get("AWS_ACCESS_KEY_ID")
                                 or os.environ.get("AWS_PROFILE")) else None
    if session is None or session.get_credentials() is None:
        print("CloudFormation ValidateTemplate: not run (no AWS credentials or endpoint configured)")
        return
    from botocore.exceptions import ClientError

    try:
        _client(session, "cloudformation", args.endpoint_url).validate_template(TemplateBody=template.read_text())
    except ClientError as exc:
        raise DeployError(f"CloudFormation ValidateTemplate: {exc.response['Error'].get('Message')}") from None
    print("CloudFormation ValidateTemplate: OK")


def deploy(args: argparse.Namespace, params: dict[str, str]) -> deployer.StackResult:
    if not args.artifact_bucket:
        raise InputError("--artifact-bucket is required to deploy")
    request = DeployRequest(
        stack_name=args.stack_name or params.get("JobName") or "glue-etl",
        artifact_bucket=args.artifact_bucket, artifact_prefix=args.artifact_prefix.strip("/"),
        parameters=params, template=Path(args.template), files=(deployer.SCRIPT, Path(args.config)),
        poll_seconds=args.poll_seconds)
    for path in request.files:
        if path.name not in ("glue_etl_job.py", "config.py") or not path.is_file():
            raise InputError(f"{path}: expected an existing glue_etl_job.py / config.py")
    deployer.lint(request.template)
    print(f"cfn-lint: {request.template} OK")
    session = _session(args)
    s3 = _client(session, "s3", args.endpoint_url)
    cfn = _client(session, "cloudformation", args.endpoint_url)
    stacks = deployer.StackDeployer(cfn)
    previous = stacks.existing(request.stack_name)
    template = deployer.load_template(request.template)
    own_given = {"ArtifactBucket": request.artifact_bucket, "ArtifactPrefix": request.artifact_prefix}
    before = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (previous or {}).get("Parameters", [])}
    problems = deployer.check_parameters(template, {**params, **own_given}, previous={**before, "ArtifactVersion": ""})
    if problems:
        raise InputError("parameters:\n  " + "\n  ".join(problems))
    version, uploaded = deployer.upload_artifacts(s3, request.artifact_bucket, request.artifact_prefix, request.files)
    where = f"s3://{request.artifact_bucket}/{request.artifact_prefix}/{version}/"
    print(f"artifacts: {where} ({'uploaded ' + ', '.join(uploaded) if uploaded else 'already there'})")
    result = stacks.deploy(request.stack_name, request.template.read_text(),
                           {**params, **own_given, "ArtifactVersion": version}, previous, version,
                           request.timeout_seconds, request.poll_seconds)
    if result.action != "NONE":
        print(f"stack {request.stack_name}: {result.action} done")
    for key, value in sorted(result.outputs.items()):
        print(f"  {key:20} {value}")
    for name, url in deployer.console_links(session.region_name, result.stack_id, result.outputs).items():
        print(f"  console {name:12} {url}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        params = _parameters(args)
        if args.check:
            check(args, params)
        else:
            deploy(args, params)
    except DeployError as exc:
        print(f"deploy: ERROR: {exc}", file=sys.stderr)
        return exc.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
