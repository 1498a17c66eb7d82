"""A typed, locally resolved view of the SAM template.

Everything the local stack builds comes from here: which tables, buckets, functions, routes and
state machines exist, with every intrinsic resolved against local physical names. Nothing about
the application's resources is hard-coded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.cfn import Context, TemplateError, load_yaml, resolve

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "Bucket",
    "Function",
    "HttpApi",
    "JwtAuthorizer",
    "Naming",
    "Queue",
    "QueueSource",
    "Route",
    "Schedule",
    "StateMachine",
    "Table",
    "Template",
    "TemplateError",
    "load_template",
    "template_context",
]

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account
IMPLICIT_HTTP_API = "ServerlessHttpApi"  # what SAM calls the API it makes for events without ApiId

TABLE_TYPES = frozenset({"AWS::DynamoDB::Table"})
BUCKET_TYPES = frozenset({"AWS::S3::Bucket"})
FUNCTION_TYPES = frozenset({"AWS::Serverless::Function"})
STATE_MACHINE_TYPES = frozenset({"AWS::Serverless::StateMachine"})
HTTP_API_TYPES = frozenset({"AWS::Serverless::HttpApi"})
LAYER_TYPES = frozenset({"AWS::Serverless::LayerVersion"})
QUEUE_TYPES = frozenset({"AWS::SQS::Queue"})
LOG_GROUP_TYPES = frozenset({"AWS::Logs::LogGroup"})
EVENT_SOURCE_MAPPING_TYPES = frozenset({"AWS::Lambda::EventSourceMapping"})

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Naming:
    """How logical ids become local physical names and ARNs."""

    prefix: str = "pixelbatch-local"
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID

    def table(self, logical_id: str) -> str:
        return f"{self.prefix}-{logical_id}"

    def bucket(self, logical_id: str) -> str:
        name = re.sub(r"[^a-z0-9-]+", "-", f"{self.prefix}-{logical_id}".lower())
        name = re.sub(r"-{2,}", "-", name).strip("-")
        if len(name) > 63:  # keep it unique when truncating
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            name = f"{name[:54].rstrip('-')}-{digest}"
        if len(name) < 3 or not _BUCKET_NAME.match(name):
            raise TemplateError(f"cannot derive a valid bucket name for {logical_id!r}: {name!r}")
        return name

    def queue(self, logical_id: str) -> str:
        return f"{self.prefix}-{logical_id}"[:80]

    def queue_url(self, name: str) -> str:
        """What ``Ref`` gives for a queue, as on AWS; SQS requests name the queue by its URL."""
        return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}"

    def queue_arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"

    def lambda_arn(self, function_name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{function_name}"

    def state_machine_arn(self, name: str) -> str:
        return f"arn:aws:states:{self.region}:{self.account_id}:stateMachine:{name}"


@dataclass(frozen=True)
class Table:
    logical_id: str
    name: str
    properties: Mapping[str, Any]

    @property
    def key_schema(self) -> list[dict[str, str]]:
        return list(self.properties["KeySchema"])

    @property
    def attribute_definitions(self) -> list[dict[str, str]]:
        return list(self.properties["AttributeDefinitions"])

    @property
    def global_secondary_indexes(self) -> list[dict[str, Any]]:
        return list(self.properties.get("GlobalSecondaryIndexes", []))

    @property
    def local_secondary_indexes(self) -> list[dict[str, Any]]:
        return list(self.properties.get("LocalSecondaryIndexes", []))

    @property
    def ttl_attribute(self) -> str | None:
        spec = self.properties.get("TimeToLiveSpecification") or {}
        return spec.get("AttributeName") if spec.get("Enabled") else None

    @property
    def billing_mode(self) -> str:
        return str(self.properties.get("BillingMode", "PROVISIONED"))


@dataclass(frozen=True)
class Bucket:
    logical_id: str
    name: str
    properties: Mapping[str, Any]

    @property
    def cors_rules(self) -> list[dict[str, Any]]:
        return list((self.properties.get("CorsConfiguration") or {}).get("CorsRules", []))


@dataclass(frozen=True)
class Queue:
    logical_id: str
    name: str
    url: str
    arn: str
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class QueueSource:
    """An SQS event source mapping: Lambda polls the queue and invokes the function (or its
    alias) with batches of messages."""

    logical_id: str
    function_id: str
    qualifier: str | None
    queue_arn: str
    batch_size: int
    report_item_failures: bool
    enabled: bool


@dataclass(frozen=True)
class JwtAuthorizer:
    name: str
    issuer: str
    audience: tuple[str, ...]
    identity_source: str


@dataclass(frozen=True)
class HttpApi:
    logical_id: str
    api_id: str
    default_authorizer: str | None
    authorizers: Mapping[str, JwtAuthorizer]
    cors: Mapping[str, Any] | None


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function_id: str
    event_id: str
    api_logical_id: str
    authorizer: str | None

    @property
    def auth_required(self) -> bool:
        return self.authorizer is not None

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Schedule:
    """A Schedule/ScheduleV2 event: EventBridge invoking the function on a timer."""

    function_id: str
    event_id: str
    expression: str
    enabled: bool
    input: str | None

    @property
    def interval_seconds(self) -> int | None:
        """The period of a ``rate(...)`` expression; None for cron (not emulated)."""
        found = _RATE.match(self.expression.strip())
        if found is None:
            return None
        return int(found.group(1)) * _RATE_UNIT_SECONDS[found.group(2).rstrip("s")]


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    arn: str
    code_uri: Path
    handler: str
    runtime: str
    architectures: tuple[str, ...]
    timeout: int
    memory_size: int
    environment: Mapping[str, str]
    layer_paths: tuple[Path, ...]
    reserved_concurrency: int | None = None
    alias: str | None = None  # AutoPublishAlias: what the state machine and deploys invoke
    routes: tuple[Route, ...] = ()
    schedules: tuple[Schedule, ...] = ()

    @property
    def invoke_arn(self) -> str:
        """What the state machine invokes: the alias when deploys publish one."""
        return f"{self.arn}:{self.alias}" if self.alias else self.arn

    @property
    def handler_file(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_attribute(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    name: str
    arn: str
    type: str
    definition_uri: Path | None
    inline_definition: Mapping[str, Any] | None
    substitutions: Mapping[str, str]

    def definition(self) -> str:
        """The ASL with every ``${Key}`` of DefinitionSubstitutions filled in."""
        if self.definition_uri is not None:
            text = self.definition_uri.read_text(encoding="utf-8")
        else:
            text = json.dumps(self.inline_definition)
        for key, value in self.substitutions.items():
            text = text.replace("${" + key + "}", value)
        leftover = sorted(set(re.findall(r"\$\{([^}]*)\}", text)))
        if leftover:
            raise TemplateError(f"{self.logical_id}: no substitution for {leftover}")
        json.loads(text)  # fail here, not inside moto, if the file is not JSON
        return text


@dataclass(frozen=True)
class Template:
    path: Path
    naming: Naming
    parameters: Mapping[str, Any]
    tables: tuple[Table, ...]
    buckets: tuple[Bucket, ...]
    functions: tuple[Function, ...]
    state_machines: tuple[StateMachine, ...]
    http_apis: Mapping[str, HttpApi]
    raw: Mapping[str, Any] = field(repr=False)
    queues: tuple[Queue, ...] = ()
    queue_sources: tuple[QueueSource, ...] = ()

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(route for function in self.functions for route in function.routes)

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        return tuple(s for function in self.functions for s in function.schedules)

    def function(self, key: str) -> Function:
        """Find a function by logical id, function name or CodeUri (``functions/x/`` or ``x``)."""
        wanted = key.strip().rstrip("/")
        for function in self.functions:
            code_uri = function.code_uri
            candidates = {function.logical_id, function.name, code_uri.name, str(code_uri)}
            if code_uri.is_relative_to(self.root):
                candidates.add(code_uri.relative_to(self.root).as_posix())
            if wanted in candidates:
                return function
        raise KeyError(f"no function {key!r} in {self.path}")

    def environment(self) -> dict[str, str]:
        """The union of every function's variables; a conflicting value is a template error."""
        merged: dict[str, str] = {}
        for function in self.functions:
            for name, value in function.environment.items():
                if merged.setdefault(name, value) != value:
                    raise TemplateError(f"environment variable {name} differs between functions")
        return merged


def load_template(
    path: Path,
    naming: Naming | None = None,
    parameter_overrides: Mapping[str, str] | None = None,
) -> Template:
    """Read ``path`` and resolve it for the local stack."""
    path = Path(os.path.abspath(path))
    naming = naming or Naming()
    raw = load_yaml(path)
    resources: dict[str, Any] = raw.get("Resources") or {}
    parameters = _parameter_values(raw.get("Parameters") or {}, parameter_overrides or {})
    physical = _physical_ids(resources, naming, parameters)
    ctx = _context(raw, naming, parameters, physical)
    globals_ = raw.get("Globals") or {}
    http_apis = _http_apis(resources, globals_.get("HttpApi") or {}, physical, ctx)
    functions = tuple(
        _functions(resources, globals_.get("Function") or {}, physical, http_apis, ctx, path)
    )
    queues = tuple(_queues(resources, naming, ctx))
    return Template(
        path=path,
        naming=naming,
        parameters=parameters,
        tables=tuple(_tables(resources, physical, ctx)),
        buckets=tuple(_buckets(resources, physical, ctx)),
        functions=functions,
        state_machines=tuple(_state_machines(resources, physical, ctx, path)),
        http_apis=http_apis,
        raw=raw,
        queues=queues,
        queue_sources=tuple(_queue_sources(resources, functions, queues, ctx)),
    )


def template_context(template: Template) -> Context:
    """How intrinsics resolve in ``template``: for documents derived from it, such as the
    translated template's roles, whose resources keep their logical ids."""
    raw = template.raw
    physical = _physical_ids(raw.get("Resources") or {}, template.naming, template.parameters)
    return _context(raw, template.naming, template.parameters, physical)


def _context(raw: Mapping[str, Any], naming: Naming, parameters: Mapping[str, Any],
             physical: Mapping[str, str]) -> Context:
    resources = raw.get("Resources") or {}
    return Context(
        parameters=parameters,
        pseudo=_pseudo_parameters(naming),
        refs={**physical, **_alias_refs(resources, naming, physical)},
        attributes=_attribute_resolver(resources, physical, naming),
        condition_defs=raw.get("Conditions") or {},
        mappings=raw.get("Mappings") or {},
    )


# ---------------------------------------------------------------- parameters and names


def _parameter_values(
    declared: Mapping[str, Any], overrides: Mapping[str, str]
) -> dict[str, Any]:
    unknown = set(overrides) - set(declared)
    if unknown:
        raise TemplateError(f"unknown parameters {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name not in overrides and "Default" not in spec:
            raise TemplateError(f"parameter {name} has no Default and no override")
        value = overrides.get(name, spec.get("Default"))
        allowed = spec.get("AllowedValues")
        if allowed is not None and str(value) not in [str(item) for item in allowed]:
            raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        kind = str(spec.get("Type", "String"))
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            value = [item.strip() for item in str(value).split(",")] if value != "" else []
        values[name] = value
    return values


def _pseudo_parameters(naming: Naming) -> dict[str, Any]:
    return {
        "AWS::Region": naming.region,
        "AWS::AccountId": naming.account_id,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": naming.prefix,
        "AWS::StackId": (
            f"arn:aws:cloudformation:{naming.region}:{naming.account_id}:stack/{naming.prefix}/local"
        ),
        "AWS::NotificationARNs": [],
    }


_EXPLICIT_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Serverless::StateMachine": "Name",
}


def _explicit_name(resource: Mapping[str, Any], parameters: Mapping[str, Any],
                   naming: Naming) -> str | None:
    prop = _EXPLICIT_NAME_PROPERTY.get(resource.get("Type", ""))
    value = (resource.get("Properties") or {}).get(prop) if prop else None
    if value is None:
        return None
    # Only parameters and pseudo parameters: a name may not depend on another resource.
    ctx = Context(parameters, _pseudo_parameters(naming), {}, _no_attributes)
    return str(resolve(value, ctx))


def _no_attributes(resource: str, attribute: str) -> str:
    raise TemplateError(f"a resource name cannot use Fn::GetAtt {resource}.{attribute}")


def _physical_ids(resources: Mapping[str, Any], naming: Naming,
                  parameters: Mapping[str, Any]) -> dict[str, str]:
    """What ``Ref`` returns for each resource; unmodelled resources get their logical id."""
    ids: dict[str, str] = {}
    for logical_id, resource in resources.items():
        kind = resource.get("Type", "")
        name = _explicit_name(resource, parameters, naming)
        if kind in TABLE_TYPES:
            ids[logical_id] = name or naming.table(logical_id)
        elif kind in BUCKET_TYPES:
            ids[logical_id] = name or naming.bucket(logical_id)
        elif kind in STATE_MACHINE_TYPES:
            ids[logical_id] = naming.state_machine_arn(name or logical_id)
        elif kind in QUEUE_TYPES:
            ids[logical_id] = naming.queue_url(naming.queue(logical_id))
        else:
            ids[logical_id] = name or logical_id
    return ids


def _alias_refs(resources: Mapping[str, Any], naming: Naming,
                physical: Mapping[str, str]) -> dict[str, str]:
    """SAM's ``!Ref Fn.Alias`` (and the translated template's ``FnAlias<name>``) is the alias
    ARN, as on AWS; ``!Ref Fn.Version`` names the function, whose local code is current."""
    refs: dict[str, str] = {}
    for logical_id, resource in _of_type(resources, FUNCTION_TYPES):
        alias = (resource.get("Properties") or {}).get("AutoPublishAlias")
        if alias:
            arn = naming.lambda_arn(physical[logical_id])
            refs[f"{logical_id}.Alias"] = refs[f"{logical_id}Alias{alias}"] = f"{arn}:{alias}"
            refs[f"{logical_id}.Version"] = arn
    return refs


def _attribute_resolver(resources: Mapping[str, Any], physical: Mapping[str, str],
                        naming: Naming) -> Any:
    region, account = naming.region, naming.account_id

    def attribute(logical_id: str, name: str) -> str:
        if logical_id not in resources:
            raise TemplateError(f"Fn::GetAtt on unknown resource {logical_id!r}")
        kind, ref = resources[logical_id].get("Type", ""), physical[logical_id]
        table_arn = f"arn:aws:dynamodb:{region}:{account}:table/{ref}"
        known: dict[tuple[frozenset[str], str], str] = {
            (TABLE_TYPES, "Arn"): table_arn,
            (TABLE_TYPES, "StreamArn"): f"{table_arn}/stream/local",
            (BUCKET_TYPES, "Arn"): f"arn:aws:s3:::{ref}",
            (BUCKET_TYPES, "DomainName"): f"{ref}.s3.amazonaws.com",
            (BUCKET_TYPES, "RegionalDomainName"): f"{ref}.s3.{region}.amazonaws.com",
            (FUNCTION_TYPES, "Arn"): naming.lambda_arn(ref),
            (STATE_MACHINE_TYPES, "Arn"): ref,
            (STATE_MACHINE_TYPES, "Name"): ref.rpartition(":")[2],
            (QUEUE_TYPES, "Arn"): naming.queue_arn(naming.queue(logical_id)),
            (QUEUE_TYPES, "QueueName"): naming.queue(logical_id),
            (LOG_GROUP_TYPES, "Arn"): f"arn:aws:logs:{region}:{account}:log-group:{ref}:*",
        }
        for (kinds, attr), value in known.items():
            if kind in kinds and attr == name:
                return value
        raise TemplateError(f"Fn::GetAtt {logical_id}.{name} ({kind}) is not modelled locally")

    return attribute


def _of_type(resources: Mapping[str, Any], kinds: frozenset[str]) -> Iterable[tuple[str, Any]]:
    for logical_id, resource in resources.items():
        if resource.get("Type") in kinds:
            yield logical_id, resource


# ---------------------------------------------------------------- tables and buckets


def _tables(resources: Mapping[str, Any], physical: Mapping[str, str],
            ctx: Context) -> Iterable[Table]:
    for logical_id, resource in _of_type(resources, TABLE_TYPES):
        if not _condition_holds(resource, ctx):
            continue
        properties = resolve(resource.get("Properties") or {}, ctx)
        yield Table(logical_id, physical[logical_id], properties)


def _buckets(resources: Mapping[str, Any], physical: Mapping[str, str],
             ctx: Context) -> Iterable[Bucket]:
    for logical_id, resource in _of_type(resources, BUCKET_TYPES):
        if not _condition_holds(resource, ctx):
            continue
        properties = resolve(resource.get("Properties") or {}, ctx)
        yield Bucket(logical_id, physical[logical_id], properties)


def _condition_holds(resource: Mapping[str, Any], ctx: Context) -> bool:
    name = resource.get("Condition")
    return True if name is None else ctx.condition(name)


# ---------------------------------------------------------------- queues


def _queues(resources: Mapping[str, Any], naming: Naming, ctx: Context) -> Iterable[Queue]:
    for logical_id, resource in _of_type(resources, QUEUE_TYPES):
        if not _condition_holds(resource, ctx):
            continue
        name = naming.queue(logical_id)
        properties = resolve(resource.get("Properties") or {}, ctx)
        yield Queue(logical_id, name, naming.queue_url(name), naming.queue_arn(name), properties)


def _queue_sources(resources: Mapping[str, Any], functions: tuple[Function, ...],
                   queues: tuple[Queue, ...], ctx: Context) -> Iterable[QueueSource]:
    queue_arns = {queue.arn for queue in queues}
    for logical_id, resource in _of_type(resources, EVENT_SOURCE_MAPPING_TYPES):
        props = resolve(resource.get("Properties") or {}, ctx)
        source = str(props.get("EventSourceArn", ""))
        if source not in queue_arns:
            raise TemplateError(f"{logical_id}: only SQS queues of the template are emulated")
        target = str(props.get("FunctionName", ""))
        function = next((f for f in functions if target in (f.name, f.arn, f.invoke_arn)), None)
        if function is None:
            raise TemplateError(f"{logical_id}: FunctionName {target!r} is not a function here")
        yield QueueSource(
            logical_id=logical_id,
            function_id=function.logical_id,
            qualifier=function.alias if target == function.invoke_arn != function.arn else None,
            queue_arn=source,
            batch_size=int(props.get("BatchSize", 10)),
            report_item_failures="ReportBatchItemFailures" in (
                props.get("FunctionResponseTypes") or []),
            enabled=bool(props.get("Enabled", True)),
        )


# ---------------------------------------------------------------- HTTP APIs


def _http_apis(resources: Mapping[str, Any], globals_api: Mapping[str, Any],
               physical: Mapping[str, str], ctx: Context) -> dict[str, HttpApi]:
    apis: dict[str, HttpApi] = {}
    if _uses_implicit_api(resources):
        apis[IMPLICIT_HTTP_API] = _http_api(IMPLICIT_HTTP_API, IMPLICIT_HTTP_API, globals_api, ctx)
    for logical_id, resource in _of_type(resources, HTTP_API_TYPES):
        properties = _merge_globals(globals_api, resource.get("Properties") or {})
        apis[logical_id] = _http_api(logical_id, physical[logical_id], properties, ctx)
    return apis


def _uses_implicit_api(resources: Mapping[str, Any]) -> bool:
    return any(
        event.get("Type") == "HttpApi" and "ApiId" not in (event.get("Properties") or {})
        for _, resource in _of_type(resources, FUNCTION_TYPES)
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values()
    )


def _http_api(logical_id: str, api_id: str, properties: Mapping[str, Any],
              ctx: Context) -> HttpApi:
    auth = properties.get("Auth") or {}
    authorizers = {
        name: _jwt_authorizer(name, resolve(spec, ctx))
        for name, spec in (auth.get("Authorizers") or {}).items()
    }
    default = auth.get("DefaultAuthorizer")
    if default is not None and default not in authorizers:
        raise TemplateError(f"{logical_id}: DefaultAuthorizer {default!r} is not declared")
    cors = properties.get("CorsConfiguration")
    return HttpApi(
        logical_id=logical_id,
        api_id=api_id,
        default_authorizer=default,
        authorizers=authorizers,
        cors=resolve(cors, ctx) if isinstance(cors, dict) else None,
    )


def _jwt_authorizer(name: str, spec: Mapping[str, Any]) -> JwtAuthorizer:
    jwt = spec.get("JwtConfiguration")
    if not jwt:
        raise TemplateError(f"authorizer {name!r} is not a JWT authorizer (not emulated locally)")
    audience = jwt.get("audience") or jwt.get("Audience") or []
    return JwtAuthorizer(
        name=name,
        issuer=str(jwt.get("issuer") or jwt.get("Issuer")),
        audience=tuple(str(item) for item in audience),
        identity_source=str(spec.get("IdentitySource", "$request.header.Authorization")),
    )


def _routes(function_id: str, events: Mapping[str, Any],
            http_apis: Mapping[str, HttpApi]) -> Iterable[Route]:
    for event_id, event in events.items():
        if event.get("Type") != "HttpApi":
            continue
        props = event.get("Properties") or {}
        api_logical_id = _ref_target(props.get("ApiId")) or IMPLICIT_HTTP_API
        api = http_apis.get(api_logical_id)
        if api is None:
            raise TemplateError(f"{function_id}.{event_id}: unknown ApiId {api_logical_id!r}")
        if "Path" not in props or "Method" not in props:
            raise TemplateError(f"{function_id}.{event_id}: catch-all routes are not emulated")
        authorizer = (props.get("Auth") or {}).get("Authorizer", api.default_authorizer)
        yield Route(
            method=str(props["Method"]).upper(),
            path=str(props["Path"]),
            function_id=function_id,
            event_id=event_id,
            api_logical_id=api_logical_id,
            authorizer=None if authorizer in (None, "NONE") else authorizer,
        )


_SCHEDULE_KEYS = ("Schedule", "Enabled", "ScheduleExpression", "State", "Input")


def _schedules(function_id: str, events: Mapping[str, Any], ctx: Context
               ) -> Iterable[Schedule]:
    for event_id, event in events.items():
        kind = event.get("Type")
        if kind not in ("Schedule", "ScheduleV2"):
            continue
        # Only what the local timer uses: DeadLetterConfig, RetryPolicy and the like name
        # resources the local stack does not build.
        raw_props = event.get("Properties") or {}
        props = resolve({key: raw_props[key] for key in _SCHEDULE_KEYS if key in raw_props}, ctx)
        if kind == "Schedule":
            expression, enabled = props.get("Schedule"), props.get("Enabled", True)
        else:
            expression = props.get("ScheduleExpression")
            enabled = props.get("State", "ENABLED") == "ENABLED"
        payload = props.get("Input")
        yield Schedule(
            function_id=function_id,
            event_id=event_id,
            expression=str(expression),
            enabled=bool(enabled),
            input=None if payload is None else str(payload),
        )


def _ref_target(value: Any) -> str | None:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return str(value["Ref"])
    return None if value is None else str(value)


# ---------------------------------------------------------------- functions


def _merge_globals(globals_: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rules: maps merge (resource wins), lists add up, scalars are replaced."""
    merged: dict[str, Any] = dict(globals_)
    for key, value in own.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = _merge_globals(base, value)
        elif isinstance(base, list) and isinstance(value, list):
            merged[key] = base + value
        else:
            merged[key] = value
    return merged


def _local_path(root: Path, uri: Any) -> Path:
    if not isinstance(uri, str):
        raise TemplateError(f"{uri!r} is not a local path (S3 locations are not emulated)")
    return Path(os.path.normpath(root / uri))


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _env_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TemplateError(f"environment value {value!r} is not a scalar")


def _layer_paths(layers: list[Any], resources: Mapping[str, Any], root: Path) -> tuple[Path, ...]:
    paths: list[Path] = []
    for layer in layers:
        target = _ref_target(layer)
        resource = resources.get(target or "")
        if resource is None or resource.get("Type") not in LAYER_TYPES:
            continue  # a published layer ARN: nothing local to add
        content = _local_path(root, resource["Properties"]["ContentUri"])
        paths.append(content / "python" if (content / "python").is_dir() else content)
    return tuple(paths)


def _functions(resources: Mapping[str, Any], globals_fn: Mapping[str, Any],
               physical: Mapping[str, str], http_apis: Mapping[str, HttpApi],
               ctx: Context, path: Path) -> Iterable[Function]:
    root = path.parent
    for logical_id, resource in _of_type(resources, FUNCTION_TYPES):
        props = _merge_globals(globals_fn, resource.get("Properties") or {})
        if "CodeUri" not in props or "Handler" not in props:
            raise TemplateError(f"{logical_id}: needs CodeUri and Handler to run locally")
        variables = resolve((props.get("Environment") or {}).get("Variables") or {}, ctx)
        name = physical[logical_id]
        yield Function(
            logical_id=logical_id,
            name=name,
            arn=ctx.attributes(logical_id, "Arn"),
            code_uri=_local_path(root, resolve(props["CodeUri"], ctx)),
            handler=str(props["Handler"]),
            runtime=str(props.get("Runtime", "python3.11")),
            architectures=tuple(props.get("Architectures") or ["x86_64"]),
            timeout=int(resolve(props.get("Timeout", 3), ctx)),
            memory_size=int(resolve(props.get("MemorySize", 128), ctx)),
            environment={key: _env_string(value) for key, value in variables.items()},
            layer_paths=_layer_paths(list(props.get("Layers") or []), resources, root),
            reserved_concurrency=_optional_int(resolve(props.get("ReservedConcurrentExecutions"),
                                                       ctx)),
            alias=resolve(props.get("AutoPublishAlias"), ctx),
            routes=tuple(_routes(logical_id, props.get("Events") or {}, http_apis)),
            schedules=tuple(_schedules(logical_id, props.get("Events") or {}, ctx)),
        )


# ---------------------------------------------------------------- state machines


def _state_machines(resources: Mapping[str, Any], physical: Mapping[str, str],
                    ctx: Context, path: Path) -> Iterable[StateMachine]:
    for logical_id, resource in _of_type(resources, STATE_MACHINE_TYPES):
        props = resource.get("Properties") or {}
        uri = props.get("DefinitionUri")
        if uri is not None and not isinstance(uri, str):
            raise TemplateError(f"{logical_id}: DefinitionUri must be a local file path")
        inline = props.get("Definition")
        if uri is None and inline is None:
            raise TemplateError(f"{logical_id}: needs DefinitionUri or Definition")
        arn = physical[logical_id]
        substitutions = resolve(props.get("DefinitionSubstitutions") or {}, ctx)
        yield StateMachine(
            logical_id=logical_id,
            name=arn.rpartition(":")[2],
            arn=arn,
            type=str(props.get("Type", "STANDARD")),
            definition_uri=_local_path(path.parent, uri) if uri else None,
            inline_definition=resolve(inline, ctx) if inline is not None else None,
            substitutions={key: _env_string(value) for key, value in substitutions.items()},
        )
