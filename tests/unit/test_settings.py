"""Settings and step payloads are checked without pydantic: the same values are accepted, and
a bad environment or payload fails with a message that names every culprit."""

from __future__ import annotations

import json

import pytest
from pixelbatch.services.webhooks import DeliveryMessage
from pixelbatch.settings import MAX_UPLOAD_BYTES, AccountSettings, Settings, SettingsError
from pixelbatch.steps import InvalidStepEvent, ItemEvent, RoundEvent, RoundItem

from devstack.template import load_template
from tests.support.http_events import REPO

REQUIRED = {
    name: name.lower() for name in (
        "ACCOUNTS_TABLE", "FEATURES_TABLE", "PIPELINES_TABLE", "TASKS_TABLE", "LEDGER_TABLE",
        "RATE_LIMIT_TABLE", "IDEMPOTENCY_TABLE", "UPLOADS_BUCKET", "OUTPUTS_BUCKET",
    )
}


def test_every_function_s_environment_in_the_template_makes_its_settings() -> None:
    # Given every function of the template
    for function in load_template(REPO / "template.yaml").functions:
        # When its environment is read, Then it holds every required setting
        settings = Settings.from_env(function.environment)
        assert settings.accounts_table == function.environment["ACCOUNTS_TABLE"]


def test_values_are_parsed_from_their_text() -> None:
    settings = Settings.from_env({
        **REQUIRED, "IMAGE_URL_ALLOWLIST": " Images.Example.com, ,cdn.example.org ",
        "PRESIGN_TTL_SECONDS": "600", "WEBHOOK_LOOPBACK_RECEIVERS": "true",
    })
    assert settings.image_url_allowlist == ("images.example.com", "cdn.example.org")
    assert settings.presign_ttl_seconds == 600
    assert settings.webhook_loopback_receivers is True
    assert settings.max_upload_bytes == MAX_UPLOAD_BYTES
    assert settings.state_machine_arn is None


def test_missing_and_malformed_variables_are_named_together() -> None:
    env = {**REQUIRED, "PRESIGN_TTL_SECONDS": "soon", "WEBHOOK_LOOPBACK_RECEIVERS": "maybe"}
    del env["TASKS_TABLE"], env["OUTPUTS_BUCKET"]
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    for name in ("TASKS_TABLE", "OUTPUTS_BUCKET", "PRESIGN_TTL_SECONDS",
                 "WEBHOOK_LOOPBACK_RECEIVERS"):
        assert name in message


@pytest.mark.parametrize(("name", "value"), [
    ("PRESIGN_TTL_SECONDS", "59"), ("PRESIGN_TTL_SECONDS", str(7 * 24 * 3600 + 1)),
    ("MAX_UPLOAD_BYTES", "0"), ("STUCK_AFTER_SECONDS", "10"), ("TASK_RETENTION_DAYS", "0"),
])
def test_values_out_of_bounds_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**REQUIRED, name: value})


def test_account_settings_need_only_the_money_tables() -> None:
    settings = AccountSettings.from_env({"ACCOUNTS_TABLE": "a", "LEDGER_TABLE": "l"})
    assert settings.signup_grant_quota == 0
    with pytest.raises(SettingsError, match="SIGNUP_GRANT_QUOTA"):
        AccountSettings.from_env({"ACCOUNTS_TABLE": "a", "LEDGER_TABLE": "l",
                                  "SIGNUP_GRANT_QUOTA": "-1"})


def test_the_sample_step_events_parse() -> None:
    finalize = json.loads((REPO / "events" / "finalize.json").read_text())
    assert RoundEvent.from_event(finalize).items[2] == RoundItem(index=2, attempt=2)
    failure = json.loads((REPO / "events" / "process_item_record_failure.json").read_text())
    item = ItemEvent.from_event(failure)
    assert (item.action, item.index, item.error) == ("record_failure", 3, "States.Timeout")
    start = ItemEvent.from_event({"task_id": "t", "index": 0, "attempt": 1})
    assert start.action == "process"


@pytest.mark.parametrize("event", [
    {"task_id": "", "round": 1},
    {"task_id": "t", "round": 0},
    {"task_id": "t", "round": True},
    {"task_id": "t", "round": 1, "items": [{"index": -1, "attempt": 1}]},
    {"task_id": "t", "round": 1, "items": {"index": 0}},
    [],
])
def test_a_malformed_round_event_is_refused(event: object) -> None:
    with pytest.raises(InvalidStepEvent):
        RoundEvent.from_event(event)


def test_a_malformed_item_event_is_refused() -> None:
    with pytest.raises(InvalidStepEvent, match="action"):
        ItemEvent.from_event({"action": "skip", "task_id": "t", "index": 0, "attempt": 1})
    with pytest.raises(InvalidStepEvent, match="attempt"):
        ItemEvent.from_event({"task_id": "t", "index": 0, "attempt": "1"})


def test_a_delivery_message_keeps_its_queue_format() -> None:
    message = DeliveryMessage(event_id="msg_t_r1", owner_id="u", webhook_id="wh_1",
                              body='{"status":"完成"}')
    text = message.to_json()
    assert text == ('{"event_id":"msg_t_r1","owner_id":"u","webhook_id":"wh_1",'
                    '"body":"{\\"status\\":\\"完成\\"}"}')
    assert DeliveryMessage.from_json(text) == message
    with pytest.raises(ValueError, match="webhook_id"):
        DeliveryMessage.from_json('{"event_id":"e","owner_id":"u","body":"b"}')
