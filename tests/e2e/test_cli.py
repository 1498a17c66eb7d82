"""`pixelbatch`, the installed command, against the local stack: a folder of real photos to a ZIP,
retries, refusals with their keys, exit codes a script can branch on, and Ctrl-C that cancels."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalApi

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "photos"
PIXELBATCH = Path(sys.executable).with_name("pixelbatch")


def _env(local_api: LocalApi, token: str | None, tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PIXELBATCH_API_URL": local_api.base_url,
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("PIXELBATCH_TOKEN", None)
    if token:
        env["PIXELBATCH_TOKEN"] = token
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PIXELBATCH), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def _folder(tmp_path: Path, photos: list[str], junk: int = 0) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in photos:
        shutil.copy(PHOTOS / name, folder / name)
    for i in range(junk):
        (folder / f"broken_{i}.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image, skipped")
    return folder


def test_run_turns_a_folder_into_a_zip(local_api: LocalApi, tmp_path: Path) -> None:
    # Given a dev token from `pixelbatch token` and a folder of photos
    env = _env(local_api, None, tmp_path)
    token = _cli(env, "token", "--user", f"cli-{time.time_ns()}", "--quota", "10")
    assert token.returncode == 0, token.stderr
    env["PIXELBATCH_TOKEN"] = token.stdout.strip()
    folder = _folder(tmp_path, ["rocket.jpg", "coffee.png", "chelsea.png"])
    out = tmp_path / "out.zip"
    # When the folder is run through basic_clean with two parameters
    done = _cli(env, "run", str(folder), "--feature", "basic_clean", "--param", "brightness=10",
                "--param", "contrast=5", "--out", str(out))
    # Then it exits 0, prints the task id and the ZIP's path, and showed progress on stderr
    assert done.returncode == 0, done.stderr
    task_id, written = done.stdout.split()
    assert Path(written) == out
    names = zipfile.ZipFile(io.BytesIO(out.read_bytes())).namelist()
    assert sorted(n for n in names if n.startswith("result_")) == [
        "result_1.jpg", "result_2.jpg", "result_3.jpg"]
    assert "3/3, 3 done, 0 failed" in done.stderr
    status = _cli(env, "status", task_id)
    assert status.returncode == 0
    assert json.loads(status.stdout)["status"] == "success"
    assert json.loads(status.stdout)["batch_success"] == 3


def test_failed_images_are_retried_on_request_and_exit_4(
    local_api: LocalApi, tmp_path: Path
) -> None:
    _, token = local_api.make_user(quota=10)
    env = _env(local_api, token, tmp_path)
    folder = _folder(tmp_path, ["rocket.jpg"], junk=2)
    done = _cli(env, "run", str(folder), "--feature", "basic_clean", "--retry-failed", "1",
                "--out", str(tmp_path / "out.zip"))
    assert done.returncode == 4, done.stderr
    assert "已重新提交2个失败项" in done.stderr
    assert done.stderr.count("(not_an_image)") == 2
    assert (tmp_path / "out.zip").exists()


def test_refusals_print_the_key_and_exit_with_their_code(
    local_api: LocalApi, tmp_path: Path
) -> None:
    _, token = local_api.make_user(quota=10)
    env = _env(local_api, token, tmp_path)
    folder = _folder(tmp_path, ["rocket.jpg"])
    unknown = _cli(env, "run", str(folder), "--feature", "no_such_feature")
    assert unknown.returncode == 3
    assert "feature_not_found" in unknown.stderr and "功能不存在" in unknown.stderr
    no_token = _cli(_env(local_api, None, tmp_path), "status", "abc")
    bad_token = _cli(_env(local_api, "not-a-token", tmp_path), "status", "abc")
    assert (no_token.returncode, bad_token.returncode) == (6, 6)
    unreachable = _cli({**env, "PIXELBATCH_API_URL": "http://127.0.0.1:9"}, "status", "abc")
    assert unreachable.returncode == 7
    usage = _cli(env, "run", str(folder), "--feature", "basic_clean", "--param", "oops")
    assert usage.returncode == 2 and "expected name=value" in usage.stderr
    finished = _cli(env, "run", str(folder), "--feature", "basic_clean")
    task_id = finished.stdout.split()[0]
    late = _cli(env, "cancel", task_id)
    assert late.returncode == 3 and "task_finished" in late.stderr


def test_ctrl_c_offers_to_cancel_the_batch(local_api: LocalApi, tmp_path: Path) -> None:
    # Given a batch of every bundled photo, running
    _, token = local_api.make_user(quota=20)
    env = _env(local_api, token, tmp_path)
    photos = sorted(path.name for path in PHOTOS.iterdir())
    folder = _folder(tmp_path, photos)
    process = subprocess.Popen(
        [str(PIXELBATCH), "run", str(folder), "--feature", "basic_clean"], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None and process.stdout is not None
    task_id = process.stdout.readline().strip()
    # When Ctrl-C arrives while it runs, and the person answers yes
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate("y\n", timeout=120)
    # Then the batch is cancelled with its refund announced, and the exit code says so
    assert "Cancel batch" in errors, errors
    assert process.returncode == 5, errors
    assert "任务已取消" in errors
    status = _cli(env, "status", task_id)
    assert json.loads(status.stdout)["status"] == "cancelled"
