"""pixelbatch: run a folder of images through a PixelBatch feature and get the ZIP.

examples:
  export PIXELBATCH_API_URL=http://127.0.0.1:3000
  export PIXELBATCH_TOKEN=$(pixelbatch token --user alice --quota 100)   # local stack only
  pixelbatch run photos/ --feature basic_clean --param brightness=10 --param contrast=5 \\
      --out out.zip
  pixelbatch status 3f2c9a7e5b8d4c1fa0e6b2d97c4e8a15
  pixelbatch retry 3f2c9a7e5b8d4c1fa0e6b2d97c4e8a15 --wait --out out.zip

settings: --api / --token, else PIXELBATCH_API_URL / PIXELBATCH_TOKEN, else the config file
(~/.config/pixelbatch/config.json, written by `pixelbatch token --save`).

progress goes to stderr; results (task ids, JSON status, file names) to stdout.
Ctrl-C while a batch runs offers to cancel it.

exit codes:
  0  done: every image succeeded (or the command did what it was asked)
  1  unexpected error
  2  wrong usage
  3  the API refused the request (its message and error key are printed)
  4  the batch finished with some images failed (partial_success)
  5  the batch failed entirely, or was cancelled
  6  no token, or the token was refused (401)
  7  the API could not be reached
  130 interrupted
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelbatch_cli.api import FINISHED, Api, ApiError, Json, Unreachable
from pixelbatch_cli.progress import Progress, task_line

OK, ERROR, USAGE, REFUSED, PARTIAL, FAILED, UNAUTHORIZED, UNREACHABLE = 0, 1, 2, 3, 4, 5, 6, 7
INTERRUPTED = 130
DEFAULT_API = "http://127.0.0.1:3000"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
MAX_IMAGES = 50
POLL_SECONDS = 0.5
STATUS_EXIT = {"success": OK, "partial_success": PARTIAL, "failed": FAILED, "cancelled": FAILED}


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    api_url: str
    token: str | None


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pixelbatch" / "config.json"


def _config_file() -> dict[str, Any]:
    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def settings(args: argparse.Namespace) -> Settings:
    """Flags, then the environment, then the config file."""
    saved = _config_file()
    api_url = args.api or os.environ.get("PIXELBATCH_API_URL") or saved.get("api_url")
    token = args.token or os.environ.get("PIXELBATCH_TOKEN") or saved.get("token")
    return Settings(str(api_url or DEFAULT_API), token)


def parse_params(pairs: Sequence[str]) -> Json:
    """`name=value` pairs; values are read as JSON when they are (10, 0.5, true), else text."""
    params: Json = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param {pair!r}: expected name=value")
        try:
            params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw
    return params


def images_in(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    found = sorted(p for p in directory.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise UsageError(f"no images in {directory}")
    if len(found) > MAX_IMAGES:
        raise UsageError(f"{len(found)} images in {directory}; a batch takes at most {MAX_IMAGES}")
    return found


# ---------------------------------------------------------------------- waiting on a batch


def offer_cancel(api: Api, task_id: str, progress: Progress) -> int:
    progress.say(f"\ninterrupted. Cancel batch {task_id}? [y/N] ")
    try:
        answer = input()
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        progress.say(f"left running; follow it with: pixelbatch status {task_id}")
        return INTERRUPTED
    reply = api.cancel(task_id)
    progress.say(reply.get("message", "cancelled"))
    return FAILED


def wait(api: Api, task_id: str, progress: Progress) -> Json:
    while True:
        task = api.task(task_id)
        progress.show(task_line(task))
        if task["status"] in FINISHED and not task.get("batch_processing"):
            progress.end()
            return task
        time.sleep(POLL_SECONDS)


def report_failures(task: Json, progress: Progress) -> None:
    for item in task["batch_items"]:
        if item["status"] == "failed":
            progress.say(f"  image {item['index'] + 1}: {item.get('error_message')} "
                         f"({item.get('error_code')})")


def finish(api: Api, task: Json, out: Path | None, progress: Progress) -> int:
    report_failures(task, progress)
    if out is not None and task["batch_success"] > 0:
        out.write_bytes(api.zip_bytes(task["id"]))
        print(out, flush=True)
    return STATUS_EXIT.get(task["status"], ERROR)


def announce(created: Json, progress: Progress) -> None:
    print(created["task_id"], flush=True)
    progress.say(f"batch {created['task_id']}: {created['batch_total']} images, "
                 f"{created['quota_cost']} quota charged")


def follow(api: Api, task_id: str, args: argparse.Namespace, progress: Progress,
           created: Json | None = None) -> int:
    """Wait for the batch, retry its failed images as often as asked, then save the ZIP.

    A batch just created is announced inside the same guard, so Ctrl-C from the moment its
    id is printed offers to cancel it.
    """
    try:
        if created is not None:
            announce(created, progress)
        task = wait(api, task_id, progress)
        for _ in range(args.retry_failed):
            if task["batch_failed"] == 0 or task["status"] == "cancelled":
                break
            progress.say(api.retry_failed(task_id).get("message", "retrying"))
            task = wait(api, task_id, progress)
    except KeyboardInterrupt:
        return offer_cancel(api, task_id, progress)
    return finish(api, task, args.out, progress)


# ---------------------------------------------------------------------- commands


def cmd_run(api: Api, args: argparse.Namespace, progress: Progress) -> int:
    paths = images_in(args.directory)
    params = parse_params(args.param)
    uploaded = api.upload(paths, lambda n: progress.show(f"uploading {n}/{len(paths)}"))
    progress.end()
    created = api.create_batch(args.feature, uploaded, params, args.idempotency_key)
    return follow(api, created["task_id"], args, progress, created)


def cmd_status(api: Api, args: argparse.Namespace, progress: Progress) -> int:
    task = api.task(args.task_id)
    fields = ("id", "status", "feature_id", "batch_total", "batch_success", "batch_failed",
              "batch_cancelled", "createdAt", "updatedAt")
    print(json.dumps({name: task.get(name) for name in fields}, ensure_ascii=False, indent=2))
    report_failures(task, progress)
    return STATUS_EXIT.get(task["status"], OK) if task["status"] in FINISHED else OK


def cmd_retry(api: Api, args: argparse.Namespace, progress: Progress) -> int:
    reply = api.retry_failed(args.task_id)
    progress.say(f"{reply['message']} (quota {reply['quota_cost']})")
    if not args.wait:
        return OK
    args.retry_failed = 0
    return follow(api, args.task_id, args, progress)


def cmd_cancel(api: Api, args: argparse.Namespace, progress: Progress) -> int:
    reply = api.cancel(args.task_id)
    progress.say(f"{reply['message']} (refund {reply['refund_amount']})")
    return OK


def cmd_download(api: Api, args: argparse.Namespace, progress: Progress) -> int:
    args.out.write_bytes(api.zip_bytes(args.task_id))
    print(args.out)
    return OK


def cmd_token(api: Api, args: argparse.Namespace, progress: Progress) -> int:
    token = api.dev_token(args.user, args.quota, args.plan)
    if args.save:
        path = config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"api_url": api.base_url, "token": token}), encoding="utf-8")
        path.chmod(0o600)
        progress.say(f"saved to {path}")
    print(token)
    return OK


# ---------------------------------------------------------------------- arguments


def _follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="write the batch's ZIP here when it finishes")
    parser.add_argument("--retry-failed", type=int, default=0, metavar="N",
                        help="retry the failed images up to N times (each retry is charged)")


def _task_command(sub: Any, name: str, handler: Callable[..., int], help_text: str
                  ) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("task_id")
    parser.set_defaults(handler=handler, needs_token=True)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixelbatch", description=__doc__.split("\n", 1)[0],
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", help=f"API base URL (PIXELBATCH_API_URL; default {DEFAULT_API})")
    parser.add_argument("--token", help="bearer token (PIXELBATCH_TOKEN)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="upload every image in DIR, run a batch, save the ZIP")
    run.add_argument("directory", type=Path, metavar="DIR")
    run.add_argument("--feature", required=True, help="feature id (see GET /api/features)")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="a parameter of the feature; repeat for several")
    run.add_argument("--idempotency-key", help="make a repeated submission safe (default: random)")
    _follow_options(run)
    run.set_defaults(handler=cmd_run, needs_token=True)
    _task_command(sub, "status", cmd_status, "print a task's state as JSON")
    retry = _task_command(sub, "retry", cmd_retry, "retry a batch's failed images (charged)")
    retry.add_argument("--wait", action="store_true", help="follow the batch until it finishes")
    _follow_options(retry)
    _task_command(sub, "cancel", cmd_cancel, "cancel a running batch (unfinished images refunded)")
    download = _task_command(sub, "download", cmd_download, "save a finished batch's ZIP")
    download.add_argument("--out", type=Path, required=True)
    token = sub.add_parser("token", help="make a dev user on the local stack and print its token")
    token.add_argument("--user", default="cli-user", help="user id (default cli-user)")
    token.add_argument("--quota", type=int, default=100, help="starting quota (default 100)")
    token.add_argument("--plan", default="pro", choices=("free", "pro", "enterprise"))
    token.add_argument("--save", action="store_true", help="keep the API URL and token in "
                       "the config file")
    token.set_defaults(handler=cmd_token, needs_token=False)
    return parser


def execute(argv: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = progress or Progress()
    chosen = settings(args)
    if args.needs_token and not chosen.token:
        progress.say("no token: pass --token, set PIXELBATCH_TOKEN, or run `pixelbatch token "
                     "--save` against the local stack")
        return UNAUTHORIZED
    try:
        code: int = args.handler(Api(chosen.api_url, chosen.token), args, progress)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        progress.say(f"pixelbatch: error: {error}")
        return USAGE
    except ApiError as error:
        progress.say(f"refused ({error.status}, {error.key}): {error.message}")
        return UNAUTHORIZED if error.status == 401 else REFUSED
    except Unreachable as error:
        progress.say(f"cannot reach the API at {chosen.api_url}: {error}")
        return UNREACHABLE
    except KeyboardInterrupt:
        progress.say("interrupted")
        return INTERRUPTED
    return code


def main() -> None:
    sys.exit(execute())
