"""statemachine/batch.asl.json as Step Functions will get it: DefinitionSubstitutions filled in
with well-formed stand-ins of what CloudFormation substitutes, then checked by statelint (the
Python port of awslabs' Amazon States Language validator: fields, types, transitions, reachability,
terminal states, Map processors, Retry/Catch).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any, Final

import pytest
from statelint.config import Config
from statelint.linter import Linter

from tests.deploy.cfn_yaml import load, resources_of_type
from tests.deploy.tooling import REGION, REGIONS, REPO, TEMPLATE

ACCOUNT: Final = "123456789012"
STACK: Final = "pixelbatch-dev"
PLACEHOLDER: Final = re.compile(r"\$\{([^}]+)\}")
LAMBDA_ARN: Final = re.compile(
    r"^arn:aws:lambda:[a-z]{2}(-[a-z]+)+-\d:\d{12}:function:[A-Za-z0-9_-]{1,64}"
    r"(:[A-Za-z0-9_-]{1,128})?$"
)


def _state_machines() -> dict[str, dict[str, Any]]:
    return resources_of_type(load(TEMPLATE), "AWS::Serverless::StateMachine")


def stand_in(value: Any, resources: dict[str, Any], region: str = REGION) -> str:
    """What CloudFormation would substitute for `value`, with made-up but well-formed ids."""
    if isinstance(value, str):
        return value
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    if isinstance(value, dict) and list(value) == ["Ref"] and value["Ref"].endswith(".Alias"):
        # SAM's reference to a function's AutoPublishAlias: the alias-qualified ARN.
        logical_id = value["Ref"].removesuffix(".Alias")
        alias = resources[logical_id]["Properties"]["AutoPublishAlias"]
        name = f"{STACK}-{logical_id}-A1B2C3D4E5F6"[:64]
        return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}:{alias}"
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
        logical_id, attribute = value["Fn::GetAtt"]
        kind = resources[logical_id]["Type"]
        if kind == "AWS::Serverless::Function" and attribute == "Arn":
            name = f"{STACK}-{logical_id}-A1B2C3D4E5F6"[:64]
            return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"
    raise AssertionError(f"no stand-in for {value!r}: teach stand_in() what it resolves to")


def substituted(machine: dict[str, Any], region: str = REGION) -> tuple[str, dict[str, str]]:
    """The definition text with every ${Key} replaced, as Step Functions receives it."""
    properties = machine["Properties"]
    text = (REPO / properties["DefinitionUri"]).read_text(encoding="utf-8")
    resources = load(TEMPLATE)["Resources"]
    values = {
        key: stand_in(value, resources, region)
        for key, value in (properties.get("DefinitionSubstitutions") or {}).items()
    }
    return PLACEHOLDER.sub(lambda found: values[found.group(1)], text), values


def lintable(definition: dict[str, Any]) -> dict[str, Any]:
    """statelint (like the Ruby original) wants BackoffRate written as a JSON float; Step
    Functions takes any number >= 1, so whole numbers become floats and the range check stays."""
    copied = copy.deepcopy(definition)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            rate = node.get("BackoffRate")
            if isinstance(rate, int) and not isinstance(rate, bool):
                node["BackoffRate"] = float(rate)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(copied)
    return copied


def lint(definition: dict[str, Any]) -> list[str]:
    return list(Linter.validate(lintable(definition), Config()))


MACHINES = _state_machines()


@pytest.mark.parametrize("logical_id", sorted(MACHINES))
def test_every_placeholder_has_a_substitution_and_every_substitution_is_used(
    logical_id: str,
) -> None:
    properties = MACHINES[logical_id]["Properties"]
    text = (REPO / properties["DefinitionUri"]).read_text(encoding="utf-8")
    placeholders = set(PLACEHOLDER.findall(text))
    assert placeholders == set(properties.get("DefinitionSubstitutions") or {})


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("logical_id", sorted(MACHINES))
def test_the_substituted_definition_is_valid_states_language(logical_id: str, region: str
                                                             ) -> None:
    text, values = substituted(MACHINES[logical_id], region)
    assert not PLACEHOLDER.search(text)
    for value in _function_arns(values):
        assert LAMBDA_ARN.fullmatch(value) and f":lambda:{region}:" in value, value
    assert values.get("Partition") == "aws", "task resources must name the partition"
    problems = lint(json.loads(text))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("logical_id", sorted(MACHINES))
def test_every_lambda_task_invokes_a_function_of_the_template(logical_id: str) -> None:
    text, values = substituted(MACHINES[logical_id])
    invoked = {
        state["Parameters"]["FunctionName"]
        for state in _states(json.loads(text))
        if state.get("Resource") == "arn:aws:states:::lambda:invoke"
    }
    assert invoked == _function_arns(values)


def _function_arns(values: dict[str, str]) -> set[str]:
    return {value for key, value in values.items() if key.endswith("FunctionArn")}


def _states(definition: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for state in definition.get("States", {}).values():
        found.append(state)
        for nested in ("ItemProcessor", "Iterator"):
            if nested in state:
                found += _states(state[nested])
        for branch in state.get("Branches", []):
            found += _states(branch)
    return found


def _first(definition: dict[str, Any], has: str) -> dict[str, Any]:
    return next(state for state in _states(definition) if has in state)


def _dangling_next(definition: dict[str, Any]) -> None:
    _first(definition, "Next")["Next"] = "NoSuchState"


def _slow_backoff(definition: dict[str, Any]) -> None:
    _first(definition, "Retry")["Retry"][0]["BackoffRate"] = 0.5


def _unknown_field(definition: dict[str, Any]) -> None:
    _first(definition, "Type")["Bogus"] = True


def _unknown_jitter(definition: dict[str, Any]) -> None:
    _first(definition, "Retry")["Retry"][0]["JitterStrategy"] = "SOMETIMES"


def _map_without_processor(definition: dict[str, Any]) -> None:
    del _first(definition, "ItemProcessor")["ItemProcessor"]


BREAKAGES = [_dangling_next, _slow_backoff, _unknown_field, _unknown_jitter,
             _map_without_processor]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=[b.__name__.strip("_") for b in BREAKAGES])
def test_the_linter_catches_a_broken_copy(breakage: Callable[[dict[str, Any]], None]) -> None:
    """The check has teeth: each of these, done to the real definition, is reported."""
    definition = json.loads(substituted(MACHINES[sorted(MACHINES)[0]])[0])
    breakage(definition)
    assert lint(definition)


def _longest_wait(retrier: dict[str, Any]) -> float:
    """Seconds a retrier may keep retrying (jitter aside): the sum of its capped intervals."""
    interval, rate = float(retrier.get("IntervalSeconds", 1)), float(retrier.get("BackoffRate", 2))
    cap = float(retrier.get("MaxDelaySeconds", float("inf")))
    return sum(min(interval * rate ** n, cap) for n in range(int(retrier.get("MaxAttempts", 3))))


@pytest.mark.parametrize("logical_id", sorted(MACHINES))
def test_every_lambda_task_rides_out_throttling_for_minutes(logical_id: str) -> None:
    # A throttled invoke is not the image's fault: it must not become a failed item quickly.
    definition = json.loads(substituted(MACHINES[logical_id])[0])
    for state in _states(definition):
        if state.get("Resource", "").endswith(":states:::lambda:invoke"):
            throttles = [r for r in state.get("Retry", [])
                         if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
            assert throttles and _longest_wait(throttles[0]) >= 300, state["Parameters"]


@pytest.mark.parametrize("logical_id", sorted(MACHINES))
def test_no_iteration_failure_can_fail_the_map(logical_id: str) -> None:
    # On AWS a failed iteration fails an inline Map and its unstarted items never run: every
    # Task inside the item processor must end in a Catch that leads to a state that succeeds.
    definition = json.loads(substituted(MACHINES[logical_id])[0])
    maps = [state for state in _states(definition) if state["Type"] == "Map"]
    assert maps
    for map_state in maps:
        inner = map_state["ItemProcessor"]["States"]
        for name, state in inner.items():
            if state["Type"] == "Task":
                catches = [c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
                assert catches, f"{name} has no catch-all"
                assert inner[catches[0]["Next"]]["Type"] in ("Task", "Pass", "Succeed")
        assert definition.get("TimeoutSeconds"), "the state machine needs a timeout"
