"""Presigned URLs as AWS hands them to browsers, in us-east-1 and in a second region.

The stack here runs without an endpoint override, so boto3 resolves the real AWS endpoints (and
moto in process answers them): every upload, output and ZIP URL must be the regional virtual
host `<bucket>.s3.<region>.amazonaws.com`, signed for that region. Outside us-east-1 the global
host answers a new bucket with a redirect that a browser's CORS preflight cannot follow. The
URLs are then used as a browser would, with plain HTTP requests.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from moto import mock_aws

from devstack.handlers import HandlerRegistry, in_process_environments, make_context
from devstack.template import Naming, Template, load_template
from tests.integration.conftest import Stack, _build, lambda_environment
from tests.support.http_events import REPO

REGIONS = ("us-east-1", "eu-west-1")
PHOTO = REPO / "tests/fixtures/corpus/photos/rocket.jpg"


class RegionalStack(Stack):
    """The conftest's stack built in a given region. Its handlers are imported afresh: a warm
    handler keeps the clients, and so the region, of the stack it first served."""

    def __init__(self, template: Template) -> None:
        super().__init__(template)
        self._handlers = HandlerRegistry(template, environments=in_process_environments(template))

    def invoke(self, function_id: str, event: dict[str, Any]) -> dict[str, Any]:
        function = self.template.function(function_id)
        context = make_context(function.name, function.arn, function.memory_size,
                               function.timeout)
        result: dict[str, Any] = self._handlers.get(function_id)(event, context)
        return result


@pytest.fixture(params=REGIONS)
def regional(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[RegionalStack]:
    template = load_template(REPO / "template.yaml", Naming(region=request.param))
    lambda_environment(template, monkeypatch)
    with mock_aws():
        _build(template)
        yield RegionalStack(template)


def assert_regional(url: str, bucket: str, region: str) -> None:
    """https on the bucket's regional virtual host, SigV4-signed for that region."""
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc) == ("https", f"{bucket}.s3.{region}.amazonaws.com"), url
    query = parse_qs(parsed.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"], url
    assert query["X-Amz-Credential"][0].endswith(f"/{region}/s3/aws4_request"), url
    assert "host" in query["X-Amz-SignedHeaders"][0].split(";"), url


def uploaded(stack: RegionalStack, user: str) -> str:
    """A photo PUT through the URL that POST /api/uploads presigned; returns its input_url."""
    data = PHOTO.read_bytes()
    reply = stack.call("POST", "/api/uploads", user=user, body={"files": [
        {"filename": PHOTO.name, "content_type": "image/jpeg", "size": len(data)}]})
    assert reply.status == 200, reply.body
    [upload] = reply.body["data"]["uploads"]
    assert_regional(upload["upload_url"], stack.env["UPLOADS_BUCKET"], stack.template.naming.region)
    put = requests.put(upload["upload_url"], data=data, headers=upload["headers"], timeout=30)
    assert put.status_code == 200, put.text
    input_url: str = upload["input_url"]
    return input_url


def test_upload_url_is_regional_and_takes_the_bytes(regional: RegionalStack) -> None:
    # Given a user; When she asks for an upload URL and PUTs a photo to it
    user = regional.user("uma", quota=5)
    input_url = uploaded(regional, user)
    # Then the bytes are in her upload prefix, and asking cost nothing
    key = input_url.split("/", 3)[3]
    stored = regional.s3.get_object(Bucket=regional.env["UPLOADS_BUCKET"], Key=key)
    assert stored["Body"].read() == PHOTO.read_bytes()
    assert regional.balance(user) == 5


def test_output_and_zip_urls_are_regional_and_serve_the_results(regional: RegionalStack) -> None:
    # Given a one-photo batch, uploaded through its presigned URL, run to the end
    region = regional.template.naming.region
    user = regional.user("victor", quota=5)
    reply = regional.call("POST", "/api/tasks/batch", user=user, body={
        "feature_id": "basic_clean", "input_images": [uploaded(regional, user)]})
    assert reply.status == 200, reply.body
    task_id = reply.body["data"]["task_id"]
    for function_id, event in (
        ("StartBatchFunction", {"task_id": task_id, "round": 1}),
        ("ProcessItemFunction", {"action": "process", "task_id": task_id, "index": 0,
                                 "attempt": 1}),
        ("FinalizeFunction", {"task_id": task_id, "round": 1}),
    ):
        regional.invoke(function_id, event)
    # When she reads the task and asks for the ZIP
    task = regional.call("GET", f"/api/tasks/{task_id}", user=user).body["data"]
    download = regional.call("GET", f"/api/tasks/{task_id}/download-zip", user=user)
    # Then both URLs are regional, and they serve the result and the ZIP holding it
    outputs = regional.env["OUTPUTS_BUCKET"]
    output_url = task["batch_items"][0]["output_url"]
    assert task["status"] == "success" and download.status == 302, (task, download.body)
    assert_regional(output_url, outputs, region)
    assert_regional(download.headers["Location"], outputs, region)
    result = requests.get(output_url, timeout=30)
    archive = requests.get(download.headers["Location"], timeout=30)
    assert result.status_code == archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        assert zipped.read("result_1.jpg") == result.content
    assert regional.balance(user) == 4
