"""Webhook signatures against the Standard Webhooks specification and its reference library."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from pixelbatch.webhook_signing import SECRET_PREFIX, new_secret, sign, signed_headers
from standardwebhooks import Webhook, WebhookVerificationError

# The specification's test vector (also in the reference libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_is_the_specification_s_for_its_test_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    reference = Webhook(SPEC_SECRET).sign(
        SPEC_ID, datetime.fromtimestamp(SPEC_TIMESTAMP, UTC), SPEC_BODY)
    assert reference == SPEC_SIGNATURE


def test_new_secrets_are_prefixed_and_carry_enough_random_bytes() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith(SECRET_PREFIX)
        assert len(base64.b64decode(secret.removeprefix(SECRET_PREFIX))) >= 24


def test_the_reference_library_verifies_what_we_sign_and_refuses_changes() -> None:
    secret, body, now = new_secret(), '{"type":"task.finished","data":{"n":"数"}}', int(time.time())
    headers = signed_headers([secret], "msg_abc_r1", now, body)
    assert Webhook(secret).verify(body, headers)["type"] == "task.finished"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("finished", "started"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):  # outside the library's tolerance
        stale = signed_headers([secret], "msg_abc_r1", now - 3600, body)
        Webhook(secret).verify(body, stale)


def test_during_a_rotation_either_secret_verifies_the_one_header() -> None:
    old, new, body, now = new_secret(), new_secret(), "{}", int(time.time())
    headers = signed_headers([new, old], "msg_rotating", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
