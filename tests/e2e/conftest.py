"""End-to-end fixtures: ``python -m devstack`` in a subprocess, driven over HTTP.

The stack is started once per session on free ports (PORT=0 and MOTO_PORT=0; the ready line
reports the real API port). Its stdout and stderr go to files, so a chatty stack can never block
on a full pipe, and the stderr tail is printed when startup or any test fails.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.gateway import dev_authorizer
from devstack.process import running_stack
from devstack.template import JwtAuthorizer, load_template

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 60
STDERR_TAIL_LINES = 60


class ApiSession(requests.Session):
    """A requests session whose relative URLs go to the local API."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        super().__init__()
        self.base_url = base_url
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
                ) -> requests.Response:
        if isinstance(url, str) and url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, url, *args, **kwargs)


@dataclass(frozen=True)
class LocalApi:
    base_url: str
    jwt_secret: str
    authorizer: JwtAuthorizer
    stderr_path: Path

    def session(self, token: str | None = None) -> ApiSession:
        return ApiSession(self.base_url, token)

    def make_user(self, quota: int = 100, plan: str = "pro", ttl_seconds: int | None = None
                  ) -> tuple[str, str]:
        """A fresh user with ``quota`` and ``plan``; returns (user_id, token)."""
        user_id = f"e2e-{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {"user_id": user_id, "quota": quota, "plan": plan}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        response = self.session().post("/local/users", json=body)
        assert response.status_code == 200, response.text
        return user_id, str(response.json()["token"])

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def local_api(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
              ) -> Iterator[LocalApi]:
    secret = secrets.token_urlsafe(32)  # known to the tests, so they can forge bad tokens
    authorizer = dev_authorizer(load_template(REPO / "template.yaml"))
    assert authorizer is not None, "template.yaml declares no JWT authorizer"
    logs = tmp_path_factory.mktemp("devstack")
    with ExitStack() as cleanup:
        try:
            stack = cleanup.enter_context(running_stack(
                env={"DEVSTACK_JWT_SECRET": secret}, logs=logs, timeout=STARTUP_TIMEOUT_SECONDS))
        except RuntimeError as error:
            pytest.fail(str(error))
        api = LocalApi(stack.base_url, secret, authorizer, stack.stderr_path)
        yield api
    if request.session.testsfailed:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\n--- devstack stderr tail ({api.stderr_path}) ---\n"
                                f"{api.stderr_tail()}")
