"""Schedule events of the template fire locally, as EventBridge would fire them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.scheduler import Scheduler, scheduled_event
from devstack.template import Naming, Schedule, load_template

REPO = Path(__file__).resolve().parents[2]


def _schedule(expression: str, enabled: bool = True, payload: str | None = None) -> Schedule:
    return Schedule("Fn", f"Every{expression}", expression, enabled, payload)


class _RawLoader(yaml.SafeLoader):
    """Reads short tags as plain values: enough to find the Schedule events."""


_RawLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_every_schedule_event_of_the_template_is_modelled() -> None:
    raw = yaml.load((REPO / "template.yaml").read_text(), Loader=_RawLoader)
    expected = {
        (logical_id, event_id, event["Properties"].get("Schedule")
         or event["Properties"].get("ScheduleExpression"))
        for logical_id, resource in raw["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event_id, event in (resource["Properties"].get("Events") or {}).items()
        if event["Type"] in ("Schedule", "ScheduleV2")
    }
    template = load_template(REPO / "template.yaml")
    actual = {(s.function_id, s.event_id, s.expression) for s in template.schedules}
    assert actual == expected


@pytest.mark.parametrize(("expression", "seconds"), [
    ("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200),
    ("rate(1 day)", 86400), ("cron(0 12 * * ? *)", None),
])
def test_rate_expressions_give_their_period(expression: str, seconds: int | None) -> None:
    assert _schedule(expression).interval_seconds == seconds


def test_the_payload_is_an_eventbridge_scheduled_event() -> None:
    event = json.loads(scheduled_event(_schedule("rate(1 minute)"), Naming()))
    assert event["source"] == "aws.events" and event["detail-type"] == "Scheduled Event"
    assert event["resources"][0].startswith("arn:aws:events:us-east-1:123456789012:rule/")
    assert scheduled_event(_schedule("rate(1 minute)", payload='{"x": 1}'), Naming()) == '{"x": 1}'


def test_enabled_rate_schedules_fire_until_stopped() -> None:
    fired: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()

    def invoke(schedule: Schedule, payload: str) -> None:
        with lock:
            fired.append((schedule.event_id, json.loads(payload)))

    schedules = [_schedule("rate(1 minute)"), _schedule("rate(2 minutes)", enabled=False),
                 _schedule("cron(0 12 * * ? *)")]
    scheduler = Scheduler(schedules, invoke, Naming(), scale=0.002)  # 1 minute -> 0.12 s
    assert [s.expression for s in scheduler.active] == ["rate(1 minute)"]
    scheduler.start()
    time.sleep(0.05)
    assert fired == [], "a rate rule first fires one period after it is created"
    time.sleep(0.5)
    scheduler.stop()
    count = len(fired)
    time.sleep(0.3)
    assert 2 <= count == len(fired)
    assert {event_id for event_id, _ in fired} == {"Everyrate(1 minute)"}


def test_a_failing_run_does_not_stop_the_schedule() -> None:
    calls = []

    def invoke(schedule: Schedule, payload: str) -> None:
        calls.append(payload)
        raise RuntimeError("handler failed")

    scheduler = Scheduler([_schedule("rate(1 minute)")], invoke, Naming(), scale=0.002).start()
    time.sleep(0.45)
    scheduler.stop()
    assert len(calls) >= 2
