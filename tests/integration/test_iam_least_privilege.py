"""Least privilege, measured: after the whole suite, every action a role grants was used by some
test through the local stack's IAM check, or is listed below with the reason it stays."""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from devstack.iam import Role, roles_from_template
from devstack.iam_enforce import IAM_RECORD_VARIABLE
from devstack.template import Template

# (role logical id or "*", action pattern, resource pattern) -> why the grant stays although
# no test uses it
UNUSED_ON_PURPOSE = {
    ("*", "logs:*", "*"): "the Lambda runtime writes the function's log, not its code",
    ("*", "xray:*", "*"): "the X-Ray daemon sends the traces of Tracing: Active; none runs here",
    ("TasksApiFunctionRole", "dynamodb:GetItem", "*IdempotencyTable"):
        "Powertools reads an idempotency record only when a conditional put does not return it",
    ("TasksApiFunctionRole", "dynamodb:DeleteItem", "*IdempotencyTable"):
        "Powertools deletes an idempotency record only when the protected call raises",
    ("ReconcilerFunctionRole", "sqs:SendMessage", "*AsyncFailuresQueue"):
        "Lambda's asynchronous invocation sends a failed event to the on-failure destination "
        "with the function's role; the local stack has no such destination",
    ("ReconcilerFunctionRole", "s3:AbortMultipartUpload", "*/zips/*"):
        "the reconciler writes a ZIP with Finalize's code, whose abort path the fault tests cover",
}
SUITES = ("tests/e2e", "tests/integration", "tests/fuzz")


def _whole_suite_ran(session: pytest.Session) -> bool:
    option = session.config.option
    narrowed = ("keyword", "markexpr", "lf")  # "lf" is absent when the cache plugin is off
    if any(getattr(option, name, None) for name in narrowed):
        return False
    paths = {Path(str(item.path)).relative_to(session.config.rootpath).as_posix()
             for item in session.items}
    return all(any(path.startswith(suite) for path in paths) for suite in SUITES)


def _used() -> set[tuple[str, str, str]]:
    path = Path(os.environ[IAM_RECORD_VARIABLE])
    lines = path.read_text().splitlines() if path.exists() else []
    return {tuple(json.loads(line)) for line in lines if line.strip()}  # type: ignore[misc]


def _grants(role: Role) -> Iterable[tuple[str, str]]:
    for statement in role.statements:
        if statement.effect == "Allow":
            yield from statement.grants()


def _on_purpose(role: Role, action: str, resource: str) -> bool:
    return any(owner in ("*", role.logical_id) and fnmatch.fnmatchcase(action, action_pattern)
               and fnmatch.fnmatchcase(resource, resource_pattern)
               for owner, action_pattern, resource_pattern in UNUSED_ON_PURPOSE)


def _exercised(role: Role, action: str, resource: str, used: set[tuple[str, str, str]]) -> bool:
    return any(owner == role.logical_id
               and fnmatch.fnmatchcase(done_action.lower(), action.lower())
               and fnmatch.fnmatchcase(done_resource, resource)
               for owner, done_action, done_resource in used)


@pytest.mark.after_all
def test_every_granted_action_is_used_by_some_test(request: pytest.FixtureRequest,
                                                   template: Template) -> None:
    if not _whole_suite_ran(request.session):
        pytest.skip("reads what the whole suite did: run `make test` (or pytest with no filter)")
    used = _used()
    assert used, f"nothing was recorded in {os.environ[IAM_RECORD_VARIABLE]}"
    unused = sorted(
        f"{role.logical_id}: {action} on {resource}"
        for role in roles_from_template(template).values()
        for action, resource in _grants(role)
        if not _on_purpose(role, action, resource) and not _exercised(role, action, resource, used)
    )
    assert not unused, "granted but never used (remove them, or list why they stay):\n" + \
        "\n".join(unused)
