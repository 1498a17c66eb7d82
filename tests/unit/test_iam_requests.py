"""What each AWS request asks IAM for, read as AWS reads it."""

from __future__ import annotations

import json

import pytest

from devstack.iam import Role, Statement
from devstack.iam_enforce import Authorizer
from devstack.iam_requests import AwsRequest, UnreadableRequest, access_key_of, grants_needed

REGION, ACCOUNT = "eu-west-1", "123456789012"
AUTH = ("AWS4-HMAC-SHA256 Credential=ASIAKEY1234567890ABC/20261130/eu-west-1/{service}/"
        "aws4_request, SignedHeaders=host, Signature=abc")
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"


def _json_request(service: str, target: str, body: dict[str, object]) -> AwsRequest:
    headers = {"Authorization": AUTH.format(service=service), "X-Amz-Target": target}
    return AwsRequest.from_url("POST", f"https://{service}.{REGION}.amazonaws.com/", headers,
                               json.dumps(body).encode(), REGION, ACCOUNT)


def _s3(method: str, url: str, headers: dict[str, str] | None = None) -> AwsRequest:
    return AwsRequest.from_url(method, url, {"Authorization": AUTH.format(service="s3"),
                                             **(headers or {})}, b"", REGION, ACCOUNT)


def test_a_transaction_needs_each_item_s_action_on_each_table() -> None:
    request = _json_request("dynamodb", "DynamoDB_20120810.TransactWriteItems", {
        "TransactItems": [
            {"Update": {"TableName": "Accounts"}},
            {"Put": {"TableName": "Ledger"}},
            {"ConditionCheck": {"TableName": "Tasks"}},
            {"Delete": {"TableName": "Tasks"}},
        ]})
    assert grants_needed(request) == [
        ("dynamodb:UpdateItem", f"{TABLE}/Accounts"),
        ("dynamodb:PutItem", f"{TABLE}/Ledger"),
        ("dynamodb:ConditionCheckItem", f"{TABLE}/Tasks"),
        ("dynamodb:DeleteItem", f"{TABLE}/Tasks"),
    ]
    assert access_key_of(request) == "ASIAKEY1234567890ABC"


def test_a_query_on_an_index_needs_the_index_arn() -> None:
    request = _json_request("dynamodb", "DynamoDB_20120810.Query",
                            {"TableName": "Tasks", "IndexName": "by_owner"})
    assert grants_needed(request) == [("dynamodb:Query", f"{TABLE}/Tasks/index/by_owner")]


@pytest.mark.parametrize(("method", "url", "action", "resource"), [
    ("GET", "https://b.s3.eu-west-1.amazonaws.com/outputs/x.jpg", "s3:GetObject",
     "arn:aws:s3:::b/outputs/x.jpg"),
    ("HEAD", "http://127.0.0.1:4566/b/outputs/x.jpg", "s3:GetObject",
     "arn:aws:s3:::b/outputs/x.jpg"),
    ("PUT", "http://127.0.0.1:4566/b/zips/z.zip?partNumber=1&uploadId=u", "s3:PutObject",
     "arn:aws:s3:::b/zips/z.zip"),
    ("POST", "http://127.0.0.1:4566/b/zips/z.zip?uploads", "s3:PutObject",
     "arn:aws:s3:::b/zips/z.zip"),
    ("DELETE", "http://127.0.0.1:4566/b/zips/z.zip?uploadId=u", "s3:AbortMultipartUpload",
     "arn:aws:s3:::b/zips/z.zip"),
    ("DELETE", "https://b.s3.amazonaws.com/outputs/x.jpg", "s3:DeleteObject",
     "arn:aws:s3:::b/outputs/x.jpg"),
    ("GET", "http://127.0.0.1:4566/b?list-type=2&prefix=outputs/", "s3:ListBucket",
     "arn:aws:s3:::b"),
])
def test_s3_requests_map_to_their_action_and_object(method: str, url: str, action: str,
                                                    resource: str) -> None:
    assert grants_needed(_s3(method, url)) == [(action, resource)]


def test_a_copy_also_reads_its_source() -> None:
    request = _s3("PUT", "http://127.0.0.1:4566/b/dst.jpg", {"x-amz-copy-source": "/a/src.jpg"})
    assert grants_needed(request) == [("s3:PutObject", "arn:aws:s3:::b/dst.jpg"),
                                      ("s3:GetObject", "arn:aws:s3:::a/src.jpg")]


def test_a_presigned_url_is_the_signer_s_request() -> None:
    url = ("http://127.0.0.1:4566/b/uploads/u/x.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           "&X-Amz-Credential=ASIAPRESIGNER0000000%2F20261130%2Feu-west-1%2Fs3%2Faws4_request"
           "&X-Amz-Signature=abc")
    request = AwsRequest.from_url("PUT", url, {}, b"", REGION, ACCOUNT)
    assert access_key_of(request) == "ASIAPRESIGNER0000000"
    assert grants_needed(request) == [("s3:PutObject", "arn:aws:s3:::b/uploads/u/x.jpg")]


def test_step_functions_events_and_lambda_name_their_resources() -> None:
    stop = _json_request("states", "AWSStepFunctions.StopExecution",
                         {"executionArn": "arn:aws:states:eu-west-1:1:execution:M:e"})
    assert grants_needed(stop) == [("states:StopExecution",
                                    "arn:aws:states:eu-west-1:1:execution:M:e")]
    events = _json_request("events", "AWSEvents.PutEvents",
                           {"Entries": [{"Source": "s"}, {"EventBusName": "custom"}]})
    assert grants_needed(events) == [
        ("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/custom"),
        ("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"),
    ]
    invoke = AwsRequest.from_url(
        "POST", "http://127.0.0.1:4566/2015-03-31/functions/Worker/invocations",
        {"Authorization": AUTH.format(service="lambda")}, b"{}", REGION, ACCOUNT)
    assert grants_needed(invoke) == [
        ("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:Worker")]


@pytest.mark.parametrize(("operation", "action"), [
    ("SendMessage", "sqs:SendMessage"), ("SendMessageBatch", "sqs:SendMessage"),
    ("ReceiveMessage", "sqs:ReceiveMessage"), ("DeleteMessage", "sqs:DeleteMessage"),
    ("ChangeMessageVisibility", "sqs:ChangeMessageVisibility"),
    ("GetQueueAttributes", "sqs:GetQueueAttributes"),
])
def test_sqs_requests_need_their_action_on_the_queue_their_url_names(
    operation: str, action: str
) -> None:
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/hooks"
    request = _json_request("sqs", f"AmazonSQS.{operation}", {"QueueUrl": url})
    assert grants_needed(request) == [(action, f"arn:aws:sqs:{REGION}:{ACCOUNT}:hooks")]
    query = AwsRequest.from_url(
        "POST", f"https://sqs.{REGION}.amazonaws.com/",
        {"Authorization": AUTH.format(service="sqs")},
        f"Action={operation}&QueueUrl={url}".encode(), REGION, ACCOUNT)
    assert grants_needed(query) == [(action, f"arn:aws:sqs:{REGION}:{ACCOUNT}:hooks")]


def test_sqs_operations_not_modelled_are_refused() -> None:
    url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/hooks"
    for operation in ("PurgeQueue", "DeleteQueue", "SetQueueAttributes"):
        with pytest.raises(UnreadableRequest):
            grants_needed(_json_request("sqs", f"AmazonSQS.{operation}", {"QueueUrl": url}))
    with pytest.raises(UnreadableRequest):
        grants_needed(_json_request("sqs", "AmazonSQS.SendMessage", {"QueueUrl": "hooks"}))


def test_a_request_that_cannot_be_read_is_refused_not_waved_through() -> None:
    with pytest.raises(UnreadableRequest):
        grants_needed(_json_request("sqs", "AmazonSQS.SendMessage", {}))
    with pytest.raises(UnreadableRequest):
        grants_needed(_s3("POST", "http://127.0.0.1:4566/b?delete"))


def test_iam_evaluation_deny_wins_and_wildcards_match() -> None:
    role = Role("R", "r", "arn:aws:iam::1:role/r", ("Fn",), (
        Statement("p", "Allow", ("s3:Get*",), ("arn:aws:s3:::b/outputs/*",)),
        Statement("p", "Deny", ("s3:GetObject",), ("arn:aws:s3:::b/outputs/secret*",)),
        Statement("p", "Allow", ("dynamodb:Query",), ("arn:aws:dynamodb:*:*:table/T",),
                  conditional=True),
    ))
    assert role.decide("s3:GetObject", "arn:aws:s3:::b/outputs/x") is not None
    assert role.decide("S3:getobject", "arn:aws:s3:::b/outputs/x") is not None
    assert role.decide("s3:GetObject", "arn:aws:s3:::b/outputs/secret.txt") is None
    assert role.decide("s3:GetObject", "arn:aws:s3:::b/uploads/x") is None
    assert role.decide("s3:PutObject", "arn:aws:s3:::b/outputs/x") is None
    # conditions are not evaluated locally, so a conditional allow never grants
    assert role.decide("dynamodb:Query", "arn:aws:dynamodb:r:1:table/T") is None


def test_a_cors_preflight_is_not_authorized_but_the_request_after_it_is() -> None:
    role = Role("R", "r", "arn:aws:iam::1:role/r", ("Fn",), (
        Statement("p", "Allow", ("s3:PutObject",), ("arn:aws:s3:::b/uploads/*",)),))
    authorizer = Authorizer([role], REGION, ACCOUNT)
    credential = f"{role.credentials.access_key_id}%2F20261130%2F{REGION}%2Fs3%2Faws4_request"

    def request(method: str, key: str) -> AwsRequest:
        url = f"http://127.0.0.1:4566/b/{key}?X-Amz-Credential={credential}&X-Amz-Signature=a"
        return AwsRequest.from_url(method, url, {}, b"", REGION, ACCOUNT)

    assert authorizer.check(request("OPTIONS", "elsewhere/x.jpg")) is None
    assert authorizer.check(request("PUT", "uploads/u/x.jpg")) is None
    denial = authorizer.check(request("PUT", "elsewhere/x.jpg"))
    assert denial is not None and denial.action == "s3:PutObject"
