"""Hostile inputs at the real HTTP edge of the local stack: bad tokens at the gateway, presigned
PUTs of bytes that are not what they were declared to be, other users' uploads, and how item
failures look to a client polling the API. Every case checks the money through the API.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jwt
import pytest
from PIL import Image

from devstack.client import PixelBatchClient
from tests.e2e.conftest import LocalApi

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "tests/fixtures/corpus/photos/rocket.jpg"
UNAUTHORIZED = {"message": "Unauthorized"}
MAX_UPLOAD = 25 * 1024 * 1024  # Settings.max_upload_bytes; the template does not override it


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PIXEL_BOMB = (b"\x89PNG\r\n\x1a\n"
              + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0))
              + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))
PDF = b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9"/></svg>'
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


def account(api: LocalApi, quota: int = 20) -> tuple[str, str, PixelBatchClient]:
    user_id, token = api.make_user(quota=quota, plan="pro")
    return user_id, token, PixelBatchClient(api.base_url, token)


def quota(c: PixelBatchClient) -> tuple[int, int, int]:
    """(balance, total charges, total refunds) as the client sees them, every ledger page."""
    balance, entries = c.quota()
    charges = sum(e["amount"] for e in entries if e["kind"] == "charge")
    refunds = sum(e["amount"] for e in entries if e["kind"] == "refund")
    return balance, charges, refunds


def assert_books(c: PixelBatchClient, initial: int, balance: int) -> None:
    now, charges, refunds = quota(c)
    assert now == balance
    assert initial - now == charges - refunds


def presign(c: PixelBatchClient, name: str, content_type: str, size: int) -> dict[str, Any]:
    reply = c.ok("POST", "/api/uploads", json={"files": [
        {"filename": name, "content_type": content_type, "size": size}]})
    upload: dict[str, Any] = reply["data"]["uploads"][0]
    return upload


def put(upload: dict[str, Any], data: bytes) -> None:
    PixelBatchClient.put_bytes(upload["upload_url"], upload["headers"], data)


# ---------------------------------------------------------------------- tokens


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged_tokens(api: LocalApi, victim: str, real_token: str) -> dict[str, str | None]:
    now = int(time.time())
    claims = {"sub": victim, "iss": api.authorizer.issuer, "aud": api.authorizer.audience[0],
              "iat": now - 10, "exp": now + 600, "token_use": "id"}

    def sign(secret: str = api.jwt_secret, **changes: Any) -> str:
        return jwt.encode({**claims, **changes}, secret, algorithm="HS256")

    header, payload, signature = real_token.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {
        "missing": None,
        "empty_bearer": "Bearer ",
        "garbage": "Bearer not.a.jwt",
        "basic": "Basic " + base64.b64encode(f"{victim}:password".encode()).decode(),
        "raw_token_without_scheme": real_token,
        "other_key": "Bearer " + sign("not-the-dev-key"),
        "expired": "Bearer " + sign(exp=now - 60, iat=now - 3600),
        "not_yet_valid": "Bearer " + sign(nbf=now + 3600),
        "other_issuer": "Bearer " + sign(iss="https://evil.example.net"),
        "other_audience": "Bearer " + sign(aud="another-client"),
        "no_exp": "Bearer " + jwt.encode({k: v for k, v in claims.items() if k != "exp"},
                                         api.jwt_secret, algorithm="HS256"),
        "alg_none": "Bearer " + _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + ".",
        "resigned_payload": "Bearer " + ".".join(
            [header, _b64({**tampered, "sub": victim + "-admin"}), signature]),
        "stripped_signature": f"Bearer {header}.{payload}.",
    }


def test_forged_malformed_and_expired_tokens_are_401_and_move_no_money(local_api: LocalApi
                                                                       ) -> None:
    # Given a user with a finished-looking batch worth stealing and a valid token of her own
    user_id, token, c = account(local_api, quota=20)
    [upload] = c.upload([("photo.jpg", PHOTO.read_bytes())])
    task_id = c.create_batch("basic_clean", [upload.input_url])
    c.wait(task_id)
    body = {"feature_id": "basic_clean", "input_images": [upload.input_url]}
    routes = [("POST", "/api/tasks/batch", body), ("POST", "/api/tasks", {
        "feature_id": "basic_clean", "input_image": upload.input_url}),
        ("POST", f"/api/tasks/{task_id}/retry-failed", None),
        ("POST", f"/api/tasks/{task_id}/cancel", None),
        ("GET", f"/api/tasks/{task_id}", None), ("GET", "/api/quota", None),
        ("POST", "/api/uploads", {"files": [{"filename": "a.jpg", "content_type": "image/jpeg",
                                             "size": 10}]})]
    # When every kind of bad Authorization header is used on every route, as her
    failures: list[str] = []
    for name, header in forged_tokens(local_api, user_id, token).items():
        session = local_api.session()
        headers = {} if header is None else {"Authorization": header}
        for method, path, payload in routes:
            reply = session.request(method, path, json=payload, headers=headers)
            if reply.status_code != 401 or reply.json() != UNAUTHORIZED:
                failures.append(f"{name} {method} {path}: {reply.status_code} {reply.text[:80]}")
    # Then each one is the authorizer's bare 401
    assert failures == []
    # And her money and tasks are exactly as she left them
    assert_books(c, 20, 19)
    assert len(c.ok("GET", "/api/tasks")["data"]["tasks"]) == 1


# ---------------------------------------------------------------------- presigned PUTs


def test_mislabelled_uploads_fail_visibly_per_item_and_are_refunded(local_api: LocalApi) -> None:
    # Given a photo and four files presigned and PUT as image/jpeg that are not JPEGs
    _, _, c = account(local_api, quota=20)
    files = [("photo.jpg", PHOTO.read_bytes()), ("report.jpg", PDF), ("vector.jpg", SVG),
             ("print.jpg", EPS), ("bomb.jpg", PIXEL_BOMB)]
    uploads = []
    for name, data in files:
        upload = presign(c, name, "image/jpeg", len(data))
        put(upload, data)
        uploads.append(upload["input_url"])
    # When they are processed as one batch
    task = c.wait(c.create_batch("basic_clean", uploads), timeout=60)
    # Then the client sees each failure with its stable code and readable message
    assert (task["status"], task["batch_success"], task["batch_failed"]) == (
        "partial_success", 1, 4)
    assert [(i["status"], i["error_code"], i["error_message"], i["retryable"])
            for i in task["batch_items"]] == [
        ("success", None, None, None),
        ("failed", "unsupported_format", "图片格式不支持", False),
        ("failed", "unsupported_format", "图片格式不支持", False),
        ("failed", "unsupported_format", "图片格式不支持", False),
        ("failed", "too_many_pixels", "图片像素过多", False),
    ]
    assert [i["output_url"] is None for i in task["batch_items"]] == [False] + [True] * 4
    # And only the photo was paid for, and only it is in the ZIP
    assert_books(c, 20, 19)
    archive = zipfile.ZipFile(io.BytesIO(c.download_zip(task["id"])))
    assert sorted(archive.namelist()) == ["manifest.json", "result_1.jpg"]
    Image.open(io.BytesIO(archive.read("result_1.jpg"))).verify()
    manifest = json.loads(archive.read("manifest.json"))
    assert [e["error_code"] for e in manifest["items"]] == [
        None, "unsupported_format", "unsupported_format", "unsupported_format",
        "too_many_pixels"]


def test_presigned_put_over_the_byte_cap_fails_the_item_too_large(local_api: LocalApi) -> None:
    # Given an upload presigned at exactly the cap, then PUT one byte over it (the local store,
    # like a presigned PUT without a content-length-range policy, accepts the bytes)
    _, _, c = account(local_api, quota=5)
    upload = presign(c, "huge.jpg", "image/jpeg", MAX_UPLOAD)
    photo = PHOTO.read_bytes()
    put(upload, photo + b"\x00" * (MAX_UPLOAD + 1 - len(photo)))
    # When it is processed
    task = c.wait(c.create_batch("basic_clean", [upload["input_url"]]), timeout=60)
    # Then the item fails too_large, visibly, and is refunded
    [item] = task["batch_items"]
    assert (task["status"], item["status"], item["error_code"], item["error_message"]) == (
        "failed", "failed", "too_large", "图片文件过大")
    assert_books(c, 5, 5)


def test_declaring_an_upload_over_the_cap_is_400(local_api: LocalApi) -> None:
    # Given a user; When she declares a file one byte over the cap
    _, _, c = account(local_api, quota=5)
    reply = c.request("POST", "/api/uploads", json={"files": [
        {"filename": "huge.jpg", "content_type": "image/jpeg", "size": MAX_UPLOAD + 1}]})
    # Then no upload URL is handed out, and no money moves
    assert reply.status_code == 400
    assert reply.json() == {"success": False, "errorCode": 4001,
                            "message": "files[0]: 图片文件过大", "error": "file_too_large"}
    assert_books(c, 5, 5)


# ---------------------------------------------------------------------- other users


def test_other_users_uploads_and_tasks_are_refused_over_http(local_api: LocalApi) -> None:
    # Given a victim with an uploaded photo and a task
    _, _, victim = account(local_api, quota=10)
    [upload] = victim.upload([("photo.jpg", PHOTO.read_bytes())])
    task_id = victim.create_batch("basic_clean", [upload.input_url])
    victim.wait(task_id)
    _, _, attacker = account(local_api, quota=10)
    # When the attacker puts the victim's upload in a batch, and uses her task id
    stolen = attacker.request("POST", "/api/tasks/batch", json={
        "feature_id": "basic_clean", "input_images": [upload.input_url]})
    peeks = [attacker.request(method, path) for method, path in (
        ("GET", f"/api/tasks/{task_id}"), ("GET", f"/api/tasks/{task_id}/download-zip"),
        ("POST", f"/api/tasks/{task_id}/retry-failed"), ("POST", f"/api/tasks/{task_id}/cancel"))]
    # Then the batch is a 400 naming the image, every task route a 403, and no money moved
    assert stolen.status_code == 400
    assert stolen.json() == {"success": False, "errorCode": 4001,
                             "message": "第1张图片: 不允许访问该地址", "error": "image_not_allowed"}
    assert [(p.status_code, p.json()) for p in peeks] == [
        (403, {"success": False, "errorCode": 4003, "message": "无权访问该任务",
               "error": "forbidden_task"})] * 4
    assert_books(attacker, 10, 10)
    assert attacker.ok("GET", "/api/tasks")["data"]["tasks"] == []
    assert_books(victim, 10, 9)
    assert victim.task(task_id)["status"] == "success"
