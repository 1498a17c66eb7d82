"""What an AWS API request asks IAM for: the caller's access key and each (action, resource).

This is what AWS itself authorizes, request by request, for the services the functions and the
state machine use: every table of a transaction (each with the action of its item), the index
ARN of a query on an index, the object ARN of an S3 request, the execution ARN of a
StopExecution, the queue ARN of an SQS request. A request this module cannot read is refused,
never waved through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["AwsRequest", "Grant", "UnreadableRequest", "access_key_of", "grants_needed"]

Grant = tuple[str, str]  # (action, resource ARN)

_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_QUERY_CREDENTIAL = re.compile(r"^([A-Z0-9]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request$")
_TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
_VIRTUAL_HOST = re.compile(r"^(?P<bucket>.+?)\.(s3[.-][a-z0-9.-]*amazonaws\.com|localhost)$")


class UnreadableRequest(ValueError):
    """The local stack cannot tell what this request needs: it is denied."""


@dataclass(frozen=True)
class AwsRequest:
    method: str
    host: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    region: str = "us-east-1"
    account: str = "123456789012"
    _json: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_url(cls, method: str, url: str, headers: Mapping[str, str], body: bytes,
                 region: str, account: str) -> AwsRequest:
        parts = urlsplit(url)
        return cls(method.upper(), parts.netloc, unquote(parts.path) or "/",
                   parse_qs(parts.query, keep_blank_values=True),
                   {k.lower(): _text(v) for k, v in headers.items()}, body, region, account)

    def json(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.body or b"{}")
        except ValueError as exc:
            raise UnreadableRequest(f"body is not JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UnreadableRequest("body is not a JSON object")
        return loaded

    @property
    def target(self) -> str:
        return self.headers.get("x-amz-target", "")

    @property
    def credential_scope(self) -> tuple[str, str, str] | None:
        """(access key, region, service) from the signature, header or presigned query."""
        found = _CREDENTIAL.search(self.headers.get("authorization", ""))
        if found is None and "X-Amz-Credential" in self.query:
            found = _QUERY_CREDENTIAL.match(self.query["X-Amz-Credential"][0])
        if found is None:
            return None
        return found.group(1), found.group(2), found.group(3)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def access_key_of(request: AwsRequest) -> str | None:
    scope = request.credential_scope
    return scope[0] if scope else None


def grants_needed(request: AwsRequest) -> list[Grant]:
    """Each (action, resource) IAM must allow for ``request`` to go through."""
    scope = request.credential_scope
    service = scope[2] if scope else _service_from_target(request.target)
    reader = _READERS.get(service)
    if reader is None:
        raise UnreadableRequest(f"no IAM model for service {service!r}")
    return reader(request)


def _service_from_target(target: str) -> str:
    prefix = target.partition(".")[0]
    return {"DynamoDB_20120810": "dynamodb", "AWSStepFunctions": "states",
            "AWSEvents": "events"}.get(prefix, prefix.lower())


def _arn(request: AwsRequest, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{request.region}:{request.account}:{resource}"


# ---------------------------------------------------------------- DynamoDB


def _dynamodb(request: AwsRequest) -> list[Grant]:
    operation = request.target.rpartition(".")[2]
    body = request.json()
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return [_transact_item(request, entry) for entry in body.get("TransactItems") or []]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", _table_arn(request, name))
                for name in body.get("RequestItems") or {}]
    if operation in ("ListTables",):
        return [(f"dynamodb:{operation}", "*")]
    table = body.get("TableName")
    if not table:
        raise UnreadableRequest(f"DynamoDB {operation} names no table")
    resource = _table_arn(request, str(table))
    if body.get("IndexName"):
        resource = f"{resource}/index/{body['IndexName']}"
    return [(f"dynamodb:{operation}", resource)]


def _transact_item(request: AwsRequest, entry: Mapping[str, Any]) -> Grant:
    for kind, action in _TRANSACT_ACTIONS.items():
        if kind in entry:
            return f"dynamodb:{action}", _table_arn(request, str(entry[kind]["TableName"]))
    raise UnreadableRequest(f"unknown transaction item {sorted(entry)}")


def _table_arn(request: AwsRequest, name: str) -> str:
    return name if name.startswith("arn:") else _arn(request, "dynamodb", f"table/{name}")


# ---------------------------------------------------------------- Step Functions, EventBridge


_SFN_RESOURCE_FIELDS = ("executionArn", "stateMachineArn", "mapRunArn", "activityArn")


def _states(request: AwsRequest) -> list[Grant]:
    operation = request.target.rpartition(".")[2]
    body = request.json()
    for name in _SFN_RESOURCE_FIELDS:
        if body.get(name):
            return [(f"states:{operation}", str(body[name]))]
    if operation.startswith("List"):
        return [(f"states:{operation}", "*")]
    raise UnreadableRequest(f"Step Functions {operation} names no resource")


def _events(request: AwsRequest) -> list[Grant]:
    operation = request.target.rpartition(".")[2]
    body = request.json()
    if operation != "PutEvents":
        raise UnreadableRequest(f"no IAM model for events:{operation}")
    buses = {str(entry.get("EventBusName") or "default") for entry in body.get("Entries") or []}
    return [("events:PutEvents", bus if bus.startswith("arn:")
             else _arn(request, "events", f"event-bus/{bus}")) for bus in sorted(buses)]


# ---------------------------------------------------------------- SQS

# Operations on one queue, named by its QueueUrl, and the IAM action each needs (the batch
# forms are authorized as their single forms).
_SQS_ACTIONS = {
    "SendMessage": "sqs:SendMessage", "SendMessageBatch": "sqs:SendMessage",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage", "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
}


def _sqs(request: AwsRequest) -> list[Grant]:
    if request.target:  # the JSON protocol: X-Amz-Target AmazonSQS.<Operation>
        operation = request.target.rpartition(".")[2]
        queue_url = request.json().get("QueueUrl")
    else:  # the query protocol: Action=<Operation>&QueueUrl=... in the form body or the URL
        form = parse_qs(request.body.decode("latin-1"), keep_blank_values=True)
        params = {**request.query, **form}
        operation = (params.get("Action") or [""])[0]
        queue_url = (params.get("QueueUrl") or [""])[0]
    action = _SQS_ACTIONS.get(operation)
    if action is None:
        raise UnreadableRequest(f"no IAM model for sqs:{operation}")
    if not isinstance(queue_url, str) or not queue_url:
        raise UnreadableRequest(f"SQS {operation} names no queue")
    path = urlsplit(queue_url).path.strip("/").split("/")
    if len(path) != 2 or not all(path):
        raise UnreadableRequest(f"SQS queue URL {queue_url!r} is not <account>/<name>")
    account, name = path
    return [(action, f"arn:aws:sqs:{request.region}:{account}:{name}")]


# ---------------------------------------------------------------- Lambda


_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


def _lambda(request: AwsRequest) -> list[Grant]:
    found = _INVOKE_PATH.match(request.path)
    if found is None or request.method != "POST":
        raise UnreadableRequest(f"no IAM model for Lambda {request.method} {request.path}")
    name = found.group("name")
    if not name.startswith("arn:"):
        name = _arn(request, "lambda", f"function:{name}")
    qualifier = request.query.get("Qualifier", [""])[0]
    return [("lambda:InvokeFunction", f"{name}:{qualifier}" if qualifier else name)]


# ---------------------------------------------------------------- S3


def _s3(request: AwsRequest) -> list[Grant]:
    bucket, key = _bucket_and_key(request)
    if not bucket:
        return [("s3:ListAllMyBuckets", "*")]
    q, method = request.query, request.method
    if not key:
        return [(_bucket_action(method, q), f"arn:aws:s3:::{bucket}")]
    object_arn = f"arn:aws:s3:::{bucket}/{key}"
    if "uploadId" in q and method == "DELETE":
        action = "s3:AbortMultipartUpload"
    elif "uploadId" in q and method == "GET":
        action = "s3:ListMultipartUploadParts"
    elif method in ("PUT", "POST"):
        action = "s3:PutObject"
    elif method in ("GET", "HEAD"):
        action = "s3:GetObject"
    elif method == "DELETE":
        action = "s3:DeleteObject"
    else:
        raise UnreadableRequest(f"no IAM model for S3 {method} on an object")
    if "tagging" in q or "acl" in q or "retention" in q or "legal-hold" in q:
        raise UnreadableRequest("object sub-resources are not modelled")
    grants = [(action, object_arn)]
    source = request.headers.get("x-amz-copy-source")
    if source and method == "PUT":
        grants.append(("s3:GetObject", "arn:aws:s3:::" + unquote(source).lstrip("/")))
    return grants


def _bucket_action(method: str, query: Mapping[str, list[str]]) -> str:
    if method in ("GET", "HEAD") and "uploads" in query:
        return "s3:ListBucketMultipartUploads"
    if method == "GET" and not set(query) - {"list-type", "prefix", "delimiter", "max-keys",
                                               "continuation-token", "start-after",
                                               "encoding-type", "marker", "fetch-owner"}:
        return "s3:ListBucket"
    if method == "HEAD":
        return "s3:ListBucket"
    if method == "POST" and "delete" in query:
        raise UnreadableRequest("DeleteObjects needs per-key authorization; not modelled")
    raise UnreadableRequest(f"no IAM model for S3 {method} on a bucket ({sorted(query)})")


def _bucket_and_key(request: AwsRequest) -> tuple[str, str]:
    host = request.host.rsplit(":", 1)[0] if ":" in request.host else request.host
    virtual = _VIRTUAL_HOST.match(host)
    if virtual:
        return virtual.group("bucket"), request.path.lstrip("/")
    bucket, _, key = request.path.lstrip("/").partition("/")
    return bucket, key


_READERS = {
    "dynamodb": _dynamodb,
    "states": _states,
    "events": _events,
    "lambda": _lambda,
    "s3": _s3,
    "sqs": _sqs,
}
