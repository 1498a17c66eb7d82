"""The execution roles AWS would create from template.yaml, and IAM's decision on a request.

Roles come from AWS's own SAM translator (the library ``sam build``/``sam deploy`` use), so the
policy templates (``DynamoDBCrudPolicy``...) expand exactly as they do on AWS. Their intrinsics
are then resolved against the local stack's physical names. Evaluation follows IAM's rules for
identity policies: an explicit Deny wins, otherwise some Allow must match both the action and
the resource; ``*`` and ``?`` are wildcards, actions compare case-insensitively.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.cfn import Context, TemplateError, load_yaml, resolve
from devstack.template import Template, template_context

__all__ = [
    "Credentials",
    "Role",
    "Statement",
    "role_for",
    "roles_from_template",
    "translate",
    "translator_region",
]

# The managed policies SAM attaches by itself. Their documents are AWS's published ones; the
# functions never call these services (the Lambda runtime and the X-Ray daemon do), so no
# request reaches them locally.
MANAGED_POLICIES: Mapping[str, str] = {
    "AWSLambdaBasicExecutionRole":
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSLambdaSQSQueueExecutionRole":
        "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}
_MANAGED_DOCUMENTS: Mapping[str, list[dict[str, Any]]] = {
    MANAGED_POLICIES["AWSLambdaBasicExecutionRole"]: [{
        "Effect": "Allow", "Resource": "*",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
    }],
    MANAGED_POLICIES["AWSXrayWriteOnlyAccess"]: [{
        "Effect": "Allow", "Resource": ["*"],
        "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords",
                   "xray:GetSamplingRules", "xray:GetSamplingTargets",
                   "xray:GetSamplingStatisticSummaries"],
    }],
    MANAGED_POLICIES["AWSLambdaSQSQueueExecutionRole"]: [{
        "Effect": "Allow", "Resource": "*",
        "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                   "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
    }],
}
_LOCAL_URI_PROPERTIES = ("CodeUri", "ContentUri", "DefinitionUri")
_translate_lock = threading.Lock()  # the translator reads AWS_DEFAULT_REGION from os.environ


@dataclass(frozen=True)
class Statement:
    """One statement of a role's policies, resolved to local ARNs."""

    policy: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_actions: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditional: bool = False

    def matches(self, action: str, resource: str) -> bool:
        if self.actions and not _any_match(self.actions, action, case=False):
            return False
        if self.not_actions and _any_match(self.not_actions, action, case=False):
            return False
        if self.resources and not _any_match(self.resources, resource, case=True):
            return False
        return not (self.not_resources and _any_match(self.not_resources, resource, case=True))

    def grants(self) -> Iterable[tuple[str, str]]:
        """Each (action pattern, resource pattern) this statement allows."""
        for action in self.actions:
            for resource in self.resources:
                yield action, resource


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }


@dataclass(frozen=True)
class Role:
    """An execution role: who assumes it (functions, state machines) and what it allows."""

    logical_id: str
    name: str
    arn: str
    principals: tuple[str, ...]  # logical ids of the functions and state machines using it
    statements: tuple[Statement, ...]

    @property
    def credentials(self) -> Credentials:
        """Temporary credentials as STS would hand out, stable for the role's name."""
        digest = hashlib.sha256(self.arn.encode()).hexdigest().upper()
        key_id = "ASIA" + re.sub(r"[^A-Z0-9]", "", digest)[:16]
        return Credentials(key_id, digest[16:56], f"devstack-session-{self.name}")

    def session_arn(self, session: str) -> str:
        account = self.arn.split(":")[4]
        return f"arn:aws:sts::{account}:assumed-role/{self.name}/{session}"

    def decide(self, action: str, resource: str) -> Statement | None:
        """The Allow statement that lets ``action`` on ``resource`` through, or None."""
        allowed: Statement | None = None
        for statement in self.statements:
            if not statement.matches(action, resource):
                continue
            if statement.effect == "Deny" and not statement.conditional:
                return None
            # Conditions are not evaluated locally: a conditional Allow never counts (strict).
            if statement.effect == "Allow" and not statement.conditional and allowed is None:
                allowed = statement
        return allowed


def _any_match(patterns: Iterable[str], value: str, *, case: bool) -> bool:
    for pattern in patterns:
        if case:
            if fnmatch.fnmatchcase(value, pattern):
                return True
        elif fnmatch.fnmatchcase(value.lower(), pattern.lower()):
            return True
    return False


def translate(template_path: os.PathLike[str] | str, region: str) -> dict[str, Any]:
    """template.yaml as CloudFormation, translated by aws-sam-translator."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(load_yaml(Path(template_path)))
    for resource in (sam.get("Resources") or {}).values():
        properties = resource.get("Properties") or {}
        for name in _LOCAL_URI_PROPERTIES:
            if isinstance(properties.get(name), str):  # what `sam package` does to local paths
                properties[name] = f"s3://devstack-artifacts/{properties[name]}"
    translator = Translator(managed_policy_map=dict(MANAGED_POLICIES), sam_parser=Parser())
    with translator_region(region):
        translated: dict[str, Any] = translator.translate(sam_template=sam, parameter_values={})
    return translated


@contextlib.contextmanager
def translator_region(region: str) -> Iterator[None]:
    """The SAM translator resolves AWS::Region from AWS_DEFAULT_REGION, process-wide."""
    with _translate_lock:
        saved = os.environ.get("AWS_DEFAULT_REGION")
        os.environ["AWS_DEFAULT_REGION"] = region
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("AWS_DEFAULT_REGION", None)
            else:
                os.environ["AWS_DEFAULT_REGION"] = saved


def roles_from_template(template: Template) -> dict[str, Role]:
    """Every execution role of the translated template, keyed by logical id."""
    translated = translate(template.path, template.naming.region)
    resources: Mapping[str, Any] = translated.get("Resources") or {}
    ctx = template_context(template)
    principals = _role_users(resources)
    roles: dict[str, Role] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::IAM::Role" or logical_id not in principals:
            continue  # roles of AWS services (CodeDeploy's) act outside the local stack
        name = f"{template.naming.prefix}-{logical_id}"[:64]
        roles[logical_id] = Role(
            logical_id=logical_id,
            name=name,
            arn=f"arn:aws:iam::{template.naming.account_id}:role/{name}",
            principals=tuple(sorted(principals.get(logical_id, ()))),
            statements=tuple(_statements(logical_id, resource["Properties"], ctx)),
        )
    return roles


def role_for(roles: Mapping[str, Role], principal: str) -> Role:
    """The execution role of a function or state machine, by its logical id."""
    for role in roles.values():
        if principal in role.principals:
            return role
    raise TemplateError(f"{principal} has no execution role in the translated template")


def _role_users(resources: Mapping[str, Any]) -> dict[str, set[str]]:
    users: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        properties = resource.get("Properties") or {}
        role = properties.get("Role") or properties.get("RoleArn")
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            target = role["Fn::GetAtt"]
            target = target[0] if isinstance(target, list) else str(target).split(".")[0]
            users.setdefault(str(target), set()).add(logical_id)
    return users


def _statements(role_id: str, properties: Mapping[str, Any], ctx: Context) -> Iterable[Statement]:
    for arn in properties.get("ManagedPolicyArns") or []:
        arn = str(resolve(arn, ctx))
        if arn not in _MANAGED_DOCUMENTS:
            raise TemplateError(f"{role_id}: managed policy {arn} is not known to the local stack")
        yield from _parse(arn, _MANAGED_DOCUMENTS[arn])
    for policy in properties.get("Policies") or []:
        name = str(policy.get("PolicyName", role_id))
        document = resolve(policy["PolicyDocument"], ctx)
        yield from _parse(name, _as_list(document.get("Statement")))


def _parse(policy: str, statements: list[Any]) -> Iterable[Statement]:
    for raw in statements:
        yield Statement(
            policy=policy,
            effect=str(raw.get("Effect", "Allow")),
            actions=tuple(str(a) for a in _as_list(raw.get("Action"))),
            resources=tuple(str(r) for r in _as_list(raw.get("Resource"))),
            not_actions=tuple(str(a) for a in _as_list(raw.get("NotAction"))),
            not_resources=tuple(str(r) for r in _as_list(raw.get("NotResource"))),
            conditional=bool(raw.get("Condition")),
        )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
