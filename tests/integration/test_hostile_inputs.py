"""Hostile inputs through the real handlers on the real template (moto in process).

Every case goes through the system, never the unit functions: a request is refused at the edge
(400 in the contract's shape, nothing charged, nothing started), or an item ends ``failed`` with
a stable ``error_code`` and a readable message and is refunded, or (odd but valid images) it
succeeds with the right orientation and mode. Every case also checks the books:
``initial - balance == charges - refunds`` from the ledger, and per task
``net charge == cost x successes``.

Web inputs never leave the machine: names resolve through a fake DNS table, and the only socket
the fetcher may open goes to a TLS server on 127.0.0.1 that the fake public address is routed
to. The product's own address checks are untouched, so a name resolving (or a redirect leading)
to a private address is refused by the product, not by the test.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import json
import re
import socket
import ssl
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
import requests
from moto import mock_aws
from PIL import Image
from pixelbatch.imaging import fetch as fetch_mod
from pixelbatch.services import processing as processing_mod
from pixelbatch.settings import Settings

from devstack.template import Template, load_template
from tests.integration.conftest import Reply, Stack, _build, lambda_environment
from tests.integration.test_processing import details, process, zip_of
from tests.support.http_events import REPO

FEATURE = "basic_clean"
_FEATURES = json.loads((REPO / "catalog/features.json").read_text())
COST = next(int(f["quota_cost"]) for f in _FEATURES if f["feature_id"] == FEATURE)
PHOTO = REPO / "tests/fixtures/corpus/photos/chelsea.png"

# The contract's per-item messages (API.md / failures.py): spelled out, not imported.
UNSUPPORTED = ("unsupported_format", "图片格式不支持")
NOT_AN_IMAGE = ("not_an_image", "图片格式不支持")
CORRUPT = ("corrupt_image", "图片已损坏，无法解码")
TOO_LARGE = ("too_large", "图片文件过大")
TOO_MANY_PIXELS = ("too_many_pixels", "图片像素过多")
BLOCKED = ("blocked_destination", "不允许访问该地址")
TIMEOUT = ("timeout", "下载图片超时")
NOT_FOUND = ("not_found", "图片不存在")
# Creation-time messages: "第N张图片: <item message>"
URL_INVALID = "图片地址无效"
URL_BLOCKED = "不允许访问该地址"


# ---------------------------------------------------------------------- the stack, once


@contextmanager
def moto_stack(template: Template) -> Iterator[Stack]:
    """The conftest's stack (same template, tables, catalog, handlers), built once per module:
    building it takes ~0.5 s, and every test here uses users of its own."""
    with pytest.MonkeyPatch.context() as mp:
        lambda_environment(template, mp)
        with mock_aws():
            _build(template)
            yield Stack(template)


@pytest.fixture(scope="module")
def stack(template: Template) -> Iterator[Stack]:
    with moto_stack(template) as built:
        yield built


# ---------------------------------------------------------------------- money


@dataclass(frozen=True)
class Account:
    user: str
    initial: int


_serial = iter(range(1, 1_000_000))


def new_account(stack: Stack, name: str, quota: int = 20, plan: str = "pro") -> Account:
    user = f"{name}-{next(_serial)}"
    stack.user(user, quota=quota, plan=plan)
    return Account(user, quota)


def ledger_rows(stack: Stack, user: str) -> list[dict[str, Any]]:
    return stack.ledger(user)


def assert_books(stack: Stack, account: Account, *, balance: int,
                 successes: dict[str, int] | None = None) -> None:
    """The balance is what the test expects, the ledger explains it, and every task kept
    exactly ``cost x successes``."""
    rows = ledger_rows(stack, account.user)
    charges = sum(int(r["amount"]) for r in rows if r["kind"] == "charge")
    refunds = sum(int(r["amount"]) for r in rows if r["kind"] == "refund")
    assert stack.balance(account.user) == balance
    assert account.initial - balance == charges - refunds, rows
    refund_ids = [r["entry_id"] for r in rows if r["kind"] == "refund"]
    assert len(refund_ids) == len(set(refund_ids))
    for task_id, count in (successes or {}).items():
        mine = [r for r in rows if r.get("task_id") == task_id]
        net = sum(int(r["amount"]) * (1 if r["kind"] == "charge" else -1) for r in mine)
        assert net == COST * count, (task_id, mine)


def assert_nothing_charged(stack: Stack, account: Account) -> None:
    """No charge without a task: balance intact, only the grant in the ledger, no task (an
    execution is only ever started for a task that was written with its charge)."""
    assert stack.balance(account.user) == account.initial
    assert [r["kind"] for r in ledger_rows(stack, account.user)] == ["grant"]
    assert stack.call("GET", "/api/tasks", user=account.user).body["data"]["tasks"] == []


def assert_error(reply: Reply, status: int, code: int, message: str | re.Pattern[str] | None
                 ) -> None:
    """The contract's failure shape and its key, nothing internal in the text."""
    assert reply.status == status, reply.body
    assert isinstance(reply.body, dict)
    assert set(reply.body) == {"success", "errorCode", "message", "error"}
    assert re.fullmatch(r"[a-z][a-z0-9_]*", reply.body["error"]), reply.body
    assert reply.body["success"] is False and reply.body["errorCode"] == code
    text = reply.body["message"]
    assert isinstance(text, str) and text
    assert not re.search(r"Traceback|pixelbatch|Exception|botocore|File \"", text), text
    if isinstance(message, re.Pattern):
        assert message.fullmatch(text), text
    elif message is not None:
        assert text == message


# ---------------------------------------------------------------------- driving a batch


def put_upload(stack: Stack, user: str, name: str, data: bytes,
               content_type: str = "image/jpeg") -> str:
    bucket = stack.env["UPLOADS_BUCKET"]
    key = f"uploads/{user}/{name}"
    stack.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    return f"s3://{bucket}/{key}"


def create_batch(stack: Stack, user: str, urls: list[str], **input_data: Any) -> str:
    reply = stack.call("POST", "/api/tasks/batch", user=user, body={
        "feature_id": FEATURE, "input_images": urls, "input_data": input_data})
    assert reply.status == 200, reply.body
    assert reply.body["data"]["quota_cost"] == COST * len(urls)
    task_id: str = reply.body["data"]["task_id"]
    return task_id


def execution_payload(stack: Stack, task_id: str, round_no: int = 1) -> dict[str, Any]:
    """The input the API really started the execution with (found by its deterministic name,
    not by listing, which pages at 100)."""
    machine_arn = stack.template.state_machines[0].arn
    arn = machine_arn.replace(":stateMachine:", ":execution:") + f":{task_id}-r{round_no}"
    payload: dict[str, Any] = json.loads(stack.sfn.describe_execution(executionArn=arn)["input"])
    return payload


def drive_round(stack: Stack, task_id: str, round_no: int = 1) -> None:
    """What the state machine does for one round, with the item Catch path (an item Lambda that
    raises is followed by record_failure with the error's type name, as the runtime reports)."""
    payload = execution_payload(stack, task_id, round_no)
    stack.invoke("StartBatchFunction", {"task_id": task_id, "round": round_no})
    for item in payload["items"]:
        try:
            process(stack, task_id, item["index"], item["attempt"])
        except Exception as error:  # the Lambda failed: the ASL's Catch takes over
            stack.invoke("ProcessItemFunction", {
                "action": "record_failure", "task_id": task_id, "index": item["index"],
                "attempt": item["attempt"], "error": type(error).__name__})
    stack.invoke("FinalizeFunction", {"task_id": task_id, "round": round_no})


def run_batch(stack: Stack, account: Account, urls: list[str]) -> tuple[str, dict[str, Any]]:
    task_id = create_batch(stack, account.user, urls)
    drive_round(stack, task_id)
    return task_id, details(stack, account.user, task_id)


Expected = tuple[str, str] | None  # (error_code, error_message) of a failure, None for success


def assert_outcomes(stack: Stack, account: Account, task_id: str, task: dict[str, Any],
                    expected: dict[str, Expected]) -> None:
    """Item i (named by the i-th key) ended as expected; the task, the refunds and the ZIP agree.
    Names make a mismatch readable: the assertion shows every item's outcome side by side."""
    names = list(expected)
    got = {
        names[item["index"]]: None if item["status"] == "success" else (
            item["status"], item["error_code"], item["error_message"])
        for item in task["batch_items"]
    }
    want = {name: None if e is None else ("failed", *e) for name, e in expected.items()}
    assert got == want
    successes = sum(e is None for e in expected.values())
    failures = len(expected) - successes
    status = "success" if not failures else "partial_success" if successes else "failed"
    assert (task["status"], task["batch_success"], task["batch_failed"]) == (
        status, successes, failures)
    assert all((item["output_url"] is None) == (item["status"] != "success")
               for item in task["batch_items"])
    assert_books(stack, account, balance=account.initial - COST * successes,
                 successes={task_id: successes})
    if successes:
        archive = zip_of(stack, account.user, task_id)
        assert sorted(archive.namelist()) == sorted(
            ["manifest.json"] + [f"result_{i + 1}.jpg" for i, e in
                                 enumerate(expected.values()) if e is None])
    else:
        nothing = stack.call("GET", f"/api/tasks/{task_id}/download-zip", user=account.user)
        assert_error(nothing, 400, 4001, "没有可下载的文件")


# ---------------------------------------------------------------------- bytes


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def photo_jpeg() -> bytes:
    with Image.open(PHOTO) as image:
        return encode(image.convert("RGB"), "JPEG", quality=90)


def photo_png() -> bytes:
    with Image.open(PHOTO) as image:
        return encode(image.convert("RGB"), "PNG")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG header declaring width x height, with a few bytes of pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def corrupt_png() -> bytes:
    data = bytearray(photo_png())
    start = data.find(b"IDAT") + 200
    for i in range(start, start + 64):
        data[i] ^= 0x5A
    return bytes(data)


PDF = b"%PDF-1.7\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
SVG = (b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
       b'width="10" height="10"><rect width="10" height="10" fill="red"/></svg>')
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n"
PSD = b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 10, 10, 8, 3) + b"\x00" * 64
HTML = b"<!doctype html><html><body>Quarterly report</body></html>\n" * 10

ITEM_FAILURES: dict[str, tuple[Callable[[], bytes], tuple[str, str]]] = {
    "pdf_labelled_jpeg": (lambda: PDF, UNSUPPORTED),
    "svg_labelled_jpeg": (lambda: SVG, UNSUPPORTED),
    "eps_labelled_jpeg": (lambda: EPS, UNSUPPORTED),
    "psd_labelled_jpeg": (lambda: PSD, UNSUPPORTED),
    "html_labelled_jpeg": (lambda: HTML, NOT_AN_IMAGE),
    "empty_file": (lambda: b"", NOT_AN_IMAGE),
    "truncated_jpeg": (lambda: photo_jpeg()[: len(photo_jpeg()) // 2], CORRUPT),
    "jpeg_headers_only": (lambda: photo_jpeg()[:600], CORRUPT),
    "truncated_png": (lambda: photo_png()[: len(photo_png()) // 2], CORRUPT),
    "corrupt_png_data": (corrupt_png, CORRUPT),
    "png_bomb_60000x60000": (lambda: png_declaring(60_000, 60_000), TOO_MANY_PIXELS),
    "png_8000x8000_over_product_limit": (lambda: png_declaring(8_000, 8_000), TOO_MANY_PIXELS),
}


# ====================================================================== 1. the edge: creation


HOSTILE_URLS: list[tuple[str, str]] = [
    # wrong schemes
    ("file:///etc/passwd", URL_INVALID),
    ("ftp://images.unsplash.com/a.jpg", URL_INVALID),
    ("gopher://images.unsplash.com:70/_GET%20/latest/meta-data/", URL_INVALID),
    ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8",
     URL_INVALID),
    ("javascript:alert(document.cookie)", URL_INVALID),
    ("//images.unsplash.com/a.jpg", URL_INVALID),
    ("images.unsplash.com/a.jpg", URL_INVALID),
    # http, even to an allowed host
    ("http://images.unsplash.com/a.jpg", URL_INVALID),
    # https to hosts not on the allowlist (images.unsplash.com, *.cloudfront.net)
    ("https://evil.example.net/a.jpg", URL_BLOCKED),
    ("https://cloudfront.net/a.jpg", URL_BLOCKED),
    ("https://evilcloudfront.net/a.jpg", URL_BLOCKED),
    ("https://images.unsplash.com.evil.net/a.jpg", URL_BLOCKED),
    ("https://images.unsplash.com@evil.net/a.jpg", URL_INVALID),
    ("https://user:secret@images.unsplash.com/a.jpg", URL_INVALID),
    # literal private, loopback, link-local, metadata and unspecified addresses
    ("https://10.0.0.1/a.jpg", URL_BLOCKED),
    ("https://127.0.0.1/a.jpg", URL_BLOCKED),
    ("https://169.254.169.254/latest/meta-data/iam/security-credentials/", URL_BLOCKED),
    ("http://169.254.169.254/latest/meta-data/", URL_INVALID),
    ("https://[::1]/a.jpg", URL_BLOCKED),
    ("https://[::ffff:127.0.0.1]/a.jpg", URL_BLOCKED),
    ("https://[fd00:ec2::254]/latest/meta-data/", URL_BLOCKED),
    ("https://0.0.0.0/a.jpg", URL_BLOCKED),
    ("https://2130706433/a.jpg", URL_BLOCKED),  # 127.0.0.1 as one number
    # parser confusion
    ("https://images.unsplash.com\\@127.0.0.1/a.jpg", URL_INVALID),
    ("https://images.unsplash.com/a.jpg\r\nHost: 169.254.169.254", URL_INVALID),
    ("https://images.unsplash.com/a b.jpg", URL_INVALID),
    # uploads that are not the caller's own
    ("s3://{uploads}/uploads/{victim}/photo.jpg", URL_BLOCKED),
    ("s3://{uploads}/uploads/{me}/../{victim}/photo.jpg", URL_BLOCKED),
    ("s3://{uploads}/uploads/{me}/./photo.jpg", URL_BLOCKED),
    ("s3://{uploads}/uploads/{me}//photo.jpg", URL_BLOCKED),
    ("s3://{uploads}/uploads/{me}x/photo.jpg", URL_BLOCKED),
    ("s3://{uploads}/{me}/photo.jpg", URL_BLOCKED),
    ("s3://{uploads}/uploads/{me}", URL_BLOCKED),
    ("s3://{outputs}/outputs/{victim}/0000-a1.jpg", URL_BLOCKED),
    ("s3://{uploads}", URL_INVALID),
]


def _fill(url: str, stack: Stack, me: str) -> str:
    return url.format(uploads=stack.env["UPLOADS_BUCKET"], outputs=stack.env["OUTPUTS_BUCKET"],
                      me=me, victim="victim-1")


@pytest.mark.parametrize(("url", "message"), HOSTILE_URLS, ids=[u for u, _ in HOSTILE_URLS])
def test_hostile_input_url_is_refused_before_any_charge(
    stack: Stack, url: str, message: str
) -> None:
    # Given a user with two valid upload URLs of her own and one hostile URL third
    account = new_account(stack, "mallory")
    own = [_fill(f"s3://{{uploads}}/uploads/{{me}}/ok{i}.jpg", stack, account.user)
           for i in (0, 1)]
    # When she submits the batch
    reply = stack.call("POST", "/api/tasks/batch", user=account.user, body={
        "feature_id": FEATURE, "input_images": [*own, _fill(url, stack, account.user)]})
    # Then it is a 400 naming the third image, and nothing is charged or started
    assert_error(reply, 400, 4001, f"第3张图片: {message}")
    assert_nothing_charged(stack, account)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "https://169.254.169.254/latest/meta-data/",
    "s3://{uploads}/uploads/{victim}/photo.jpg",
])
def test_single_image_route_refuses_hostile_urls_too(stack: Stack, url: str) -> None:
    # Given a user; When she submits a hostile URL as a single-image task
    account = new_account(stack, "mallory")
    reply = stack.call("POST", "/api/tasks", user=account.user, body={
        "feature_id": FEATURE, "input_image": _fill(url, stack, account.user)})
    # Then the single-image route refuses it the same way, free of charge
    assert_error(reply, 400, 4001, re.compile(r"第1张图片: .+"))
    assert_nothing_charged(stack, account)


def _valid(user: str) -> list[str]:
    return [f"s3://pixelbatch-local-uploadsbucket/uploads/{user}/a/photo.jpg"]


def _raw_with_brightness(user: str, literal: str) -> str:
    """JSON that Python's parser accepts but the JSON spec does not (NaN, an overflowing 1e999)."""
    return (f'{{"feature_id": "{FEATURE}", "input_images": ["{_valid(user)[0]}"], '
            f'"input_data": {{"brightness": {literal}}}}}')


NUMBER_ERROR = re.compile(r"input_data参数无效: brightness: .+")
NON_FINITE = "请求体不能包含NaN、Infinity等非有限数值"
UNKNOWN_PARAM = re.compile(r"input_data参数无效: input_data: Additional properties .+")
BODIES: dict[str, tuple[Callable[[str], Any], str | re.Pattern[str]]] = {
    # counts
    "0_items": (lambda u: {"feature_id": FEATURE, "input_images": []}, "至少需要上传1张图片"),
    "51_items": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u) * 51},
                 "批量处理最多支持50张图片"),
    "100000_items": (lambda u: {"feature_id": FEATURE, "input_images": ["x"] * 100_000},
                     "批量处理最多支持50张图片"),
    # not JSON, or not an object
    "empty_body": (lambda u: "", "请求体必须是JSON对象"),
    "truncated_json": (lambda u: '{"feature_id": "basic_clean", "input_images": [',
                       "请求体不是合法的JSON"),
    "xml": (lambda u: "<task><feature_id>basic_clean</feature_id></task>", "请求体不是合法的JSON"),
    "form": (lambda u: "feature_id=basic_clean&input_images=a.jpg", "请求体不是合法的JSON"),
    "array": (lambda u: "[]", "请求体必须是JSON对象"),
    "null": (lambda u: "null", "请求体必须是JSON对象"),
    "number": (lambda u: "12", "请求体必须是JSON对象"),
    "overflowing_number": (lambda u: "1e999", NON_FINITE),
    # huge
    "6mb_feature_id": (lambda u: {"feature_id": "b" * 6_000_000, "input_images": _valid(u)},
                       "feature_id无效"),
    "6mb_garbage": (lambda u: "{" * 3_000_000 + "x", "请求体不是合法的JSON"),
    "5kb_input_data": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                  "input_data": {"k": "v" * 5000}}, "input_data过大"),
    # wrong JSON types, field by field
    "feature_id_number": (lambda u: {"feature_id": 12, "input_images": _valid(u)},
                          "feature_id不能为空"),
    "feature_id_null": (lambda u: {"feature_id": None, "input_images": _valid(u)},
                        "feature_id不能为空"),
    "feature_id_list": (lambda u: {"feature_id": [FEATURE], "input_images": _valid(u)},
                        "feature_id不能为空"),
    "feature_id_object": (lambda u: {"feature_id": {"$ne": ""}, "input_images": _valid(u)},
                          "feature_id不能为空"),
    "feature_id_missing": (lambda u: {"input_images": _valid(u)}, "feature_id不能为空"),
    "input_images_string": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u)[0]},
                            "input_images必须是数组"),
    "input_images_object": (lambda u: {"feature_id": FEATURE, "input_images": {"0": "a"}},
                            "input_images必须是数组"),
    "input_images_number": (lambda u: {"feature_id": FEATURE, "input_images": 3},
                            "input_images必须是数组"),
    "input_images_missing": (lambda u: {"feature_id": FEATURE}, "input_images必须是数组"),
    "input_images_null_entry": (lambda u: {"feature_id": FEATURE, "input_images": [None]},
                                "input_images[0]必须是非空字符串"),
    "input_images_number_entry": (lambda u: {"feature_id": FEATURE, "input_images": [1]},
                                  "input_images[0]必须是非空字符串"),
    "input_images_nested_list": (lambda u: {"feature_id": FEATURE, "input_images": [_valid(u)]},
                                 "input_images[0]必须是非空字符串"),
    "input_images_object_entry": (lambda u: {"feature_id": FEATURE,
                                             "input_images": [{"url": _valid(u)[0]}]},
                                  "input_images[0]必须是非空字符串"),
    "input_images_blank_entry": (lambda u: {"feature_id": FEATURE, "input_images": ["   "]},
                                 "input_images[0]必须是非空字符串"),
    "input_images_overlong_entry": (lambda u: {"feature_id": FEATURE,
                                               "input_images": [_valid(u)[0] + "a" * 2048]},
                                    "input_images[0]过长"),
    "input_data_string": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                     "input_data": "brightness=10"}, "input_data必须是对象"),
    "input_data_list": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                   "input_data": [10, 5]}, "input_data必须是对象"),
    "input_data_bool": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                   "input_data": True}, "input_data必须是对象"),
    "brightness_string": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                     "input_data": {"brightness": "10"}}, NUMBER_ERROR),
    "brightness_bool": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                   "input_data": {"brightness": True}}, NUMBER_ERROR),
    "brightness_fraction": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                       "input_data": {"brightness": 10.5}}, NUMBER_ERROR),
    "brightness_null": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                   "input_data": {"brightness": None}}, NUMBER_ERROR),
    "brightness_out_of_range": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                           "input_data": {"brightness": 10**6}}, NUMBER_ERROR),
    "brightness_nan": (lambda u: _raw_with_brightness(u, "NaN"), NON_FINITE),
    "brightness_infinity": (lambda u: _raw_with_brightness(u, "1e999"), NON_FINITE),
    # unknown feature params, including pipeline reference syntax smuggled in as data
    "unknown_param": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                 "input_data": {"saturation": 50}}, UNKNOWN_PARAM),
    "proto_param": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                               "input_data": {"__proto__": {"admin": True}}}, UNKNOWN_PARAM),
    "input_reference_param": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                         "input_data": {"$input": "brightness"}}, UNKNOWN_PARAM),
    "reference_as_value": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                      "input_data": {"brightness": {"$input": "contrast"}}},
                           NUMBER_ERROR),
    # server-owned fields
    "quota_cost_zero": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                                   "quota_cost": 0}, "quota_cost由服务端维护，不能由客户端提交"),
    "batch_items": (lambda u: {"feature_id": FEATURE, "input_images": _valid(u),
                               "batch_items": [{"index": 0, "status": "success"}]},
                    "batch_items由服务端维护，不能由客户端提交"),
}


@pytest.mark.parametrize("case", list(BODIES))
def test_hostile_batch_body_is_a_400_and_costs_nothing(stack: Stack, case: str) -> None:
    # Given a user with quota
    account = new_account(stack, "mallory")
    make_body, message = BODIES[case]
    # When she sends the hostile body
    reply = stack.call("POST", "/api/tasks/batch", user=account.user,
                       body=make_body(account.user))
    # Then it is a readable 400 and no money moves
    assert_error(reply, 400, 4001, message)
    assert_nothing_charged(stack, account)


DEEP = "[" * 200_000 + "]" * 200_000


@pytest.mark.parametrize("raw", [DEEP, '{"feature_id": "basic_clean", "input_images": '
                                 + DEEP + "}"], ids=["top_level", "in_input_images"])
def test_deeply_nested_json_costs_nothing_and_leaks_nothing(stack: Stack, raw: str) -> None:
    # Given a body nested 200000 levels deep (a few hundred KB)
    account = new_account(stack, "mallory")
    # When it is posted
    reply = stack.call("POST", "/api/tasks/batch", user=account.user, body=raw)
    # Then the reply is in the contract's shape without internals, and nothing is charged
    assert reply.status in (400, 500)
    assert_error(reply, reply.status, 4001 if reply.status == 400 else 5000, None)
    assert_nothing_charged(stack, account)


def test_deeply_nested_json_is_a_400(stack: Stack) -> None:
    account = new_account(stack, "mallory")
    reply = stack.call("POST", "/api/tasks/batch", user=account.user, body=DEEP)
    assert_error(reply, 400, 4001, "请求体不是合法的JSON")


def _watermark(user: str, opacity: str, *, single: bool = False, extra: str = "") -> str:
    images = f'"input_image": "{_valid(user)[0]}"' if single else (
        f'"input_images": ["{_valid(user)[0]}"]')
    return (f'{{"feature_id": "watermark", {images}, '
            f'"input_data": {{"opacity": {opacity}}}{extra}}}')


# A "number" parameter (watermark's opacity, 0..1) lets NaN through a JSON schema's range check.
NON_FINITE_BODIES: dict[str, tuple[str, Callable[[str], str]]] = {
    "opacity_nan": ("/api/tasks/batch", lambda u: _watermark(u, "NaN")),
    "opacity_overflow": ("/api/tasks/batch", lambda u: _watermark(u, "1e400")),
    "opacity_minus_infinity_single": ("/api/tasks",
                                      lambda u: _watermark(u, "-Infinity", single=True)),
    "unknown_field_infinity": ("/api/tasks/batch",
                               lambda u: _watermark(u, "0.5", extra=', "note": Infinity')),
    "deep_in_unknown_field": ("/api/tasks/batch",
                              lambda u: _watermark(u, "0.5", extra=', "x": [[{"y": -1e999}]]')),
    "upload_size_nan": ("/api/uploads", lambda u: (
        '{"files": [{"filename": "a.jpg", "content_type": "image/jpeg", "size": NaN}]}')),
}


@pytest.mark.parametrize("case", list(NON_FINITE_BODIES))
def test_non_finite_number_anywhere_in_a_body_is_a_400_and_costs_nothing(
    stack: Stack, case: str
) -> None:
    # Given a pro user, and a body carrying NaN or an infinity somewhere
    account = new_account(stack, "mallory")
    route, make_body = NON_FINITE_BODIES[case]
    # When she sends it
    reply = stack.call("POST", route, user=account.user, body=make_body(account.user))
    # Then it is a 400 that says why, and no money moves
    assert_error(reply, 400, 4001, NON_FINITE)
    assert_nothing_charged(stack, account)


def test_finite_fractions_still_pass_where_non_finite_ones_are_refused(stack: Stack) -> None:
    # Given a pro user; When she sends the same watermark body with a finite opacity
    account = new_account(stack, "mallory")
    reply = stack.call("POST", "/api/tasks/batch", user=account.user,
                       body=_watermark(account.user, "2.5e-1"))
    # Then it is accepted and charged, once
    assert reply.status == 200, reply.body
    cost = reply.body["data"]["quota_cost"]
    assert stack.balance(account.user) == account.initial - cost


# ---------------------------------------------------------------------- uploads


def upload_request(stack: Stack, user: str, files: Any) -> Reply:
    return stack.call("POST", "/api/uploads", user=user, body={"files": files})


def _file(**overrides: Any) -> dict[str, Any]:
    return {"filename": "photo.jpg", "content_type": "image/jpeg", "size": 1000, **overrides}


# The byte cap the deployed functions get (the template's environment, else the default).
MAX_UPLOAD = Settings.from_env(load_template(REPO / "template.yaml").environment()).max_upload_bytes

UPLOAD_BODIES: dict[str, tuple[Any, str | re.Pattern[str]]] = {
    "size_over_cap": ([_file(size=MAX_UPLOAD + 1)], "files[0]: 图片文件过大"),
    "size_far_over_cap": ([_file(size=10**30)], "files[0]: 图片文件过大"),
    "second_file_over_cap": ([_file(), _file(size=MAX_UPLOAD + 1)], "files[1]: 图片文件过大"),
    "size_zero": ([_file(size=0)], re.compile(r"files\.0\.size: .+")),
    "size_negative": ([_file(size=-1)], re.compile(r"files\.0\.size: .+")),
    "size_string": ([_file(size="1000")], re.compile(r"files\.0\.size: .+")),
    "size_fraction": ([_file(size=10.5)], re.compile(r"files\.0\.size: .+")),
    "size_bool": ([_file(size=True)], re.compile(r"files\.0\.size: .+")),
    "size_missing": ([{"filename": "a.jpg", "content_type": "image/jpeg"}],
                     re.compile(r"files\.0\.size: .+")),
    "content_type_pdf": ([_file(content_type="application/pdf")],
                         "files[0]: 不支持的文件类型 application/pdf"),
    "content_type_svg": ([_file(content_type="image/svg+xml")],
                         "files[0]: 不支持的文件类型 image/svg+xml"),
    "content_type_html": ([_file(content_type="text/html")],
                          "files[0]: 不支持的文件类型 text/html"),
    "content_type_number": ([_file(content_type=7)], re.compile(r"files\.0\.content_type: .+")),
    "filename_empty": ([_file(filename="")], re.compile(r"files\.0\.filename: .+")),
    "filename_overlong": ([_file(filename="a" * 300 + ".jpg")],
                          re.compile(r"files\.0\.filename: .+")),
    "files_not_list": ({"filename": "a.jpg"}, "files必须是数组"),
    "files_empty": ([], "至少需要上传1张图片"),
    "files_51": ([_file()] * 51, "批量处理最多支持50张图片"),
}


@pytest.mark.parametrize("case", list(UPLOAD_BODIES))
def test_hostile_upload_request_is_a_400(stack: Stack, case: str) -> None:
    # Given a user
    account = new_account(stack, "mallory")
    files, message = UPLOAD_BODIES[case]
    # When she asks for presigned uploads with a hostile declaration
    reply = upload_request(stack, account.user, files)
    # Then it is refused, and the account is untouched
    assert_error(reply, 400, 4001, message)
    assert_books(stack, account, balance=account.initial)


def test_upload_of_exactly_the_cap_is_allowed(stack: Stack) -> None:
    # Given a user; When she declares a file of exactly the cap
    # Then it is presigned: the 400 above is about the cap and not about something else
    account = new_account(stack, "mallory")
    reply = upload_request(stack, account.user, [_file(size=MAX_UPLOAD)])
    assert reply.status == 200, reply.body


TRAVERSAL_NAMES = [
    "../../x.jpg", "..\\..\\x.jpg", "/etc/passwd", "../../../uploads/victim-1/x.jpg",
    "%2e%2e%2fx.jpg", "..", ".", "x.jpg\x00.png", "ｘ／..／y.jpg", "a/b/../../c.jpg",
    ".htaccess", "CON", " ",
]


@pytest.mark.parametrize("filename", TRAVERSAL_NAMES)
def test_upload_filenames_never_leave_the_callers_prefix(stack: Stack, filename: str) -> None:
    # Given a user asking to upload a file named like a path
    account = new_account(stack, "mallory")
    # When the upload is presigned
    reply = upload_request(stack, account.user, [_file(filename=filename)])
    # Then the key is one fresh folder under her own prefix, with a harmless name
    assert reply.status == 200, reply.body
    [upload] = reply.body["data"]["uploads"]
    bucket = stack.env["UPLOADS_BUCKET"]
    prefix = f"s3://{bucket}/uploads/{account.user}/"
    assert upload["input_url"].startswith(prefix)
    rest = upload["input_url"][len(prefix):]
    assert re.fullmatch(r"[0-9a-f]{32}/[A-Za-z0-9_-][A-Za-z0-9._-]*\.jpg", rest), rest
    # And the presigned PUT writes exactly that key
    put = urlparse(upload["upload_url"])
    assert unquote(put.path).endswith(f"/uploads/{account.user}/{rest}")


def test_traversal_named_upload_processes_under_the_callers_prefix(stack: Stack) -> None:
    # Given a photo uploaded as "../../victim-1/x.jpg" through a presigned key
    account = new_account(stack, "mallory")
    reply = upload_request(stack, account.user, [_file(filename="../../victim-1/x.jpg")])
    input_url = reply.body["data"]["uploads"][0]["input_url"]
    key = input_url.split("/", 3)[3]
    stack.s3.put_object(Bucket=stack.env["UPLOADS_BUCKET"], Key=key, Body=photo_jpeg())
    # When a batch uses it
    task_id, task = run_batch(stack, account, [input_url])
    # Then it is accepted as hers and processed
    assert_outcomes(stack, account, task_id, task, {"traversal": None})


# ---------------------------------------------------------------------- other users' tasks


def test_other_users_task_is_403_on_every_route_and_moves_no_money(stack: Stack) -> None:
    # Given a victim with a finished partial batch (one junk item) and a pending one
    victim = new_account(stack, "victim")
    done = create_batch(stack, victim.user, [
        put_upload(stack, victim.user, "ok.jpg", photo_jpeg()),
        put_upload(stack, victim.user, "junk.jpg", HTML)])
    drive_round(stack, done)
    pending = create_batch(stack, victim.user, [put_upload(stack, victim.user, "p.jpg",
                                                           photo_jpeg())])
    attacker = new_account(stack, "mallory")
    # When the attacker uses the victim's task ids on every route
    replies = {
        f"{method} {route}": stack.call(method, route.format(t=task), user=attacker.user)
        for task in (done, pending)
        for method, route in (("GET", "/api/tasks/{t}"), ("GET", "/api/tasks/{t}/download-zip"),
                              ("POST", "/api/tasks/{t}/retry-failed"),
                              ("POST", "/api/tasks/{t}/cancel"))
    }
    # Then every one is 403/4003 "无权访问该任务"
    for reply in replies.values():
        assert_error(reply, 403, 4003, "无权访问该任务")
    # And nothing happened to the victim's tasks or money, or to the attacker's
    assert details(stack, victim.user, done)["status"] == "partial_success"
    assert details(stack, victim.user, pending)["status"] == "pending"
    assert_books(stack, victim, balance=victim.initial - 2 * COST,
                 successes={done: 1})
    assert_books(stack, attacker, balance=attacker.initial)
    assert [r["kind"] for r in ledger_rows(stack, attacker.user)] == ["grant"]


@pytest.mark.parametrize("task_id", [
    "..%2F..%2Fapi%2Fquota", "..", "0" * 32, "A" * 32, "0" * 31, "0" * 33,
    "%00", "' OR '1'='1",
])
def test_malformed_or_unknown_task_ids_are_404(stack: Stack, task_id: str) -> None:
    # Given a user; When she uses a malformed or unknown task id on every task route
    # Then each is 404 "任务不存在" (never a 500, never someone's task), and no money moves
    account = new_account(stack, "mallory")
    for method, suffix in (("GET", ""), ("GET", "/download-zip"), ("POST", "/retry-failed"),
                           ("POST", "/cancel")):
        reply = stack.call(method, f"/api/tasks/{task_id}{suffix}", user=account.user)
        assert_error(reply, 404, 4004, "任务不存在")
    assert_books(stack, account, balance=account.initial)


# ====================================================================== 2. items that fail


def test_hostile_uploads_fail_readably_and_are_refunded_one_by_one(stack: Stack) -> None:
    # Given, in one batch: a real photo, then every kind of hostile upload (all labelled
    # image/jpeg), one a byte over the cap, and one that was never uploaded
    account = new_account(stack, "mallory", quota=30)
    files = {name: make() for name, (make, _) in ITEM_FAILURES.items()}
    photo = photo_jpeg()
    files["over_the_byte_cap"] = photo + b"\x00" * (MAX_UPLOAD + 1 - len(photo))
    urls = [put_upload(stack, account.user, "photo.jpg", photo)]
    urls += [put_upload(stack, account.user, f"{name}.jpg", data) for name, data in files.items()]
    urls.append(f"s3://{stack.env['UPLOADS_BUCKET']}/uploads/{account.user}/never-uploaded.jpg")
    # When the round runs
    task_id, task = run_batch(stack, account, urls)
    # Then the photo succeeds and every other item failed with its own stable code and
    # readable message, none of them retryable, each refunded exactly once
    expected: dict[str, Expected] = {"photo": None}
    expected.update({name: outcome for name, (_, outcome) in ITEM_FAILURES.items()})
    expected.update({"over_the_byte_cap": TOO_LARGE, "never_uploaded": NOT_FOUND})
    assert_outcomes(stack, account, task_id, task, expected)
    assert [item["retryable"] for item in task["batch_items"][1:]] == [False] * (len(urls) - 1)
    refunds = [r for r in ledger_rows(stack, account.user) if r["kind"] == "refund"]
    assert sorted(int(r["items"][0]) for r in refunds) == list(range(1, len(urls)))


# ====================================================================== 3. odd but valid images


def _halves(mode: str, size: tuple[int, int], left: Any, right: Any) -> Image.Image:
    image = Image.new(mode, size, left)
    half = size[0] // 2
    image.paste(Image.new(mode, (size[0] - half, size[1]), right), (half, 0))
    return image


def _output(stack: Stack, account: Account, data: bytes, name: str,
            content_type: str = "image/jpeg") -> Image.Image:
    url = put_upload(stack, account.user, name, data, content_type)
    task_id, task = run_batch(stack, account, [url])
    assert_outcomes(stack, account, task_id, task, {name: None})
    image = Image.open(io.BytesIO(zip_of(stack, account.user, task_id).read("result_1.jpg")))
    image.load()
    assert image.format == "JPEG" and image.mode == "RGB"
    assert 0x0112 not in image.getexif()  # no orientation left for a viewer to apply twice
    return image


def _close(pixel: Any, expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def test_exif_rotated_jpeg_comes_out_upright(stack: Stack) -> None:
    # Given a 80x40 JPEG stored sideways (left red, right blue) with EXIF Orientation 6
    account = new_account(stack, "mallory")
    stored = _halves("RGB", (80, 40), (255, 0, 0), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the stored left edge becomes the top
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    # When it is processed
    out = _output(stack, account, data, "rotated.jpg")
    # Then the output is 40x80 with red on top and blue below, and carries no orientation
    assert out.size == (40, 80)
    assert _close(out.getpixel((20, 10)), (255, 0, 0))
    assert _close(out.getpixel((20, 70)), (0, 0, 255))


def test_cmyk_jpeg_comes_out_rgb_with_its_colours(stack: Stack) -> None:
    # Given a CMYK JPEG, red on the left and blue on the right
    account = new_account(stack, "mallory")
    stored = _halves("CMYK", (64, 32), (0, 255, 255, 0), (255, 255, 0, 0))
    # When it is processed
    out = _output(stack, account, encode(stored, "JPEG", quality=95), "cmyk.jpg")
    # Then it succeeds as an RGB JPEG with the same colours in the same places
    assert out.size == (64, 32)
    assert _close(out.getpixel((8, 16)), (255, 0, 0))
    assert _close(out.getpixel((56, 16)), (0, 0, 255))


def test_16_bit_png_is_rescaled_not_clipped_white(stack: Stack) -> None:
    # Given a 16-bit greyscale PNG, 25% grey on the left and 75% grey on the right
    account = new_account(stack, "mallory")
    stored = _halves("I;16", (64, 32), 0x4000, 0xC000)  # 25% and 75% grey in 16 bits
    data = encode(stored, "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I")  # really a 16-bit PNG
    # When it is processed
    out = _output(stack, account, data, "deep.png", "image/png")
    # Then the greys keep their levels in 8 bits instead of clipping to white
    assert _close(out.getpixel((8, 16)), (64, 64, 64), 12)
    assert _close(out.getpixel((56, 16)), (191, 191, 191), 12)


def test_animated_gif_uses_its_first_frame(stack: Stack) -> None:
    # Given a two-frame animated GIF, red then blue
    account = new_account(stack, "mallory")
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(buf.getvalue())) as check:
        assert check.n_frames == 2
    # When it is processed
    out = _output(stack, account, buf.getvalue(), "anim.gif", "image/gif")
    # Then it succeeds as a still JPEG of the first frame
    assert out.size == (40, 30)
    assert _close(out.getpixel((20, 15)), (255, 0, 0))


def test_transparent_palette_png_is_flattened_on_white(stack: Stack) -> None:
    # Given a palette PNG, transparent on the left and red on the right
    account = new_account(stack, "mallory")
    image = Image.new("P", (40, 20), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (20, 0, 40, 20))
    data = encode(image, "PNG", transparency=0)
    # When it is processed to JPEG
    out = _output(stack, account, data, "palette.png", "image/png")
    # Then transparency becomes white, not black
    assert _close(out.getpixel((5, 10)), (255, 255, 255))
    assert _close(out.getpixel((35, 10)), (255, 0, 0))


# ====================================================================== 4. web inputs

FAKE_PUBLIC = "93.184.216.34"  # stands in for a CDN edge; routed to the loopback server


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.hits: list[str] = []
        self.stopping = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)


REDIRECTS = {
    "internal-name": "https://internal.cloudfront.net/a.jpg",  # resolves to 10.0.0.7
    "metadata": "https://169.254.169.254/latest/meta-data/",
    "metadata-name": "https://metadata.cloudfront.net/latest/meta-data/",  # -> 169.254.169.254
    "loopback": "https://127.0.0.1/a.jpg",
    "loopback6": "https://[::1]/a.jpg",
    "mapped": "https://[::ffff:127.0.0.1]/a.jpg",
    "plain-http": "http://img.cloudfront.net/ok",
    "file": "file:///etc/passwd",
    "gopher": "gopher://img.cloudfront.net:70/_x",
    "foreign": "https://evil.example.net/a.jpg",
    "good": "https://cdn2.cloudfront.net/ok",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(f"{self.headers.get('Host')}{self.path}")
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            self._route(self.path)  # the fetcher hanging up mid-reply is the point of some

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", headers.pop("length", str(len(body))))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _route(self, path: str) -> None:
        if path == "/ok":
            self._send(200, photo_jpeg(), Content_Type="image/jpeg")
        elif path.startswith("/to/"):
            self._send(302, b"", Location=REDIRECTS[path[4:]])
        elif path == "/pdf":
            self._send(200, PDF, Content_Type="image/jpeg")
        elif path == "/huge-declared":
            self._send(200, b"", length=str(10**12), Content_Type="image/jpeg")
        elif path == "/drip":
            self._drip()
        elif path == "/endless":
            self._endless()
        else:
            self._send(404, b"no such image")

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            self.wfile.write(b"\xff")
            self.wfile.flush()
            time.sleep(0.05)

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\xff" * 65536
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            self.wfile.write(chunk)


def _certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "pixelbatch test CDN")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("*.cloudfront.net"), x509.DNSName("images.unsplash.com")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cdn.pem", directory / "cdn.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass(frozen=True)
class Cdn:
    server: _TlsServer
    cert_file: Path

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@pytest.fixture(scope="module")
def cdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cdn]:
    cert_file, key_file = _certificate(tmp_path_factory.mktemp("cdn"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = _TlsServer(context)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Cdn(server, cert_file)
    server.stopping.set()
    server.shutdown()
    server.server_close()


DNS: dict[str, list[str]] = {
    "img.cloudfront.net": [FAKE_PUBLIC],
    "cdn2.cloudfront.net": [FAKE_PUBLIC],
    "internal.cloudfront.net": ["10.0.0.7"],
    "metadata.cloudfront.net": ["169.254.169.254"],
    "private10.cloudfront.net": ["10.0.0.1"],
    "loop.cloudfront.net": ["127.0.0.1"],
    "linklocal.cloudfront.net": ["169.254.169.254"],
    "loop6.cloudfront.net": ["::1"],
    "mapped.cloudfront.net": ["::ffff:127.0.0.1"],
    "zero.cloudfront.net": ["0.0.0.0"],
    "ula.cloudfront.net": ["fd00:ec2::254"],
    "mixed.cloudfront.net": [FAKE_PUBLIC, "10.0.0.8"],
}


@dataclass
class Network:
    """What the fetcher saw of the network: every lookup and every connection it opened."""

    lookups: list[str]
    connections: list[tuple[str, int]]


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch, cdn: Cdn) -> Network:
    """Fake DNS for every name; a connection to FAKE_PUBLIC:443 goes to the loopback CDN and
    any other connection fails the test; the CDN's certificate is trusted; the worker's time
    limits are cut to half a second (the product's 20 s would make these tests slow)."""
    seen = Network([], [])

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host == "127.0.0.1":  # only the routed connection below resolves this literal
            return real_getaddrinfo(host, port, *args, **kwargs)
        seen.lookups.append(str(host))
        if host not in DNS:
            raise socket.gaierror(socket.EAI_NONAME, f"test DNS has no {host}")
        out = []
        for address in DNS[host]:
            v6 = ipaddress.ip_address(address).version == 6
            sockaddr = (address, int(port), 0, 0) if v6 else (address, int(port))
            family = socket.AF_INET6 if v6 else socket.AF_INET
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    real_connect = fetch_mod.create_connection

    def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        seen.connections.append((address[0], int(address[1])))
        if (address[0], int(address[1])) != (FAKE_PUBLIC, 443):
            raise AssertionError(f"the fetcher tried to connect to {address}")
        return real_connect(("127.0.0.1", cdn.port), *args, **kwargs)

    real_session = fetch_mod._session

    def trusting_session() -> requests.Session:
        session = real_session()
        session.verify = str(cdn.cert_file)
        return session

    real_fetch = processing_mod.fetch_input

    def quick_fetch(url: str, **kwargs: Any) -> bytes:
        policy = replace(kwargs.pop("policy"), connect_timeout=1.0, read_timeout=0.5,
                         total_timeout=0.5)
        return real_fetch(url, policy=policy, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(fetch_mod, "create_connection", connect)
    monkeypatch.setattr(fetch_mod, "_session", trusting_session)
    monkeypatch.setattr(processing_mod, "fetch_input", quick_fetch)
    cdn.server.hits.clear()
    return seen


PRIVATE_NAMES = ["private10", "loop", "linklocal", "loop6", "mapped", "zero", "ula", "mixed",
                 "metadata"]


def test_names_resolving_to_private_addresses_are_blocked_and_refunded(
    stack: Stack, network: Network, cdn: Cdn
) -> None:
    # Given a batch of allow-listed names whose DNS answers include a private, loopback,
    # link-local, metadata, unspecified or IPv4-mapped address, and one good name
    account = new_account(stack, "web")
    urls = ["https://img.cloudfront.net/ok"]
    urls += [f"https://{name}.cloudfront.net/a.jpg" for name in PRIVATE_NAMES]
    # When the round runs
    task_id, task = run_batch(stack, account, urls)
    # Then each private one is refused after resolution and before any connection, refunded;
    # the good one (proof that the harness reaches the CDN) succeeds
    expected: dict[str, Expected] = {"good": None}
    expected.update({name: BLOCKED for name in PRIVATE_NAMES})
    assert_outcomes(stack, account, task_id, task, expected)
    assert network.lookups == [urlparse(u).hostname for u in urls]
    assert network.connections == [(FAKE_PUBLIC, 443)]
    assert cdn.server.hits == ["img.cloudfront.net/ok"]


BLOCKED_REDIRECTS = [name for name in REDIRECTS if name != "good"]


def test_redirects_into_blocked_destinations_fail_their_items(
    stack: Stack, network: Network, cdn: Cdn
) -> None:
    # Given allowed CDN URLs that redirect to private names, metadata, loopback, http, file:,
    # gopher: or a foreign host, and one that redirects to another allowed host
    account = new_account(stack, "web")
    urls = [f"https://img.cloudfront.net/to/{name}" for name in ["good", *BLOCKED_REDIRECTS]]
    # When the round runs
    task_id, task = run_batch(stack, account, urls)
    # Then the good redirect is followed; every other item fails blocked and is refunded
    expected: dict[str, Expected] = {"good": None}
    expected.update({name: BLOCKED for name in BLOCKED_REDIRECTS})
    assert_outcomes(stack, account, task_id, task, expected)
    # And the blocked targets were never requested: only first hops reached the CDN
    assert cdn.server.hits == ["img.cloudfront.net/to/good", "cdn2.cloudfront.net/ok"] + [
        f"img.cloudfront.net/to/{name}" for name in BLOCKED_REDIRECTS]
    assert set(network.connections) == {(FAKE_PUBLIC, 443)}
    assert len(network.connections) == len(urls) + 1
    assert "internal.cloudfront.net" in network.lookups  # refused at connect time, resolved


def test_slow_endless_lying_and_missing_servers_fail_their_items(
    stack: Stack, network: Network
) -> None:
    # Given CDN URLs whose server drips, never ends, declares a terabyte, serves a PDF as
    # image/jpeg, answers 404, or whose name does not resolve
    account = new_account(stack, "web")
    cases: dict[str, tuple[str, Expected, bool]] = {
        "drip": ("https://img.cloudfront.net/drip", TIMEOUT, True),
        "endless": ("https://img.cloudfront.net/endless", TOO_LARGE, False),
        "huge_declared": ("https://img.cloudfront.net/huge-declared", TOO_LARGE, False),
        "pdf_as_jpeg": ("https://img.cloudfront.net/pdf", UNSUPPORTED, False),
        "missing": ("https://img.cloudfront.net/missing.jpg", NOT_FOUND, False),
        "nxdomain": ("https://nxdomain.cloudfront.net/a.jpg", ("fetch_failed", "下载图片失败"),
                     True),
    }
    started = time.monotonic()
    # When the round runs (time limits cut to 0.5 s by the fixture)
    task_id, task = run_batch(stack, account, [url for url, _, _ in cases.values()])
    # Then each fails readably within its limit, is refunded, and says whether retrying helps
    assert time.monotonic() - started < 10
    assert_outcomes(stack, account, task_id, task, {n: e for n, (_, e, _) in cases.items()})
    assert [item["retryable"] for item in task["batch_items"]] == [
        r for _, _, r in cases.values()]


def test_item_worker_never_processes_a_url_the_edge_refused(stack: Stack, network: Network
                                                           ) -> None:
    # Given an item row that somehow holds a metadata URL (the edge would have refused it)
    account = new_account(stack, "mallory")
    task_id = create_batch(stack, account.user, [put_upload(stack, account.user, "a.jpg", b"x")])
    stack.dynamodb.Table(stack.env["TASKS_TABLE"]).update_item(
        Key={"pk": f"task#{task_id}", "sk": "item#0000"},
        UpdateExpression="SET input_url = :u",
        ExpressionAttributeValues={":u": "https://169.254.169.254/latest/meta-data/"})
    # When the round runs
    drive_round(stack, task_id)
    # Then the worker refuses it by itself, without a lookup or a connection, and refunds it
    task = details(stack, account.user, task_id)
    assert_outcomes(stack, account, task_id, task, {"metadata": BLOCKED})
    assert network.lookups == [] and network.connections == []
