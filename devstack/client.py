"""A small client of the HTTP API, the way a web or mobile client uses it: upload through
presigned PUTs, submit a batch, poll it, download the ZIP. Used by the demo, the benchmarks
and the end-to-end tests."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

FINISHED = frozenset({"success", "partial_success", "failed", "cancelled"})


class ApiError(RuntimeError):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"{response.request.method} {response.url} -> "
                         f"{response.status_code}: {response.text[:300]}")
        self.response = response


@dataclass(frozen=True)
class UploadedFile:
    input_url: str
    upload_url: str
    headers: dict[str, str]


class PixelBatchClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        return self.session.request(method, self.base_url + path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        if response.status_code != 200:
            raise ApiError(response)
        body: dict[str, Any] = response.json()
        return body

    def quota(self) -> tuple[int, list[dict[str, Any]]]:
        """The balance and every ledger entry, reading all pages."""
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            data = self.ok("GET", "/api/quota", params=params)["data"]
            entries.extend(data["ledger"])
            cursor = data["next_cursor"]
            if not cursor:
                return int(data["balance"]), entries

    def upload(self, files: Sequence[tuple[str, bytes]]) -> list[UploadedFile]:
        """Presign one PUT per file, then PUT the bytes exactly as a browser would."""
        specs = [{"filename": name, "content_type": _content_type(name), "size": len(data)}
                 for name, data in files]
        uploads = self.ok("POST", "/api/uploads", json={"files": specs})["data"]["uploads"]
        done = []
        for (_, data), upload in zip(files, uploads, strict=True):
            self.put_bytes(upload["upload_url"], upload["headers"], data)
            done.append(UploadedFile(upload["input_url"], upload["upload_url"], upload["headers"]))
        return done

    @staticmethod
    def put_bytes(upload_url: str, headers: dict[str, str], data: bytes) -> None:
        response = requests.put(upload_url, data=data, headers=headers, timeout=60)
        if response.status_code not in (200, 204):
            raise ApiError(response)

    def upload_paths(self, paths: Sequence[Path]) -> list[str]:
        return [u.input_url for u in self.upload([(p.name, p.read_bytes()) for p in paths])]

    def create_batch(self, feature_id: str, input_images: list[str], **input_data: Any) -> str:
        body = {"feature_id": feature_id, "input_images": input_images, "input_data": input_data}
        task_id: str = self.ok("POST", "/api/tasks/batch", json=body)["data"]["task_id"]
        return task_id

    def task(self, task_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.ok("GET", f"/api/tasks/{task_id}")["data"]
        return data

    def wait(
        self,
        task_id: str,
        *,
        timeout: float = 300,
        interval: float = 0.2,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.task(task_id)
            if on_poll:
                on_poll(task)
            if task["status"] in FINISHED and not task["batch_processing"]:
                return task
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {task['status']} after {timeout}s")
            time.sleep(interval)

    def download_zip(self, task_id: str) -> bytes:
        response = self.request("GET", f"/api/tasks/{task_id}/download-zip")
        if response.status_code != 302:
            raise ApiError(response)
        archive = requests.get(response.headers["Location"], timeout=self.timeout)
        if archive.status_code != 200:
            raise ApiError(archive)
        return archive.content


def _content_type(name: str) -> str:
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return guessed if guessed.startswith("image/") else "image/jpeg"
