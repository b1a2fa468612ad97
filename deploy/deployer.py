"""Deploy deploy/template.yaml: lint, upload the job's files, create or update the stack by change set.

Every step talks to AWS through the boto3 clients handed in, so the same code deploys to AWS or to
any AWS-compatible endpoint (the local moto server in the tests).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "template.yaml"
SCRIPT = ROOT / "glue_etl_job.py"
CONFIG = ROOT / "config.py"
# Parameters the deploy sets itself (the others come from --param / --params-file).
OWN_PARAMETERS = ("ArtifactBucket", "ArtifactPrefix", "ArtifactVersion")
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
FAILED_STATES = re.compile(r"(CREATE|UPDATE|DELETE|IMPORT)_FAILED$|ROLLBACK_(IN_PROGRESS|COMPLETE|FAILED)$")


class DeployError(RuntimeError):
    """A deploy step failed; the message says which and how to fix it."""

    status = 1


class InputError(DeployError):
    """The template, its parameters or the command line are wrong: nothing was deployed."""

    status = 2


@dataclass
class DeployRequest:
    stack_name: str
    artifact_bucket: str
    artifact_prefix: str = "glue-etl"
    parameters: dict[str, str] = field(default_factory=dict)
    template: Path = TEMPLATE
    files: tuple[Path, ...] = (SCRIPT, CONFIG)
    poll_seconds: float = 5.0
    timeout_seconds: float = 1800.0


# ----- template and parameters ---------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation's short-form tags (!Ref, !Sub, ...) as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))


def load_template(path: Path) -> dict:
    """The template as a dict (intrinsic functions' short forms kept as their arguments)."""
    try:
        return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read template {path}: {exc}") from None


_LINT_PASSED: set[str] = set()      # sha256 of template texts that passed in this process


def lint(template: Path) -> None:
    """cfn-lint over the template; any error or warning fails (exit status bits 2 and 4)."""
    try:
        digest = hashlib.sha256(template.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(f"cannot read template {template}: {exc}") from None
    if digest in _LINT_PASSED:
        return
    exe = Path(sys.executable).parent / "cfn-lint"
    exe = str(exe) if exe.exists() else shutil.which("cfn-lint")
    if not exe:
        raise InputError("cfn-lint is not installed: pip install -r requirements-dev.txt")
    result = subprocess.run([exe, "--format", "parseable", str(template)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        findings = (result.stdout + result.stderr).strip()
        raise InputError(f"cfn-lint found problems in {template} (exit {result.returncode}):\n{findings}")
    _LINT_PASSED.add(digest)


def check_parameters(template: dict, given: Mapping[str, str], previous: Mapping[str, str] = ()) -> list[str]:
    """Problems with the parameter values given for the template (unknown, missing, pattern, values)."""
    declared = template.get("Parameters", {})
    problems = [f"unknown parameter {k!r} (the template declares: {', '.join(declared)})"
                for k in given if k not in declared]
    for name, spec in declared.items():
        if name in given:
            value = str(given[name])
        elif name in previous:
            continue
        elif "Default" in spec:
            value = str(spec["Default"])
        else:
            problems.append(f"parameter {name} is required: pass --param {name}=... ({spec.get('Description', '')})")
            continue
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            problems.append(f"parameter {name}={value!r} does not match {spec['AllowedPattern']}")
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            problems.append(f"parameter {name}={value!r} is not one of {spec['AllowedValues']}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problems.append(f"parameter {name}={value!r} is not a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                problems.append(f"parameter {name}={value} is below {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                problems.append(f"parameter {name}={value} is above {spec['MaxValue']}")
    return problems


# ----- artifacts -----------------------------------------------------------------------


def artifact_version(files: tuple[Path, ...]) -> str:
    """Content hash of the deployed files (names and bytes): a new version whenever one changes."""
    digest = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def _denied(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("AccessDenied", "AccessDeniedException", "403",
                                                          "UnauthorizedOperation", "InvalidClientTokenId")


def _explain(exc: ClientError, action: str, needs: str) -> DeployError:
    error = exc.response.get("Error", {})
    if _denied(exc):
        return DeployError(f"missing permission: {action} was denied ({error.get('Code')}: "
                           f"{error.get('Message', '')}); the deploying identity needs {needs}")
    return DeployError(f"{action} failed: {error.get('Code')}: {error.get('Message', '')}")


def upload_artifacts(s3: Any, bucket: str, prefix: str, files: tuple[Path, ...]) -> tuple[str, list[str]]:
    """Put the files under <prefix>/<version>/ unless already there; return (version, uploaded keys)."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise DeployError(f"artifact bucket {bucket!r} does not exist: create it "
                              f"(aws s3 mb s3://{bucket}) or pass --artifact-bucket") from None
        raise _explain(exc, f"s3:ListBucket on {bucket}", f"s3:ListBucket on arn:aws:s3:::{bucket}") from None
    version = artifact_version(files)
    uploaded = []
    for path in files:
        key = f"{prefix}/{version}/{path.name}"
        try:
            s3.head_object(Bucket=bucket, Key=key)
            continue                      # content-addressed: the same key always holds the same bytes
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise _explain(exc, f"s3:GetObject s3://{bucket}/{key}", "s3:GetObject on the artifact prefix") \
                    from None
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        except ClientError as exc:
            raise _explain(exc, f"s3:PutObject s3://{bucket}/{key}",
                           f"s3:PutObject on arn:aws:s3:::{bucket}/{prefix}/*") from None
        uploaded.append(key)
    return version, uploaded


# ----- stack ---------------------------------------------------------------------------


@dataclass
class StackResult:
    stack_id: str
    action: str                      # CREATE | UPDATE | NONE
    outputs: dict[str, str]
    version: str


class StackDeployer:
    """Create or update one stack through a change set and wait for it."""

    def __init__(self, cloudformation: Any, say: Callable[[str], None] = print,
                 sleep: Callable[[float], None] = time.sleep):
        self._cfn = cloudformation
        self._say = say
        self._sleep = sleep

    def existing(self, stack_name: str) -> dict | None:
        try:
            stack = self._cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        except ClientError as exc:
            if "does not exist" in exc.response.get("Error", {}).get("Message", ""):
                return None
            raise _explain(exc, "cloudformation:DescribeStacks", "cloudformation:DescribeStacks") from None
        if stack["StackStatus"] == "REVIEW_IN_PROGRESS":     # only a change set that was never executed
            return None
        if stack["StackStatus"] == "ROLLBACK_COMPLETE":
            raise DeployError(f"stack {stack_name} failed to create and was rolled back; remove it first "
                              f"(aws cloudformation delete-stack --stack-name {stack_name}), then deploy again")
        if stack["StackStatus"].endswith("_IN_PROGRESS"):
            raise DeployError(f"stack {stack_name} is busy ({stack['StackStatus']}); wait for it to finish")
        return stack

    def deploy(self, stack_name: str, template_body: str, parameters: dict[str, str], previous: dict | None,
               version: str, timeout: float, poll: float) -> StackResult:
        kind = "UPDATE" if previous else "CREATE"
        params = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
        if previous:          # values not given keep what the stack has
            params += [{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
                       for p in previous.get("Parameters", []) if p["ParameterKey"] not in parameters]
        name = f"deploy-{version}-{int(time.time())}"
        try:
            created = self._cfn.create_change_set(
                StackName=stack_name, ChangeSetName=name, ChangeSetType=kind, TemplateBody=template_body,
                Parameters=params, Capabilities=["CAPABILITY_NAMED_IAM"],
                Description=f"python -m deploy, artifact version {version}")
        except ClientError as exc:
            raise _explain(exc, "cloudformation:CreateChangeSet",
                           "cloudformation:CreateChangeSet/ExecuteChangeSet/Describe* and iam:PassRole") from None
        change_set = self._wait_change_set(created["Id"], timeout, poll)
        if change_set["Status"] == "FAILED":
            reason = change_set.get("StatusReason", "")
            if any(text in reason for text in NO_CHANGES):
                self._cfn.delete_change_set(ChangeSetName=created["Id"])
                self._say(f"stack {stack_name}: no changes (artifact version {version})")
                return StackResult(created["StackId"], "NONE", self.outputs(stack_name), version)
            raise DeployError(f"change set for {stack_name} failed: {reason}")
        for change in change_set.get("Changes", []):
            rc = change.get("ResourceChange", {})
            self._say(f"  {rc.get('Action', '?'):8} {rc.get('LogicalResourceId')} ({rc.get('ResourceType')})")
        started = time.time()
        try:
            self._cfn.execute_change_set(ChangeSetName=created["Id"])
        except ClientError as exc:
            raise _explain(exc, "cloudformation:ExecuteChangeSet", "cloudformation:ExecuteChangeSet") from None
        self._wait_stack(created["StackId"], kind, started, timeout, poll)
        return StackResult(created["StackId"], kind, self.outputs(created["StackId"]), version)

    def _wait_change_set(self, change_set_id: str, timeout: float, poll: float) -> dict:
        deadline = time.time() + timeout
        while True:
            cs = self._cfn.describe_change_set(ChangeSetName=change_set_id)
            if cs["Status"] in ("CREATE_COMPLETE", "FAILED"):
                return cs
            if time.time() > deadline:
                raise DeployError(f"change set {change_set_id} still {cs['Status']} after {timeout:.0f}s")
            self._sleep(poll)

    def _wait_stack(self, stack_id: str, kind: str, started: float, timeout: float, poll: float) -> None:
        deadline = time.time() + timeout
        while True:
            status = self._cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
            if status == f"{kind}_COMPLETE":
                self._say(f"stack {status}")
                return
            if FAILED_STATES.search(status) or status.endswith("_FAILED"):
                raise DeployError(f"stack {status}:\n" + "\n".join(self.failures(stack_id, started)))
            if time.time() > deadline:
                raise DeployError(f"stack still {status} after {timeout:.0f}s")
            self._sleep(poll)

    def failures(self, stack_id: str, since: float) -> list[str]:
        """The failed resources of the latest operation: 'LogicalId (Type): STATUS: reason'."""
        events = self._cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
        lines = []
        for e in reversed(events):                        # oldest first
            stamp = e.get("Timestamp")
            if stamp is not None and hasattr(stamp, "timestamp") and stamp.timestamp() < since - 5:
                continue
            if e.get("ResourceStatus", "").endswith("_FAILED"):
                lines.append(f"  {e.get('LogicalResourceId')} ({e.get('ResourceType')}): "
                             f"{e['ResourceStatus']}: {e.get('ResourceStatusReason', '')}")
        return lines or ["  (no failed resource events; see the stack's events in the console)"]

    def outputs(self, stack: str) -> dict[str, str]:
        described = self._cfn.describe_stacks(StackName=stack)["Stacks"][0]
        return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def console_links(region: str, stack_id: str, outputs: Mapping[str, str]) -> dict[str, str]:
    base = f"https://{region}.console.aws.amazon.com"
    links = {"stack": f"{base}/cloudformation/home?region={region}#/stacks/stackinfo?stackId={stack_id}"}
    if "JobName" in outputs:
        links["job"] = f"{base}/gluestudio/home?region={region}#/editor/job/{outputs['JobName']}/runs"
    if "WorkflowName" in outputs:
        links["workflow"] = f"{base}/glue/home?region={region}#/v2/etl-configuration/workflows/view/" \
                            f"{outputs['WorkflowName']}"
    if "DashboardName" in outputs:
        links["dashboard"] = f"{base}/cloudwatch/home?region={region}#dashboards/dashboard/{outputs['DashboardName']}"
    return links
