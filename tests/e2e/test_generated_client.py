"""The served OpenAPI document is one that code generators accept: openapi-python-client generates
every route without a warning, and the generated client drives a batch from upload to ZIP on the
local stack."""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalApi

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "photos"
FINISHED = {"success", "partial_success", "failed", "cancelled"}
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
WAIT_SECONDS = 120


def _generate(document: Path, into: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(GENERATOR), "generate", "--path", str(document), "--output-path", str(into),
         "--meta", "none"],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )


@pytest.fixture(scope="module")
def generated(local_api: LocalApi, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[ModuleType, subprocess.CompletedProcess[str]]]:
    served = local_api.session().get("/api/openapi.json")
    assert served.status_code == 200
    root = tmp_path_factory.mktemp("generated")
    document = root / "openapi.json"
    document.write_text(served.text, encoding="utf-8")
    package = f"pixelbatch_generated_{uuid.uuid4().hex[:8]}"
    result = _generate(document, root / package)
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(package), result
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
        shutil.rmtree(root, ignore_errors=True)


def _sub(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_every_route_is_generated_without_a_warning(
    local_api: LocalApi, generated: tuple[ModuleType, subprocess.CompletedProcess[str]]
) -> None:
    package, result = generated
    output = result.stdout + result.stderr
    assert "warning" not in output.lower(), output
    assert "Unable to" not in output, output
    document = json.loads(local_api.session().get("/api/openapi.json").text)
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    modules = {path.stem for path in Path(package.__file__).parent.glob("api/*/*.py")}
    expected = {"".join("_" + c.lower() if c.isupper() else c for c in op) for op in ids}
    assert expected - {"__init__"} <= modules, sorted(expected - modules)


def _client(package: ModuleType, local_api: LocalApi, token: str) -> Any:
    return package.AuthenticatedClient(base_url=local_api.base_url, token=token,
                                       follow_redirects=False)


def _upload(package: ModuleType, client: Any, photos: list[Path]) -> list[str]:
    models = _sub(package, "models")
    create_uploads = _sub(package, "api.account.create_uploads")
    files = [models.UploadFile(filename=p.name, content_type=models.UploadFileContentType(
        "image/png" if p.suffix == ".png" else "image/jpeg"), size=p.stat().st_size)
        for p in photos]
    reply = create_uploads.sync(client=client, body=models.UploadsRequest(files=files))
    assert reply.success is True, reply
    for path, upload in zip(photos, reply.data.uploads, strict=True):
        put = requests.put(upload.upload_url, data=path.read_bytes(),
                           headers=upload.headers.to_dict(), timeout=60)
        assert put.status_code in (200, 204), put.text
    return [upload.input_url for upload in reply.data.uploads]


def _wait(package: ModuleType, client: Any, task_id: str) -> Any:
    get_task = _sub(package, "api.tasks.get_task")
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        task = get_task.sync(task_id, client=client).data
        if task.status.value in FINISHED:
            return task
        time.sleep(0.5)
    raise AssertionError(f"task {task_id} did not finish in {WAIT_SECONDS} s")


def test_the_generated_client_creates_waits_and_downloads(
    local_api: LocalApi, generated: tuple[ModuleType, subprocess.CompletedProcess[str]]
) -> None:
    package, _ = generated
    models = _sub(package, "models")
    create_batch = _sub(package, "api.tasks.create_batch_task")
    download = _sub(package, "api.tasks.download_task_zip")
    _, token = local_api.make_user(quota=20)
    client = _client(package, local_api, token)
    photos = [PHOTOS / "rocket.jpg", PHOTOS / "coffee.png"]
    # Given two photos uploaded through the generated client's presigned PUTs
    inputs = _upload(package, client, photos)
    # When it creates a batch with parameters and an Idempotency-Key, then waits for it
    body = models.BatchTaskRequest(
        feature_id="basic_clean", input_images=inputs,
        input_data=models.BatchTaskRequestInputDataType0.from_dict(
            {"brightness": 10, "contrast": 5}),
    )
    created = create_batch.sync(client=client, body=body, idempotency_key=uuid.uuid4().hex)
    assert created.success is True, created
    assert (created.data.batch_total, created.data.quota_cost) == (2, 2)
    task = _wait(package, client, created.data.task_id)
    # Then both images succeeded and the ZIP behind the 302 holds both results
    assert task.status.value == "success", task
    assert [item.status.value for item in task.batch_items] == ["success", "success"]
    redirect = download.sync_detailed(created.data.task_id, client=client)
    assert redirect.status_code == 302
    archive = requests.get(redirect.headers["location"], timeout=60)
    assert archive.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert sorted(n for n in names if n.startswith("result_")) == ["result_1.jpg", "result_2.jpg"]


def test_the_generated_client_reads_the_error_key(
    local_api: LocalApi, generated: tuple[ModuleType, subprocess.CompletedProcess[str]]
) -> None:
    package, _ = generated
    models = _sub(package, "models")
    create_batch = _sub(package, "api.tasks.create_batch_task")
    _, token = local_api.make_user(quota=0)
    client = _client(package, local_api, token)
    [image] = _upload(package, client, [PHOTOS / "rocket.jpg"])
    missing = create_batch.sync(client=client, body=models.BatchTaskRequest(
        feature_id="no_such_feature", input_images=[image]))
    broke = create_batch.sync(client=client, body=models.BatchTaskRequest(
        feature_id="basic_clean", input_images=[image]))
    assert isinstance(missing, models.Error4004)
    assert (missing.error, missing.message) == ("feature_not_found", "功能不存在")
    assert isinstance(broke, models.Error1003)
    assert (broke.error, broke.error_code) == ("quota_insufficient", 1003)
