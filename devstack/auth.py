"""Local stand-in for the HTTP API's JWT authorizer: dev tokens signed with an HS256 key.

Tokens carry what a Cognito ID token carries (``sub``, ``email``, ``token_use``...) with the
issuer and audience of the template's own authorizer, so handlers read the same claims locally
as on AWS, where the authorizer passes them on as strings.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from devstack.template import JwtAuthorizer

__all__ = [
    "DEFAULT_TOKEN_TTL_SECONDS",
    "DevTokens",
    "Unauthorized",
    "authorizer_claims",
    "dev_secret",
]

DEFAULT_TOKEN_TTL_SECONDS = 12 * 3600
ALGORITHM = "HS256"
SECRET_ENV = "DEVSTACK_JWT_SECRET"


class Unauthorized(Exception):
    """The request would get API Gateway's 401; the reason is for local logs only."""


def dev_secret() -> str:
    """DEVSTACK_JWT_SECRET if set (tests mint their own tokens), else random per process."""
    return os.environ.get(SECRET_ENV) or secrets.token_urlsafe(32)


@dataclass(frozen=True)
class DevTokens:
    secret: str
    authorizer: JwtAuthorizer

    def issue(
        self, user_id: str, ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A Cognito-ID-token-shaped JWT for ``user_id`` and its ``exp``."""
        now = int(time.time())
        expires_at = now + int(ttl_seconds)
        claims: dict[str, Any] = {
            "sub": user_id,
            "email": f"{user_id}@users.pixelbatch.local",
            "email_verified": True,
            "cognito:username": user_id,
            "token_use": "id",
            "iss": self.authorizer.issuer,
            "aud": self.authorizer.audience[0] if self.authorizer.audience else "devstack",
            "auth_time": now,
            "iat": min(now, expires_at),
            "exp": expires_at,
            "jti": str(uuid.uuid4()),
            **(extra_claims or {}),
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM), expires_at

    def verify(self, authorization: str | None, authorizer: JwtAuthorizer) -> dict[str, Any]:
        """Claims of a valid ``Bearer`` token for ``authorizer``, else :class:`Unauthorized`."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing or malformed Authorization header")
        try:
            claims: dict[str, Any] = jwt.decode(
                token.strip(),
                self.secret,
                algorithms=[ALGORITHM],
                issuer=authorizer.issuer,
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        _check_audience(claims, authorizer)
        return claims


def _check_audience(claims: Mapping[str, Any], authorizer: JwtAuthorizer) -> None:
    # like API Gateway: "aud" (ID tokens) or, when absent, "client_id" (access tokens) must match
    audience = claims.get("aud", claims.get("client_id"))
    values = audience if isinstance(audience, list) else [audience]
    if not any(value in authorizer.audience for value in values):
        raise Unauthorized(f"audience {audience!r} not in {list(authorizer.audience)}")


def authorizer_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as the JWT authorizer hands them to Lambda: every value a string."""
    return {name: _claim_string(value) for name, value in claims.items()}


def _claim_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_claim_string(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
