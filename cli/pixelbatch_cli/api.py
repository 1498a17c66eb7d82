"""The HTTP API as the CLI uses it: presigned uploads, batches, their state, retry, cancel, the ZIP.
Every failure becomes ApiError with the contract's message and stable `error` key."""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

FINISHED = frozenset({"success", "partial_success", "failed", "cancelled"})
PARALLEL_UPLOADS = 4
Json = dict[str, Any]


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str, key: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.key = key

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        message = str(body.get("message") or response.reason or f"HTTP {response.status_code}")
        default_key = "unauthorized" if response.status_code == 401 else "http_error"
        return cls(response.status_code, message, str(body.get("error") or default_key))


class Unreachable(RuntimeError):
    """The API could not be reached at all (connection refused, DNS, timeout)."""


def content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class Api:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, url, **kwargs)
        except requests.RequestException as error:
            raise Unreachable(f"{method} {url}: {error}") from error

    def call(self, method: str, path: str, **kwargs: Any) -> Json:
        response = self._send(method, self.base_url + path, allow_redirects=False, **kwargs)
        if response.status_code != 200:
            raise ApiError.from_response(response)
        body: Json = response.json()
        return body

    def dev_token(self, user_id: str, quota: int, plan: str) -> str:
        body = {"user_id": user_id, "quota": quota, "plan": plan}
        return str(self.call("POST", "/local/users", json=body)["token"])

    def upload(self, paths: Sequence[Path], on_done: Callable[[int], None]) -> list[str]:
        files = [{"filename": p.name, "content_type": content_type(p), "size": p.stat().st_size}
                 for p in paths]
        uploads = self.call("POST", "/api/uploads", json={"files": files})["data"]["uploads"]
        done = 0

        def put(pair: tuple[Path, Json]) -> str:
            nonlocal done
            path, upload = pair
            response = self._send("PUT", upload["upload_url"], data=path.read_bytes(),
                                  headers=upload["headers"])
            if response.status_code not in (200, 204):
                raise ApiError(response.status_code, f"upload of {path.name} refused",
                               "upload_failed")
            done += 1
            on_done(done)
            return str(upload["input_url"])

        with ThreadPoolExecutor(PARALLEL_UPLOADS) as pool:
            return list(pool.map(put, zip(paths, uploads, strict=True)))

    def create_batch(self, feature_id: str, images: list[str], params: Json,
                     idempotency_key: str | None = None) -> Json:
        body = {"feature_id": feature_id, "input_images": images, "input_data": params}
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        data: Json = self.call("POST", "/api/tasks/batch", json=body, headers=headers)["data"]
        return data

    def task(self, task_id: str) -> Json:
        data: Json = self.call("GET", f"/api/tasks/{task_id}")["data"]
        return data

    def retry_failed(self, task_id: str) -> Json:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        return self.call("POST", f"/api/tasks/{task_id}/retry-failed", headers=headers)

    def cancel(self, task_id: str) -> Json:
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        return self.call("POST", f"/api/tasks/{task_id}/cancel", headers=headers)

    def zip_bytes(self, task_id: str) -> bytes:
        response = self._send("GET", f"{self.base_url}/api/tasks/{task_id}/download-zip",
                              allow_redirects=False)
        if response.status_code != 302:
            raise ApiError.from_response(response)
        archive = requests.get(response.headers["Location"], timeout=self.timeout)
        if archive.status_code != 200:
            raise ApiError(archive.status_code, "the ZIP could not be fetched", "download_failed")
        return archive.content
