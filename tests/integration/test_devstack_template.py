"""The template model against template.yaml itself: expectations come from walking the raw YAML
with a loader of this test's own, so nothing about the resources is written down twice."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.cfn import TemplateError
from devstack.resources import create_table_request
from devstack.template import Naming, Template, load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
BUCKET_NAME = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class _RawLoader(yaml.SafeLoader):
    """Keeps short tags as {"!Tag": value}: enough to read keys, types and literal values."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        return {"!" + suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {"!" + suffix: loader.construct_sequence(node, deep=True)}
    return {"!" + suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_RawLoader.add_multi_constructor("!", _tagged)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_RawLoader)
    return data


@pytest.fixture(scope="module")
def model() -> Template:
    return load_template(TEMPLATE)


def _resources(raw: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in raw["Resources"].items():
        if resource["Type"] == kind:
            yield logical_id, resource.get("Properties") or {}


def _index_shape(indexes: list[dict[str, Any]]) -> dict[str, Any]:
    return {index["IndexName"]: (index["KeySchema"], index["Projection"]) for index in indexes}


# ---------------------------------------------------------------- tables and buckets


def test_every_table_is_modelled_with_its_keys_indexes_and_ttl(
    raw: dict[str, Any], model: Template
) -> None:
    expected = dict(_resources(raw, "AWS::DynamoDB::Table"))
    tables = {table.logical_id: table for table in model.tables}
    assert set(tables) == set(expected) and expected

    for logical_id, props in expected.items():
        table = tables[logical_id]
        request = create_table_request(table)
        assert request["TableName"] == table.name
        assert request["KeySchema"] == props["KeySchema"]
        assert request["AttributeDefinitions"] == props["AttributeDefinitions"]
        assert _index_shape(request.get("GlobalSecondaryIndexes", [])) == _index_shape(
            props.get("GlobalSecondaryIndexes", [])
        )
        assert _index_shape(request.get("LocalSecondaryIndexes", [])) == _index_shape(
            props.get("LocalSecondaryIndexes", [])
        )
        ttl = props.get("TimeToLiveSpecification") or {}
        assert table.ttl_attribute == (ttl.get("AttributeName") if ttl.get("Enabled") else None)


def test_table_names_are_distinct_and_prefixed(model: Template) -> None:
    names = [table.name for table in model.tables]
    assert len(set(names)) == len(names)
    assert all(name.startswith(model.naming.prefix) for name in names)


def test_every_bucket_gets_a_valid_s3_name(raw: dict[str, Any], model: Template) -> None:
    expected = dict(_resources(raw, "AWS::S3::Bucket"))
    buckets = {bucket.logical_id: bucket for bucket in model.buckets}
    assert set(buckets) == set(expected) and expected
    for logical_id, props in expected.items():
        assert BUCKET_NAME.match(buckets[logical_id].name), buckets[logical_id].name
        cors = (props.get("CorsConfiguration") or {}).get("CorsRules", [])
        modelled = buckets[logical_id].cors_rules
        assert [set(rule) for rule in modelled] == [set(rule) for rule in cors]
        for rule, raw_rule in zip(modelled, cors, strict=True):
            assert rule["AllowedMethods"] == raw_rule["AllowedMethods"]
            assert all(isinstance(origin, str) and "${" not in origin
                       for origin in rule["AllowedOrigins"])


def test_long_or_odd_logical_ids_still_make_valid_bucket_names() -> None:
    naming = Naming(prefix="Some_Prefix")
    for logical_id in ("X" * 80, "Uploads_Bucket", "a"):
        assert BUCKET_NAME.match(naming.bucket(logical_id))
    assert naming.bucket("X" * 80) != naming.bucket("X" * 81)


# ---------------------------------------------------------------- functions and routes


def test_every_function_is_modelled_from_globals_and_its_own_properties(
    raw: dict[str, Any], model: Template
) -> None:
    globals_fn = raw.get("Globals", {}).get("Function", {})
    expected = dict(_resources(raw, "AWS::Serverless::Function"))
    functions = {function.logical_id: function for function in model.functions}
    assert set(functions) == set(expected) and expected

    for logical_id, props in expected.items():
        function = functions[logical_id]
        assert function.code_uri == (REPO / props["CodeUri"]).resolve()
        assert function.handler == props["Handler"]
        assert function.timeout == props.get("Timeout", globals_fn.get("Timeout"))
        assert function.memory_size == props.get("MemorySize", globals_fn.get("MemorySize"))
        variables = {
            **globals_fn.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        assert set(function.environment) == set(variables)
        # Empty only where the template says so: a parameter whose default is empty.
        may_be_empty = {name for name, value in variables.items()
                        if _parameters_with_empty_default(raw) & _refs_in(value)}
        assert all(isinstance(value, str) for value in function.environment.values())
        assert all(value for name, value in function.environment.items()
                   if name not in may_be_empty), logical_id


def _parameters_with_empty_default(raw: dict[str, Any]) -> set[str]:
    return {name for name, spec in raw.get("Parameters", {}).items() if spec.get("Default") == ""}


def _refs_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["!Ref"]} if isinstance(value.get("!Ref"), str) else set()
        return found.union(*(_refs_in(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs_in(item) for item in value))
    return set()


def test_environment_references_resolve_to_the_local_names(
    raw: dict[str, Any], model: Template
) -> None:
    physical = {table.logical_id: table.name for table in model.tables}
    physical |= {bucket.logical_id: bucket.name for bucket in model.buckets}
    physical |= {machine.logical_id: machine.arn for machine in model.state_machines}
    env = model.environment()
    variables = dict(raw.get("Globals", {}).get("Function", {}).get("Environment", {}).get(
        "Variables", {}))
    for _, props in _resources(raw, "AWS::Serverless::Function"):
        variables |= props.get("Environment", {}).get("Variables", {})
    refs = {name: value["!Ref"] for name, value in variables.items()
            if isinstance(value, dict) and value.get("!Ref") in physical}
    assert refs, "the template passes no resource names to its functions?"
    for name, logical_id in refs.items():
        assert env[name] == physical[logical_id]


def _raw_routes(raw: dict[str, Any]) -> set[tuple[str, str, str, bool]]:
    apis = dict(_resources(raw, "AWS::Serverless::HttpApi"))
    routes = set()
    for logical_id, props in _resources(raw, "AWS::Serverless::Function"):
        for event in (props.get("Events") or {}).values():
            if event["Type"] != "HttpApi":
                continue
            p = event["Properties"]
            api = apis.get(p.get("ApiId", {}).get("!Ref"), {})
            default = api.get("Auth", {}).get("DefaultAuthorizer")
            authorizer = p.get("Auth", {}).get("Authorizer", default)
            needs_auth = authorizer not in (None, "NONE")
            routes.add((logical_id, p["Method"].upper(), p["Path"], needs_auth))
    return routes


def test_every_http_api_event_is_a_route_with_its_auth(
    raw: dict[str, Any], model: Template
) -> None:
    expected = _raw_routes(raw)
    actual = {(r.function_id, r.method, r.path, r.auth_required) for r in model.routes}
    assert expected and actual == expected
    assert len({route.route_key for route in model.routes}) == len(model.routes)


def test_the_jwt_authorizer_is_resolved_for_the_gateway(model: Template) -> None:
    authorizers = [a for api in model.http_apis.values() for a in api.authorizers.values()]
    for authorizer in authorizers:
        assert authorizer.issuer.startswith("https://") and "${" not in authorizer.issuer
        assert authorizer.audience and all(authorizer.audience)


@pytest.mark.parametrize("key_of", [
    lambda f, root: f.logical_id,
    lambda f, root: f.code_uri.relative_to(root).as_posix() + "/",
    lambda f, root: f.code_uri.name,
])
def test_functions_are_found_by_logical_id_or_code_uri(model: Template, key_of: Any) -> None:
    for function in model.functions:
        assert model.function(key_of(function, model.root)) is function


# ---------------------------------------------------------------- the state machine


def test_state_machine_is_the_real_file_with_every_substitution_filled(
    raw: dict[str, Any], model: Template
) -> None:
    expected = dict(_resources(raw, "AWS::Serverless::StateMachine"))
    machines = {machine.logical_id: machine for machine in model.state_machines}
    assert set(machines) == set(expected) and expected
    arns = {function.invoke_arn for function in model.functions}

    for logical_id, props in expected.items():
        machine = machines[logical_id]
        assert machine.definition_uri == (REPO / props["DefinitionUri"]).resolve()
        source = machine.definition_uri.read_text()
        for key in props.get("DefinitionSubstitutions", {}):
            assert "${" + key + "}" in source, f"{key} is never used by the ASL"
        definition = machine.definition()
        assert "${" not in definition
        used = set(re.findall(r'"FunctionName":\s*"([^"]+)"', definition))
        assert used and used <= arns
        json.loads(definition)


# ---------------------------------------------------------------- intrinsics


_SMALL_TEMPLATE = """
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Hosts: {Type: CommaDelimitedList, Default: "a.example, b.example"}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
Globals:
  Function:
    Timeout: 10
    Environment:
      Variables: {SHARED: one, OVERRIDDEN: global}
Resources:
  Things:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      BillingMode: !If [IsProd, PAY_PER_REQUEST, !Ref "AWS::NoValue"]
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/fn/
      Handler: pkg.app.handler
      Environment:
        Variables:
          OVERRIDDEN: own
          ARN: !GetAtt Things.Arn
          ARN_LONG: {"Fn::GetAtt": [Things, Arn]}
          SUB: !Sub "${AWS::Region}/${Things}/${Things.Arn}/${!Literal}/${Stage}"
          SUB_VARS: !Sub ["${x}-${Stage}", {x: !Select [1, !Ref Hosts]}]
          JOINED: !Join [";", !Ref Hosts]
          SPLIT_FIRST: !Select [0, !Split ["/", "left/right"]]
          WHEN: !If [NotProd, small, big]
          FLAG: true
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: machine.json
      DefinitionSubstitutions: {FnArn: !GetAtt Fn.Arn, MachineName: !GetAtt Machine.Name}
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    (tmp_path / "template.yaml").write_text(_SMALL_TEMPLATE)
    (tmp_path / "machine.json").write_text(json.dumps(
        {"StartAt": "A", "Comment": "${MachineName}",
         "States": {"A": {"Type": "Task", "Resource": "${FnArn}", "End": True}}}
    ))
    return tmp_path / "template.yaml"


def test_intrinsics_resolve_against_local_names(small: Path) -> None:
    model = load_template(small, Naming(prefix="t", region="eu-west-1"))
    env = model.function("Fn").environment
    table_arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/t-Things"
    assert env["ARN"] == env["ARN_LONG"] == table_arn
    assert env["SUB"] == f"eu-west-1/t-Things/{table_arn}/${{Literal}}/dev"
    assert env["SUB_VARS"] == "b.example-dev"
    assert env["JOINED"] == "a.example;b.example"
    assert env["SPLIT_FIRST"] == "left"
    assert env["WHEN"] == "small"
    assert env["FLAG"] == "true"
    assert env["SHARED"] == "one" and env["OVERRIDDEN"] == "own"
    assert model.function("Fn").timeout == 10
    assert model.function("Fn").handler_file == small.parent / "functions/fn/pkg/app.py"
    assert "BillingMode" not in model.tables[0].properties  # AWS::NoValue drops the key


def test_parameter_overrides_flip_conditions(small: Path) -> None:
    model = load_template(small, parameter_overrides={"Stage": "prod"})
    assert model.function("Fn").environment["WHEN"] == "big"
    assert model.tables[0].properties["BillingMode"] == "PAY_PER_REQUEST"
    with pytest.raises(TemplateError):
        load_template(small, parameter_overrides={"Stage": "qa"})


def test_state_machine_substitutions_use_getatt(small: Path) -> None:
    machine = load_template(small).state_machines[0]
    definition = json.loads(machine.definition())
    assert definition["States"]["A"]["Resource"].endswith(":function:Fn")
    assert definition["Comment"] == "Machine"


def test_real_template_conditions_follow_the_stage(raw: dict[str, Any]) -> None:
    # OutputsBucket's expiry is !If [IsProd, long, short] in template.yaml
    for logical_id, props in _resources(raw, "AWS::S3::Bucket"):
        for index, rule in enumerate(props.get("LifecycleConfiguration", {}).get("Rules", [])):
            choice = rule.get("ExpirationInDays")
            if not (isinstance(choice, dict) and "!If" in choice):
                continue
            _, when_true, when_false = choice["!If"]
            for stage, expected in (("prod", when_true), ("dev", when_false)):
                model = load_template(TEMPLATE, parameter_overrides={"Stage": stage})
                bucket = next(b for b in model.buckets if b.logical_id == logical_id)
                rules = bucket.properties["LifecycleConfiguration"]["Rules"]
                assert rules[index]["ExpirationInDays"] == expected


def test_unquoted_braces_in_a_flow_mapping_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("Resources:\n  F: {Type: X, Properties: { Path: /a/{id} }}\n")
    with pytest.raises(TemplateError, match="not valid YAML"):
        load_template(path)


def test_unknown_references_are_errors_not_silent_strings(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        "      CodeUri: f/\n      Handler: app.h\n"
        "      Environment: {Variables: {X: !Ref Missing}}\n"
    )
    with pytest.raises(TemplateError, match="Missing"):
        load_template(path)
