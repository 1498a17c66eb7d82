"""The CLI's pure parts: parameters from the command line, the progress bar, where settings come
from (flags, then environment, then the config file)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pixelbatch_cli.main import UsageError, build_parser, images_in, parse_params, settings
from pixelbatch_cli.progress import Progress, bar, task_line


def test_params_are_json_when_they_can_be_and_text_otherwise() -> None:
    assert parse_params(["brightness=10", "opacity=0.5", "text=Hello world", "on=true"]) == {
        "brightness": 10, "opacity": 0.5, "text": "Hello world", "on": True}
    with pytest.raises(UsageError):
        parse_params(["brightness"])


def test_the_bar_shows_done_failed_and_left() -> None:
    assert bar(15, 0, 30) == "[" + "#" * 15 + "." * 15 + "]"
    assert bar(10, 20, 30) == "[" + "#" * 10 + "x" * 20 + "]"
    task = {"id": "0123456789", "status": "processing", "batch_total": 4, "batch_success": 2,
            "batch_failed": 1, "batch_cancelled": 0}
    assert task_line(task).endswith("3/4, 2 done, 1 failed")


def test_progress_writes_a_line_per_change_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    for line in ("a", "a", "b"):
        progress.show(line)
    assert stream.getvalue() == "a\nb\n"


def test_flags_beat_environment_beat_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "pixelbatch").mkdir()
    (tmp_path / "pixelbatch" / "config.json").write_text(
        json.dumps({"api_url": "http://file", "token": "file-token"}))
    monkeypatch.delenv("PIXELBATCH_API_URL", raising=False)
    monkeypatch.delenv("PIXELBATCH_TOKEN", raising=False)
    parser = build_parser()
    assert settings(parser.parse_args(["status", "t"])).token == "file-token"
    monkeypatch.setenv("PIXELBATCH_TOKEN", "env-token")
    assert settings(parser.parse_args(["status", "t"])).token == "env-token"
    chosen = settings(parser.parse_args(["--token", "flag", "--api", "http://flag", "status", "t"]))
    assert (chosen.api_url, chosen.token) == ("http://flag", "flag")


def test_only_images_are_taken_from_the_folder(tmp_path: Path) -> None:
    (tmp_path / "b.PNG").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in images_in(tmp_path)] == ["a.jpg", "b.PNG"]
    with pytest.raises(UsageError):
        images_in(tmp_path / "missing")
