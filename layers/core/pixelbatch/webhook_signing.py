"""Webhook signatures per the Standard Webhooks specification: the secret is ``whsec_`` plus
base64 of random bytes; a signature is ``v1,`` plus base64 of HMAC-SHA256, keyed with the
secret's decoded bytes, over ``{webhook-id}.{webhook-timestamp}.{body}``. Several signatures
(one per secret, while a secret is being rotated) go space-separated in one header."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    content = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(
    secrets_: Sequence[str], message_id: str, timestamp: int, body: str
) -> dict[str, str]:
    """The headers of one delivery attempt: the timestamp is the attempt's, the id is the
    event's (the same on every retry)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, message_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
    }
