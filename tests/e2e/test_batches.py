"""End to end over HTTP against the local stack: real uploads, the real state machine, real
pipelines, the ZIP, and the money that goes with them."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image, ImageOps, ImageStat

from devstack.client import PixelBatchClient
from tests.e2e.conftest import LocalApi
from tests.support.http_events import REPO
from tests.support.phone_set import phone_set

pytestmark = pytest.mark.e2e

PHOTOS = sorted((REPO / "tests/fixtures/corpus/photos").iterdir())
JUNK = b"Quarterly report.\nThis file is text, whatever its name says.\n" * 40


def client(api: LocalApi, quota: int = 100, plan: str = "pro") -> tuple[str, PixelBatchClient]:
    user_id, token = api.make_user(quota=quota, plan=plan)
    return user_id, PixelBatchClient(api.base_url, token)


def balance(c: PixelBatchClient) -> int:
    value: int = c.ok("GET", "/api/quota")["data"]["balance"]
    return value


def ledger_net(c: PixelBatchClient) -> tuple[int, int]:
    """Total charges and refunds, reading every page of the ledger."""
    _, entries = c.quota()
    charges = sum(e["amount"] for e in entries if e["kind"] == "charge")
    refunds = sum(e["amount"] for e in entries if e["kind"] == "refund")
    return charges, refunds


def luma(data: bytes) -> float:
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    return float(ImageStat.Stat(image.convert("L")).mean[0])


def results(archive: zipfile.ZipFile) -> list[str]:
    return sorted((n for n in archive.namelist() if n != "manifest.json"),
                  key=lambda n: int(n.split("_")[1].split(".")[0]))


def test_ten_photos_are_brightened_and_zipped(local_api: LocalApi) -> None:
    # Given 10 real photos uploaded through presigned PUTs
    _, c = client(local_api, quota=100)
    urls = c.upload_paths(PHOTOS[:10])
    # When a basic_clean batch brightens them
    task_id = c.create_batch("basic_clean", urls, brightness=30, contrast=0)
    task = c.wait(task_id)
    # Then all succeed, 10 quota is spent, and every image in the ZIP is brighter
    assert (task["status"], task["batch_success"], task["batch_failed"]) == ("success", 10, 0)
    assert balance(c) == 90
    archive = zipfile.ZipFile(io.BytesIO(c.download_zip(task_id)))
    assert results(archive) == [f"result_{i}.jpg" for i in range(1, 11)]
    for i, source in enumerate(PHOTOS[:10]):
        output = archive.read(f"result_{i + 1}.jpg")
        Image.open(io.BytesIO(output)).verify()
        assert luma(output) > luma(source.read_bytes()) + 3, source.name
    # And each item's output_url is a working presigned URL
    first = requests.get(task["batch_items"][0]["output_url"], timeout=30)
    assert first.status_code == 200 and first.content == archive.read("result_1.jpg")


def test_half_junk_batch_is_partial_and_refunded(local_api: LocalApi) -> None:
    _, c = client(local_api, quota=100)
    files = []
    for i in range(10):
        if i % 2:
            files.append((f"report_{i}.jpg", JUNK))
        else:
            files.append((PHOTOS[i].name, PHOTOS[i].read_bytes()))
    urls = [u.input_url for u in c.upload(files)]
    task = c.wait(c.create_batch("basic_clean", urls, brightness=10))
    assert (task["status"], task["batch_success"], task["batch_failed"]) == (
        "partial_success", 5, 5)
    assert balance(c) == 95
    failed = [item for item in task["batch_items"] if item["status"] == "failed"]
    assert [item["index"] for item in failed] == [1, 3, 5, 7, 9]
    assert {(item["error_code"], item["error_message"]) for item in failed} == {
        ("not_an_image", "图片格式不支持")}
    archive = zipfile.ZipFile(io.BytesIO(c.download_zip(task["id"])))
    assert results(archive) == ["result_1.jpg", "result_3.jpg", "result_5.jpg", "result_7.jpg",
                                "result_9.jpg"]


def test_nothing_to_download(local_api: LocalApi) -> None:
    _, c = client(local_api, quota=10)
    urls = [u.input_url for u in c.upload([("a.jpg", JUNK), ("b.png", JUNK)])]
    task = c.wait(c.create_batch("basic_clean", urls))
    assert task["status"] == "failed" and balance(c) == 10
    response = c.request("GET", f"/api/tasks/{task['id']}/download-zip")
    assert response.status_code == 400
    assert response.json() == {"success": False, "errorCode": 4001, "message": "没有可下载的文件",
                               "error": "nothing_to_download"}


def test_ten_simultaneous_batches_with_quota_for_nine(local_api: LocalApi) -> None:
    _, c = client(local_api, quota=95)
    urls = c.upload_paths(PHOTOS[:10])
    replies: list[requests.Response] = []
    gate = threading.Barrier(10)

    def submit() -> None:
        own = PixelBatchClient(local_api.base_url, c.session.headers["Authorization"][7:])
        gate.wait()
        replies.append(own.request("POST", "/api/tasks/batch", json={
            "feature_id": "basic_clean", "input_images": urls}))

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = Counter((r.status_code, r.json().get("errorCode")) for r in replies)
    assert outcomes == {(200, None): 9, (403, 1003): 1}
    for reply in replies:
        if reply.status_code == 200:
            assert c.wait(reply.json()["data"]["task_id"])["status"] == "success"
    assert balance(c) == 5
    assert ledger_net(c) == (90, 0)


@pytest.fixture(scope="module")
def phones() -> list[Path]:
    return phone_set(50)


def test_fifty_phone_photos_progress_live_five_at_a_time(
    local_api: LocalApi, phones: list[Path]
) -> None:
    # Given 50 twelve-megapixel photos
    _, c = client(local_api, quota=100)
    urls = c.upload_paths(phones)
    task_id = c.create_batch("basic_clean", urls, brightness=-20)
    # When we poll while it runs
    seen: list[dict[str, Any]] = []
    task = c.wait(task_id, timeout=600, interval=0.1, on_poll=seen.append)
    # Then counters advance live, and never more than 5 items are processing at once
    assert task["status"] == "success" and task["batch_success"] == 50
    processing = [sum(i["status"] == "processing" for i in s["batch_items"]) for s in seen]
    assert max(processing) <= 5 and max(processing) >= 2, processing
    progress = [s["batch_success"] for s in seen]
    assert progress == sorted(progress) and len(set(progress)) >= 5, progress
    assert all(s["batch_processing"] == p for s, p in zip(seen, processing, strict=True))
    assert balance(c) == 50


def test_cancel_during_a_running_batch_refunds_exactly_the_unfinished(
    local_api: LocalApi, phones: list[Path]
) -> None:
    # Given a running 50-photo portrait batch (3 quota each) with a few photos done
    _, c = client(local_api, quota=200)
    task_id = c.create_batch("portrait_retouch", c.upload_paths(phones))
    assert balance(c) == 50
    while c.task(task_id)["batch_success"] < 3:
        time.sleep(0.1)
    # When the user cancels, twice
    reply = c.ok("POST", f"/api/tasks/{task_id}/cancel")
    again = c.request("POST", f"/api/tasks/{task_id}/cancel")
    assert (again.status_code, again.json()["errorCode"]) == (409, 4009)
    # Then, after the stragglers that were already running finish and lose their condition,
    # every unfinished item was refunded once, and the reply, ledger and balance agree
    _settle(c, task_id)
    task = c.task(task_id)
    successes = task["batch_success"]
    assert task["status"] == "cancelled" and 3 <= successes < 50
    assert Counter(i["status"] for i in task["batch_items"]) == {
        "success": successes, "cancelled": 50 - successes}
    assert reply["refund_amount"] == 3 * (50 - successes)
    assert reply["message"] == f"任务已取消，返还{reply['refund_amount']}配额"
    assert ledger_net(c) == (150, reply["refund_amount"])
    assert balance(c) == 200 - 3 * successes
    # And its ZIP holds every success, with a manifest of all 50 photos
    archive = zipfile.ZipFile(io.BytesIO(_zip_when_ready(c, task_id)))
    assert len(results(archive)) == successes
    manifest = json.loads(archive.read("manifest.json"))["items"]
    assert Counter(entry["status"] for entry in manifest) == {
        "success": successes, "cancelled": 50 - successes}


def test_simultaneous_retries_charge_once(local_api: LocalApi) -> None:
    # Given a finished batch whose two broken inputs were then fixed at the same upload URLs
    _, c = client(local_api, quota=20)
    uploads = c.upload([("ok_1.jpg", PHOTOS[0].read_bytes()), ("bad_1.jpg", JUNK),
                        ("bad_2.jpg", JUNK)])
    task_id = c.create_batch("basic_clean", [u.input_url for u in uploads])
    assert c.wait(task_id)["status"] == "partial_success" and balance(c) == 19
    for upload, photo in zip(uploads[1:], PHOTOS[1:3], strict=True):
        c.put_bytes(upload.upload_url, upload.headers, photo.read_bytes())
    # When five clients press "retry failed" at once
    replies: list[requests.Response] = []
    gate = threading.Barrier(5)

    def retry() -> None:
        gate.wait()
        replies.append(c.request("POST", f"/api/tasks/{task_id}/retry-failed"))

    threads = [threading.Thread(target=retry) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one re-queues and charges the two failed items
    winners = [r.json() for r in replies if r.status_code == 200]
    assert winners == [{"success": True, "message": "已重新提交2个失败项", "quota_cost": 2}]
    assert {r.json()["message"] for r in replies if r.status_code != 200} == {
        "没有失败的子任务需要重试"}
    task = c.wait(task_id)
    assert (task["status"], task["batch_success"]) == ("success", 3)
    assert balance(c) == 17 and ledger_net(c) == (5, 2)


def _zip_when_ready(c: PixelBatchClient, task_id: str, timeout: float = 120) -> bytes:
    """The closing execution's Finalize writes a cancelled batch's ZIP shortly after the
    cancel; until then download-zip has nothing to offer."""
    deadline = time.monotonic() + timeout
    while True:
        reply = c.request("GET", f"/api/tasks/{task_id}/download-zip")
        if reply.status_code == 302 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert reply.status_code == 302, reply.text
    archive = requests.get(reply.headers["Location"], timeout=60)
    assert archive.status_code == 200
    return archive.content


def _settle(c: PixelBatchClient, task_id: str, quiet_seconds: float = 4.0) -> None:
    last, since = None, time.monotonic()
    while time.monotonic() - since < quiet_seconds:
        snapshot = c.task(task_id)
        key = (snapshot["updatedAt"], snapshot["batch_success"])
        if key != last:
            last, since = key, time.monotonic()
        time.sleep(0.2)
