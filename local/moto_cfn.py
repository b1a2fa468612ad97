"""moto CloudFormation models for the resource types deploy/template.yaml uses and moto lacks.

Written for moto 5.2.5 (requirements-dev.txt). moto's CloudFormation creates S3 buckets, IAM
roles and dashboards, but SILENTLY SKIPS AWS::Glue::Job, AWS::Glue::Workflow, AWS::Glue::Trigger
and AWS::CloudWatch::Alarm while reporting CREATE_COMPLETE - a deploy test against it would prove
nothing. These models create, update and delete those resources through moto's own Glue and
CloudWatch backends, so the stack's resources can be read back with the ordinary APIs
(glue.get_job, glue.get_trigger, cloudwatch.describe_alarms, ...).

Updates, as the backends allow (moto's Glue API has no update_job/update_trigger):
- Job: the backend's job is created anew with the new properties; the old job's runs are kept.
  A new Name replaces the job (the old one is deleted), as CloudFormation does.
- Trigger: deleted and created again (Name is a replacement property in CloudFormation too);
  its state follows StartOnCreation.
- Workflow: the backend's update_workflow; a new Name replaces it.
- Alarm: put_metric_alarm again (an upsert); a new AlarmName replaces it.

Also fixed here (``patch_cloudformation``; see local/moto_server.py):
- a resource type moto has no model for fails the stack operation (a ValidationError naming the
  type) instead of being skipped while the stack reports success; a model's missing required
  property fails the same way (CloudFormation would report CREATE_FAILED on the resource);
- moto's AWS::IAM::Role stores an inline policy given as a mapping (what a YAML template gives) as
  its Python repr, so get_role_policy returned "{'Version': ...}" instead of the JSON document;
  it is stored as JSON now, as IAM does;
- a stack deployed through a change set (create_change_set + execute_change_set, what
  `python -m deploy` does) keeps no template in moto, so its Outputs stayed empty; executing a
  change set now refreshes the stack's template and outputs, as CloudFormation does.

- a resource whose Condition changes value between two deploys (e.g. GlueConnectionName given on
  an update) was neither created nor deleted by moto's update; now it is, as CloudFormation does.

Not fixed: moto's change set lists resources whose Condition is false as "Add" (they are not
created).

Importing this module registers the models: it must be imported before the first create_stack
(moto caches its list of models, ``parsing.get_model_map``).
"""

from __future__ import annotations

import json
from typing import Any

from moto.cloudformation.exceptions import ValidationError
from moto.cloudwatch.models import (
    Dimension,
    Metric,
    MetricDataQuery,
    MetricStat,
    cloudwatch_backends,
)
from moto.core.common_models import CloudFormationModel
from moto.glue.models import glue_backends
from moto.glue.utils import Action, Predicate

MOTO_VERSION = "5.2.5"


def _glue(account_id: str, region_name: str):
    return glue_backends[account_id][region_name]


def _require(properties: dict, resource_type: str, *names: str) -> None:
    missing = [n for n in names if n not in properties]
    if missing:
        raise ValidationError(message=f"{resource_type}: required properties missing: {', '.join(missing)}")


class _Named:
    """A resource known by its name (its Ref / physical id), held by a moto backend.

    A mixin: moto finds models with CloudFormationModel.__subclasses__(), which lists only direct
    subclasses, so every model below names CloudFormationModel itself as a base.
    """

    def __init__(self, name: str, account_id: str, region_name: str):
        self.name = name
        self.account_id = account_id
        self.region_name = region_name

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    def is_created(self) -> bool:
        return True

    def delete(self, account_id: str, region_name: str) -> None:
        self.delete_from_cloudformation_json(self.name, {}, account_id, region_name)


class GlueJob(_Named, CloudFormationModel):
    """AWS::Glue::Job -> GlueBackend.create_job / delete_job."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Job"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json["Properties"]
        _require(props, cls.cloudformation_type(), "Role", "Command")
        backend = _glue(account_id, region_name)
        old = backend.jobs.get(resource_name)
        backend.create_job(
            name=resource_name,
            role=props["Role"],
            command=props["Command"],
            description=props.get("Description"),
            log_uri=props.get("LogUri"),
            execution_property=props.get("ExecutionProperty"),
            default_arguments=props.get("DefaultArguments"),
            non_overridable_arguments=props.get("NonOverridableArguments"),
            connections=props.get("Connections"),
            max_retries=props.get("MaxRetries"),
            allocated_capacity=props.get("AllocatedCapacity"),
            timeout=props.get("Timeout"),
            max_capacity=props.get("MaxCapacity"),
            security_configuration=props.get("SecurityConfiguration"),
            tags=props.get("Tags") or {},
            notification_property=props.get("NotificationProperty"),
            glue_version=props.get("GlueVersion"),
            number_of_workers=props.get("NumberOfWorkers"),
            worker_type=props.get("WorkerType"),
            code_gen_configuration_nodes=None,
            execution_class=props.get("ExecutionClass"),
            source_control_details=None,
        )
        if old is not None:                      # an update in place keeps the job's run history
            backend.jobs[resource_name].job_runs = old.job_runs
        return cls(resource_name, account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,
                                        account_id, region_name):
        name = cloudformation_json["Properties"].get("Name", original_resource.name)
        if name != original_resource.name:
            cls.delete_from_cloudformation_json(original_resource.name, {}, account_id, region_name)
        return cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        _glue(account_id, region_name).delete_job(resource_name)


class GlueWorkflow(_Named, CloudFormationModel):
    """AWS::Glue::Workflow -> GlueBackend.create_workflow / update_workflow / delete_workflow."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Workflow"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json["Properties"]
        _glue(account_id, region_name).create_workflow(
            name=resource_name,
            default_run_properties=props.get("DefaultRunProperties"),
            description=props.get("Description"),
            max_concurrent_runs=props.get("MaxConcurrentRuns"),
            tags=props.get("Tags") or {},
        )
        return cls(resource_name, account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,
                                        account_id, region_name):
        props = cloudformation_json["Properties"]
        name = props.get("Name", original_resource.name)
        if name != original_resource.name:
            cls.delete_from_cloudformation_json(original_resource.name, {}, account_id, region_name)
            return cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)
        _glue(account_id, region_name).update_workflow(
            name=name,
            default_run_properties=props.get("DefaultRunProperties"),
            description=props.get("Description"),
            max_concurrent_runs=props.get("MaxConcurrentRuns"),
        )
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        _glue(account_id, region_name).delete_workflow(resource_name)


class GlueTrigger(_Named, CloudFormationModel):
    """AWS::Glue::Trigger -> GlueBackend.create_trigger / delete_trigger (update = delete + create)."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Trigger"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json["Properties"]
        _require(props, cls.cloudformation_type(), "Type", "Actions")
        if props["Type"] == "CONDITIONAL" and not props.get("Predicate"):
            raise ValidationError(message="AWS::Glue::Trigger: a CONDITIONAL trigger needs a Predicate")
        if props["Type"] == "SCHEDULED" and not props.get("Schedule"):
            raise ValidationError(message="AWS::Glue::Trigger: a SCHEDULED trigger needs a Schedule")
        _glue(account_id, region_name).create_trigger(
            name=resource_name,
            workflow_name=props.get("WorkflowName"),
            trigger_type=props["Type"],
            schedule=props.get("Schedule"),
            predicate=Predicate(props["Predicate"]) if props.get("Predicate") else None,
            actions=[Action(a) for a in props["Actions"]],
            description=props.get("Description"),
            start_on_creation=str(props.get("StartOnCreation", False)).lower() == "true",
            tags=props.get("Tags") or {},
            event_batching_condition=props.get("EventBatchingCondition"),
        )
        return cls(resource_name, account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,
                                        account_id, region_name):
        cls.delete_from_cloudformation_json(original_resource.name, {}, account_id, region_name)
        name = cloudformation_json["Properties"].get("Name", original_resource.name)
        return cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        _glue(account_id, region_name).delete_trigger(resource_name)


def _metric_query(q: dict) -> MetricDataQuery:
    stat = None
    if q.get("MetricStat"):
        m = q["MetricStat"]["Metric"]
        dims = [Dimension(d["Name"], d["Value"]) for d in m.get("Dimensions", [])]
        stat = MetricStat(Metric(m["MetricName"], m["Namespace"], dims), q["MetricStat"]["Period"],
                          q["MetricStat"]["Stat"], q["MetricStat"].get("Unit"))
    return MetricDataQuery(query_id=q["Id"], label=q.get("Label"), period=q.get("Period"),
                           return_data=q.get("ReturnData"), expression=q.get("Expression"), metric_stat=stat)


class CloudWatchAlarm(_Named, CloudFormationModel):
    """AWS::CloudWatch::Alarm -> CloudWatchBackend.put_metric_alarm / delete_alarms."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "Arn":
            return cloudwatch_backends[self.account_id][self.region_name].alarms[self.name].alarm_arn
        raise NotImplementedError(attribute_name)

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json["Properties"]
        _require(props, cls.cloudformation_type(), "ComparisonOperator", "EvaluationPeriods")
        if bool(props.get("Metrics")) == bool(props.get("MetricName")):
            raise ValidationError(message="AWS::CloudWatch::Alarm: give either Metrics or MetricName, "
                                          "not both or neither")
        cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=resource_name,
            namespace=props.get("Namespace"),
            metric_name=props.get("MetricName"),
            metric_data_queries=[_metric_query(q) for q in props.get("Metrics", [])] or None,
            comparison_operator=props["ComparisonOperator"],
            evaluation_periods=int(props["EvaluationPeriods"]),
            datapoints_to_alarm=props.get("DatapointsToAlarm"),
            period=props.get("Period"),
            threshold=float(props["Threshold"]) if "Threshold" in props else None,
            statistic=props.get("Statistic"),
            extended_statistic=props.get("ExtendedStatistic"),
            description=props.get("AlarmDescription"),
            dimensions=[{"Name": d["Name"], "Value": d["Value"]} for d in props.get("Dimensions", [])],
            alarm_actions=props.get("AlarmActions", []),
            ok_actions=props.get("OKActions", []),
            insufficient_data_actions=props.get("InsufficientDataActions", []),
            unit=props.get("Unit"),
            actions_enabled=str(props.get("ActionsEnabled", True)).lower() == "true",
            treat_missing_data=props.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=props.get("ThresholdMetricId"),
        )
        return cls(resource_name, account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,
                                        account_id, region_name):
        name = cloudformation_json["Properties"].get("AlarmName", original_resource.name)
        if name != original_resource.name:
            cls.delete_from_cloudformation_json(original_resource.name, {}, account_id, region_name)
        return cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])


MODELS = (GlueJob, GlueWorkflow, GlueTrigger, CloudWatchAlarm)


def patch_cloudformation() -> None:
    """Unknown resource types fail loudly; executing a change set refreshes the stack's outputs."""
    import sys

    import moto
    from moto.cloudformation import models, parsing

    if moto.__version__ != MOTO_VERSION:
        print(f"[moto_cfn] WARNING: written for moto {MOTO_VERSION}, running {moto.__version__}: "
              "re-check the models against moto's glue/cloudwatch/cloudformation code", file=sys.stderr)

    known = parsing.get_model_map()
    missing = [m.cloudformation_type() for m in MODELS if m.cloudformation_type() not in known]
    if missing:   # moto cached its model list before this module was imported
        raise RuntimeError(f"moto models not registered (import local.moto_cfn earlier): {missing}")
    original_class_from_type = parsing.resource_class_from_type

    def resource_class_from_type(resource_type: str) -> Any:
        resource_class = original_class_from_type(resource_type)
        if resource_class is None and resource_type not in parsing.NULL_MODELS:
            raise ValidationError(message=f"{resource_type} is not supported by the local moto server "
                                          f"(no CloudFormation model; see local/moto_cfn.py)")
        return resource_class

    parsing.resource_class_from_type = resource_class_from_type
    original_apply = models.ChangeSet.apply

    def apply(self: Any) -> None:
        original_apply(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.description = stack.template_dict.get("Description")
        stack.parameters = self.parameters
        stack.output_map = stack._create_output_map()

    models.ChangeSet.apply = apply
    original_update = parsing.ResourceMap.update

    def update(self: Any, template: dict, parameters: dict | None = None) -> None:
        original_update(self, template, parameters)
        for name, resource_json in self._resource_json_map.items():
            condition = resource_json.get("Condition")
            if not condition:
                continue
            wanted, exists = self.lazy_condition_map[condition], self._parsed_resources.get(name) is not None
            if wanted and not exists:
                self._parsed_resources.pop(name, None)
                _ = self[name]                          # creates it (moto's lazy map)
            elif exists and not wanted:
                self._delete_resource(self._parsed_resources.pop(name), resource_json)

    parsing.ResourceMap.update = update

    from moto.iam.models import Role

    original_put_policy = Role.put_policy

    def put_policy(self: Any, policy_name: str, policy_json: Any) -> None:
        if not isinstance(policy_json, str):
            policy_json = json.dumps(policy_json)
        original_put_policy(self, policy_name, policy_json)

    Role.put_policy = put_policy
