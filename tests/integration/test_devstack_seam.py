"""The one moto patch the local stack depends on. These tests fail when moto moves or stops using
``LambdaFunction._invoke_lambda``, and prove with an execution of the REAL statemachine file that
Step Functions reaches the handlers through the seam (Map, Catch, MaxConcurrency, Finalize)."""

from __future__ import annotations

import inspect
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import moto
import pytest
from moto.awslambda.models import LambdaFunction

from devstack import dynamodb_lock, seam
from devstack.scheduler import scheduled_event
from devstack.stack import LocalStack, StackConfig
from devstack.template import Function, StateMachine, Template

REPO = Path(__file__).resolve().parents[2]
ITEMS = 12
FAILING_INDEX = 3
ITEM_SECONDS = 0.15  # long enough for iterations to overlap


def test_moto_is_the_pinned_version() -> None:
    pins = re.findall(r"^moto(?:\[[^\]]*\])?==(\S+)", (REPO / "requirements-dev.txt").read_text(),
                      flags=re.MULTILINE)
    assert len(pins) == 1, "requirements-dev.txt must pin moto exactly once"
    assert moto.__version__ == pins[0], "moto changed: re-check devstack.seam, then re-pin"


def test_the_seam_exists_with_the_expected_signature() -> None:
    method = LambdaFunction.__dict__.get("_invoke_lambda")
    assert callable(method), "moto.awslambda.models.LambdaFunction._invoke_lambda is gone"
    signature = inspect.signature(method)
    assert list(signature.parameters) == ["self", "event"]
    assert signature.parameters["event"].default is None
    assert str(signature.return_annotation).replace(" ", "") == "tuple[str,bool,str]"
    assert "self._invoke_lambda(" in inspect.getsource(LambdaFunction.invoke)
    seam.check_seam()


def test_check_seam_refuses_a_changed_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    def moved(self: Any, event: Any, context: Any = None) -> tuple[str, bool, str]:
        return "", False, ""

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", moved)
    with pytest.raises(seam.SeamError, match="expects"):
        seam.check_seam()
    monkeypatch.delattr(LambdaFunction, "_invoke_lambda")
    with pytest.raises(seam.SeamError, match="does not exist"):
        seam.check_seam()


# ---------------------------------------------------------------- a real execution


def _task_function_arns(states: dict[str, Any]) -> dict[str, str]:
    return {
        name: state["Parameters"]["FunctionName"]
        for name, state in states.items()
        if state.get("Type") == "Task"
    }


@dataclass
class BatchRoles:
    """Which template function plays which part, read from the ASL rather than assumed."""

    start: Function
    item: Function
    finalize: Function
    map_state: dict[str, Any]

    @classmethod
    def of(cls, template: Template, machine: StateMachine) -> BatchRoles:
        asl = json.loads(machine.definition())
        by_arn = {function.invoke_arn: function for function in template.functions}
        states = asl["States"]
        map_state = next(state for state in states.values() if state["Type"] == "Map")
        inner = map_state["ItemProcessor"]
        top = _task_function_arns(states)
        return cls(
            start=by_arn[top[asl["StartAt"]]],
            item=by_arn[_task_function_arns(inner["States"])[inner["StartAt"]]],
            finalize=by_arn[top[map_state["Next"]]],
            map_state=map_state,
        )


@dataclass
class Recorder:
    """Throwaway handlers for the batch functions; they record what Step Functions sent."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)
    running: int = 0
    peak: int = 0

    def _record(self, role: str, event: dict[str, Any], context: Any) -> None:
        with self.lock:
            self.calls.append((role, event, context))

    def start(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._record("start", event, context)
        return {"status": "processing"}

    def item(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._record(event.get("action", "?"), event, context)
        if event.get("action") == "record_failure":
            return {"status": "failed"}
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(ITEM_SECONDS)
            if event["index"] == FAILING_INDEX:
                raise ValueError(f"item {event['index']} cannot be processed")
            return {"status": "success"}
        finally:
            with self.lock:
                self.running -= 1

    def finalize(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._record("finalize", event, context)
        return {"status": "partial_success"}

    def of(self, role: str) -> list[tuple[dict[str, Any], Any]]:
        return [(event, context) for r, event, context in self.calls if r == role]

    def snapshot(self) -> Recorder:
        with self.lock:
            return Recorder(calls=list(self.calls), peak=self.peak)


@dataclass
class Run:
    stack: LocalStack
    roles: BatchRoles
    recorder: Recorder
    execution: dict[str, Any]
    history: list[dict[str, Any]]
    seam_calls: int
    seam_records: list[seam.Invocation]
    seam_peak: int
    second_execution: dict[str, Any]


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    env_before = _environment()
    recorder = Recorder()
    probe = LocalStack(StackConfig(moto_port=0, seed=False))
    machine = probe.template.state_machines[0]
    roles = BatchRoles.of(probe.template, machine)
    overrides = {
        roles.start.logical_id: recorder.start,
        roles.item.logical_id: recorder.item,
        roles.finalize.logical_id: recorder.finalize,
    }
    config = StackConfig(moto_port=0, seed=False, schedule_scale=None)
    with LocalStack(config, handler_overrides=overrides) as stack:
        assert seam.installed() and dynamodb_lock.installed()
        seam.reset_records()
        execution, history = _execute(stack, machine, "seam-test-r1", ITEMS)
        first, records = recorder.snapshot(), seam.invocations()
        seam_calls, peak = seam.invocation_count(), seam.peak_concurrency(roles.item.name)
        second, _ = _execute(stack, machine, "seam-test-r2", 2)
        yield Run(stack, roles, first, execution, history, seam_calls, records, peak, second)
    assert not seam.installed(), "stop() must put moto back as it was"
    assert _environment() == env_before, "stop() must restore the environment"


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def _execute(stack: LocalStack, machine: StateMachine, name: str, items: int
             ) -> tuple[dict[str, Any], list[Any]]:
    sfn = stack.client("stepfunctions")
    payload = {
        "task_id": "seam-test",
        "round": 1,
        "items": [{"index": index, "attempt": 1} for index in range(items)],
    }
    arn = sfn.start_execution(
        stateMachineArn=machine.arn, name=name, input=json.dumps(payload)
    )["executionArn"]
    deadline = time.monotonic() + 120
    while (execution := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not finish in 120 s"
        time.sleep(0.05)
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return execution, history


def test_the_execution_succeeds_through_the_seam(run: Run) -> None:
    assert run.execution["status"] == "SUCCEEDED", run.execution
    # start + one per item + one record_failure + finalize, every one through the seam
    assert run.seam_calls == 1 + ITEMS + 1 + 1
    items = [r for r in run.seam_records if r.function_name == run.roles.item.name]
    assert len(items) == ITEMS + 1
    assert [r.error_type for r in items].count("ValueError") == 1


def test_the_same_state_machine_runs_again(run: Run) -> None:
    # moto 5.2.1 alone answers 500 to a second StartExecution (getmoto/moto#10077)
    assert run.second_execution["status"] == "SUCCEEDED", run.second_execution


def test_map_runs_every_item_once(run: Run) -> None:
    processed = sorted(event["index"] for event, _ in run.recorder.of("process"))
    assert processed == list(range(ITEMS))
    started = [e for e in run.history if e["type"] == "MapIterationStarted"]
    assert len(started) == ITEMS


def test_catch_routes_the_raising_item_to_record_failure(run: Run) -> None:
    failures = [event for event, _ in run.recorder.of("record_failure")]
    assert len(failures) == 1
    assert failures[0]["index"] == FAILING_INDEX
    assert failures[0]["error"] == "ValueError"  # the errorType of the runtime's error payload


def test_max_concurrency_is_honoured_and_items_overlap(run: Run) -> None:
    limit = run.roles.map_state["MaxConcurrency"]
    assert 1 < run.recorder.peak <= limit
    assert run.seam_peak <= limit


def test_finalize_runs_once_after_every_item(run: Run) -> None:
    finals = run.recorder.of("finalize")
    items = [{"index": index, "attempt": 1} for index in range(ITEMS)]
    assert [event for event, _ in finals] == [{"task_id": "seam-test", "round": 1,
                                               "items": items}]
    assert run.recorder.calls[0][0] == "start"
    assert run.recorder.calls[-1][0] == "finalize"
    assert json.loads(run.execution["output"]) == {"status": "partial_success"}


def test_an_item_whose_failure_cannot_be_recorded_holds_back_no_sibling(run: Run) -> None:
    # On AWS an iteration that fails aborts the inline Map and the items not yet started never
    # run. The worker raising AND RecordFailure failing after its retries must not do that.
    calls: list[tuple[str, int]] = []
    finals: list[dict[str, Any]] = []

    def item(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append((event.get("action", "?"), event["index"]))
        if event["index"] == 0:
            raise ValueError("cannot process this item, nor record its failure")
        return {"status": "success"}

    def finalize(event: dict[str, Any], context: Any) -> dict[str, Any]:
        finals.append(event)
        return {"status": "partial_success"}

    registry, roles = run.stack.registry, run.roles
    registry.override(roles.item.logical_id, item)
    registry.override(roles.finalize.logical_id, finalize)
    try:
        machine = run.stack.template.state_machines[0]
        execution, _ = _execute(run.stack, machine, "seam-test-lost-failure", 8)
    finally:
        registry.override(roles.item.logical_id, run.recorder.item)
        registry.override(roles.finalize.logical_id, run.recorder.finalize)
    assert execution["status"] == "SUCCEEDED", execution
    assert sorted(index for action, index in calls if action == "process") == list(range(8))
    assert calls.count(("record_failure", 0)) > 1, "RecordFailure is retried before giving up"
    assert [event["items"] for event in finals] == [
        [{"index": index, "attempt": 1} for index in range(8)]]


def test_handlers_get_a_lambda_context(run: Run) -> None:
    for role, function in (("start", run.roles.start), ("process", run.roles.item)):
        _, context = run.recorder.of(role)[0]
        assert context.function_name == function.name
        # through the alias: the version it points at runs (the local stack publishes "1")
        qualified = f"{function.arn}:1" if function.alias else function.arn
        assert context.invoked_function_arn == qualified
        assert context.memory_limit_in_mb == function.memory_size
        assert context.function_version == ("1" if function.alias else "$LATEST")
        assert context.log_group_name == f"/aws/lambda/{function.name}"
        assert re.fullmatch(r"[0-9a-f-]{36}", context.aws_request_id)
        assert 0 < context.get_remaining_time_in_millis() <= function.timeout * 1000


def test_errors_come_back_as_the_runtime_error_payload(run: Run) -> None:
    lambda_ = run.stack.client("lambda")
    reply = lambda_.invoke(
        FunctionName=run.roles.item.name,
        Payload=json.dumps({"action": "process", "index": FAILING_INDEX, "attempt": 1}),
    )
    assert reply["FunctionError"]
    payload = json.loads(reply["Payload"].read())
    assert set(payload) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert payload["errorType"] == "ValueError"
    assert "cannot be processed" in payload["errorMessage"]
    assert any("raise ValueError" in frame for frame in payload["stackTrace"])


def test_schedule_events_reach_their_function_through_the_seam(run: Run) -> None:
    template = run.stack.template
    if not template.schedules:
        pytest.skip("template.yaml declares no Schedule events")
    schedule = template.schedules[0]
    received: list[tuple[dict[str, Any], str]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        received.append((event, context.function_name))
        return {"settled": 0}

    run.stack.registry.override(schedule.function_id, handler)
    before = seam.invocation_count()
    run.stack.invoke_scheduled(schedule, scheduled_event(schedule, template.naming))
    assert seam.invocation_count() == before + 1
    (event, function_name), = received
    assert event["source"] == "aws.events"
    assert function_name == template.function(schedule.function_id).name
