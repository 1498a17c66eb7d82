"""IAM enforced on every request the functions and the state machine make, as AWS does.

A caller is recognised by the access key of its role's credentials (which each function's
process and the state machine's Lambda calls sign with) or, for handlers run inside the test
process, by the role the invocation runs under. Requests from any other key are the operator's
(tests, seeding, the developer's CLI) and go through unchecked, like an administrator's.

Two places apply the same decision: a WSGI layer in front of the moto server, and moto's
in-process request stubber. A refusal is the service's own AccessDenied reply, so the SDK
raises the same ``ClientError`` it would raise on AWS.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import io
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.iam import Role, roles_from_template
from devstack.iam_requests import AwsRequest, UnreadableRequest, access_key_of, grants_needed
from devstack.template import Naming, Template

__all__ = [
    "IAM_RECORD_VARIABLE",
    "Authorizer",
    "Denial",
    "IamMiddleware",
    "acting_as",
    "in_process_authorizer",
    "install_in_process",
]

log = logging.getLogger("devstack.iam")

IAM_RECORD_VARIABLE = "DEVSTACK_IAM_RECORD"  # a file that collects every grant a role used

_acting_role: contextvars.ContextVar[Role | None] = contextvars.ContextVar(
    "devstack_acting_role", default=None
)


@dataclass(frozen=True)
class Denial:
    role: Role
    action: str
    resource: str
    reason: str

    @property
    def message(self) -> str:
        principal = self.role.session_arn(self.role.principals[0] if self.role.principals
                                          else self.role.name)
        return (f"User: {principal} is not authorized to perform: {self.action} on resource: "
                f"{self.resource} because {self.reason}")

    def reply(self, request: AwsRequest) -> tuple[int, dict[str, str], bytes]:
        """The reply the service itself sends for AccessDenied."""
        scope = request.credential_scope
        service = scope[2] if scope else "dynamodb"
        if service == "s3":
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>"
                    f"<Message>{_xml(self.message)}</Message><RequestId>devstack</RequestId>"
                    "</Error>")
            return 403, {"Content-Type": "application/xml"}, (
                b"" if request.method == "HEAD" else body.encode())
        if service == "lambda":
            payload = {"Type": "User", "Message": self.message}
            headers = {"Content-Type": "application/json",
                       "x-amzn-ErrorType": "AccessDeniedException"}
            return 403, headers, json.dumps(payload).encode()
        payload = {"__type": "com.amazon.coral.service#AccessDeniedException",
                   "Message": self.message, "message": self.message}
        return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(payload).encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Authorizer:
    """Decides each request against the caller's role and records what every role used."""

    def __init__(self, roles: Iterable[Role], region: str, account: str,
                 record_path: Path | None = None) -> None:
        self.roles = {role.logical_id: role for role in roles}
        self._by_key = {role.credentials.access_key_id: role for role in self.roles.values()}
        self.region, self.account = region, account
        self._record_path = record_path
        self._used: set[tuple[str, str, str]] = set()
        self.denials: list[Denial] = []
        self._lock = threading.Lock()

    def role_of(self, request: AwsRequest) -> Role | None:
        acting = _acting_role.get()
        if acting is not None:
            return acting
        key = access_key_of(request)
        return self._by_key.get(key) if key else None

    def check(self, request: AwsRequest) -> Denial | None:
        role = self.role_of(request)
        if role is None or request.method == "OPTIONS":
            return None  # a CORS preflight carries no credentials: the bucket's CORS rules decide
        try:
            needed = grants_needed(request)
        except UnreadableRequest as exc:
            return self._deny(Denial(role, "unknown", request.path,
                                     f"the local stack cannot read it: {exc}"))
        for action, resource in needed:
            if role.decide(action, resource) is None:
                return self._deny(Denial(role, action, resource,
                                         f"no identity-based policy allows the {action} action"))
            self._record(role, action, resource)
        return None

    def _deny(self, denial: Denial) -> Denial:
        log.warning("AccessDenied: %s", denial.message)
        with self._lock:
            self.denials.append(denial)
        return denial

    @property
    def used(self) -> set[tuple[str, str, str]]:
        """(role logical id, action, resource) of every allowed request so far."""
        with self._lock:
            return set(self._used)

    def _record(self, role: Role, action: str, resource: str) -> None:
        entry = (role.logical_id, action, resource)
        with self._lock:
            if entry in self._used:
                return
            self._used.add(entry)
            if self._record_path is not None:
                with self._record_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry) + "\n")


@contextlib.contextmanager
def acting_as(role: Role | None) -> Iterator[None]:
    """Attribute the calls made in this context (and the threads it starts) to ``role``."""
    token = _acting_role.set(role)
    try:
        yield
    finally:
        _acting_role.reset(token)


# ---------------------------------------------------------------- the moto server


class IamMiddleware:
    """WSGI layer in front of moto's application."""

    def __init__(self, app: Callable[..., Any], authorizer: Authorizer) -> None:
        self._app = app
        self._authorizer = authorizer

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = _read_body(environ)
        request = _wsgi_request(environ, body, self._authorizer)
        denial = self._authorizer.check(request) if request is not None else None
        if denial is None:
            return self._app(environ, start_response)
        status, headers, payload = denial.reply(request)  # type: ignore[arg-type]
        reason = "Forbidden" if status == 403 else "Bad Request"
        start_response(f"{status} {reason}", [*headers.items(),
                                              ("Content-Length", str(len(payload)))])
        return [payload]


def _read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if length:
        body = stream.read(length)
    elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        body = stream.read()
    else:
        return b""
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return bytes(body)


def _wsgi_request(environ: Mapping[str, Any], body: bytes,
                  authorizer: Authorizer) -> AwsRequest | None:
    if environ.get("PATH_INFO", "").startswith("/moto-api"):
        return None
    headers = {key[5:].replace("_", "-").lower(): str(value)
               for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = str(environ["CONTENT_TYPE"])
    path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
    query = environ.get("QUERY_STRING", "")
    url = f"http://{environ.get('HTTP_HOST', 'localhost')}{_quote_path(path)}?{query}"
    return _in_signed_region(AwsRequest.from_url(
        environ.get("REQUEST_METHOD", "GET"), url, headers, body, authorizer.region,
        authorizer.account))


def _in_signed_region(request: AwsRequest) -> AwsRequest:
    """The request's resources are in the region its signature names."""
    scope = request.credential_scope
    if scope is None or scope[1] == request.region:
        return request
    return dataclasses.replace(request, region=scope[1])


def _quote_path(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/~!$&'()*+,;=:@")


# ---------------------------------------------------------------- moto in process


_in_process: list[Authorizer] = []
_authorizers: dict[tuple[Path, Naming], Authorizer] = {}
_patch_lock = threading.Lock()


def in_process_authorizer(template: Template) -> Authorizer:
    """One authorizer per template file and naming for handlers run in this process; it records into
    the file that DEVSTACK_IAM_RECORD names, as the local stack's does."""
    with _patch_lock:
        key = (template.path, template.naming)
        authorizer = _authorizers.get(key)
        if authorizer is None:
            record = os.environ.get(IAM_RECORD_VARIABLE)
            authorizer = _authorizers[key] = Authorizer(
                roles_from_template(template).values(), template.naming.region,
                template.naming.account_id, Path(record) if record else None)
        return authorizer


def install_in_process(authorizer: Authorizer | None) -> None:
    """Check requests that moto answers in this process (``mock_aws``) with ``authorizer``;
    None stops checking."""
    from moto.core.botocore_stubber import BotocoreStubber

    with _patch_lock:
        _in_process[:] = [authorizer] if authorizer is not None else []
        if getattr(BotocoreStubber.__call__, "_devstack_iam", False):
            return
        original = BotocoreStubber.__call__

        def checked(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            denied = _in_process_denial(request) if self.enabled else None
            return denied if denied is not None else original(self, event_name, request,
                                                              **kwargs)

        checked._devstack_iam = True  # type: ignore[attr-defined]
        BotocoreStubber.__call__ = checked  # type: ignore[method-assign]
        _propagate_context_to_pool_threads()


def _in_process_denial(request: Any) -> Any:
    if not _in_process:
        return None
    authorizer = _in_process[0]
    body = request.body if isinstance(request.body, bytes | str) else b""
    aws_request = _in_signed_region(AwsRequest.from_url(
        request.method, request.url, dict(request.headers.items()),
        body.encode() if isinstance(body, str) else body, authorizer.region, authorizer.account))
    denial = authorizer.check(aws_request)
    if denial is None:
        return None
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    status, headers, payload = denial.reply(aws_request)
    return AWSResponse(request.url, status, headers, MockRawResponse(payload))  # type: ignore[arg-type]


def _propagate_context_to_pool_threads() -> None:
    """A handler's own worker threads act with its role, as every thread of a Lambda
    environment does."""
    if getattr(ThreadPoolExecutor.submit, "_devstack_iam", False):
        return
    original = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> Any:
        context = contextvars.copy_context()
        return original(self, context.run, fn, *args, **kwargs)

    submit._devstack_iam = True  # type: ignore[attr-defined]
    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]
