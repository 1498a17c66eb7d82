"""The CloudFormation template `sam deploy` would submit (the SAM translator's output): no
dependency cycle among its resources (CloudFormation refuses one, and cfn-lint 1.58 no longer
reports every cycle through SAM's deployment resources), and the pieces SAM generates for
operations are wired as intended."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.deploy.tooling import TEMPLATE
from tests.deploy.translated import translate

SUB_NAME: Final = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


def references(node: Any, resources: set[str]) -> set[str]:
    """Every resource that `node` refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and value in resources:
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                found |= {target} & resources
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= set(SUB_NAME.findall(text)) & resources
            found |= references(value, resources)
    elif isinstance(node, list):
        for item in node:
            found |= references(item, resources)
    return found


def dependency_graph(template: dict[str, Any]) -> dict[str, set[str]]:
    resources = template["Resources"]
    names = set(resources)
    graph = {}
    for name, resource in resources.items():
        depends = resource.get("DependsOn") or []
        depends = [depends] if isinstance(depends, str) else depends
        graph[name] = (references(resource.get("Properties"), names)
                       | references(resource.get("UpdatePolicy"), names) | set(depends))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle as a path of resource names, or [] when there is none."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate(TEMPLATE)


def test_the_translated_template_has_no_dependency_cycle(translated: dict[str, Any]) -> None:
    assert not find_cycle(dependency_graph(translated))


def test_the_cycle_check_catches_a_rollback_alarm_that_watches_the_api(tmp_path: Path) -> None:
    """An API-wide alarm in an API function's rollback alarms: the API depends on the alias,
    the alias on its deployment group, the group on the alarm, the alarm on the API."""
    text = TEMPLATE.read_text(encoding="utf-8").replace(
        "Alarms: [!Ref TasksApiErrorsAlarm]",
        "Alarms: [!Ref TasksApiErrorsAlarm, !Ref ApiServerErrorRateAlarm]", 1)
    broken = tmp_path / "template.yaml"
    broken.write_text(text)
    for folder in ("statemachine",):
        (tmp_path / folder).symlink_to(TEMPLATE.parent / folder)
    cycle = find_cycle(dependency_graph(translate(broken)))
    assert {"HttpApi", "ApiServerErrorRateAlarm"} <= set(cycle), cycle


def test_signup_is_the_user_pool_post_confirmation_trigger(translated: dict[str, Any]) -> None:
    config = translated["Resources"]["UserPool"]["Properties"]["LambdaConfig"]
    assert config["PostConfirmation"] == {"Fn::GetAtt": ["AccountSignupFunction", "Arn"]}
    permission = translated["Resources"]["AccountSignupFunctionCognitoPermission"]["Properties"]
    assert permission["Principal"] == "cognito-idp.amazonaws.com"


def test_gradual_functions_get_an_alias_and_a_deployment_group(
    translated: dict[str, Any]
) -> None:
    resources = translated["Resources"]
    groups = {name: r for name, r in resources.items()
              if r["Type"] == "AWS::CodeDeploy::DeploymentGroup"}
    assert len(groups) == 6
    for group in groups.values():
        props = group["Properties"]
        assert props["AutoRollbackConfiguration"]["Enabled"] is True
        assert "DEPLOYMENT_STOP_ON_ALARM" in props["AutoRollbackConfiguration"]["Events"]
        assert props["AlarmConfiguration"]["Enabled"] is True
    substitutions = resources["BatchStateMachine"]["Properties"]["DefinitionSubstitutions"]
    for key, value in substitutions.items():
        if key.endswith("FunctionArn"):
            assert resources[value["Ref"]]["Type"] == "AWS::Lambda::Alias", key


def test_the_reconciler_rule_may_send_its_dead_letters(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]
    rule = resources["ReconcilerFunctionEveryFiveMinutes"]["Properties"]
    [target] = rule["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["AsyncFailuresQueue", "Arn"]}}
    policy = resources["AsyncFailuresQueuePolicy"]["Properties"]["PolicyDocument"]
    text = yaml.safe_dump(policy)
    assert "events.amazonaws.com" in text and "ReconcilerFunctionEveryFiveMinutes" in text
