"""`make demo`: upload real photos to the local stack, run a batch with a live progress line,
and save the ZIP.

    python -m devstack.demo                       # 10 bundled photos, starts its own stack
    python -m devstack.demo --phone 50            # 50 generated 12-megapixel photos
    python -m devstack.demo --url http://127.0.0.1:3000   # use a stack started by `make run`
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from devstack.client import PixelBatchClient
from devstack.process import REPO, make_user, running_stack

PHOTOS = REPO / "tests/fixtures/corpus/photos"
PHONE_SET = REPO / ".cache/phone-set/4032x3024"


def main() -> None:
    args = _arguments()
    photos = _phone_photos(args.phone) if args.phone else sorted(PHOTOS.iterdir())
    with nullcontext(args.url) if args.url else _started_stack() as base_url:
        print(f"local API at {base_url}")
        token = make_user(base_url, "demo-user", quota=500, plan="pro")
        client = PixelBatchClient(base_url, token)
        started = time.monotonic()
        urls = client.upload_paths(photos)
        print(f"uploaded {len(urls)} photos in {time.monotonic() - started:.1f}s")
        task_id = client.create_batch(args.feature, urls, brightness=args.brightness,
                                      contrast=args.contrast)
        started = time.monotonic()
        task = client.wait(task_id, timeout=900, interval=0.25, on_poll=_progress)
        print(f"\n{task['status']}: {task['batch_success']} ok, {task['batch_failed']} failed "
              f"in {time.monotonic() - started:.1f}s")
        for item in task["batch_items"]:
            if item["status"] == "failed":
                print(f"  #{item['index'] + 1}: {item['error_code']} {item['error_message']}")
        _save(client, task, args.out)
        balance = client.ok("GET", "/api/quota")["data"]["balance"]
        print(f"quota left: {balance}")


@contextmanager
def _started_stack() -> Iterator[str]:
    with running_stack() as stack:
        yield stack.base_url


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running local API (default: start one)")
    parser.add_argument("--phone", type=int, default=0, metavar="N",
                        help="use N generated 12-megapixel photos instead of the bundled ones")
    parser.add_argument("--feature", default="basic_clean")
    parser.add_argument("--brightness", type=int, default=15)
    parser.add_argument("--contrast", type=int, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "out")
    return parser.parse_args()


def _phone_photos(count: int) -> list[Path]:
    wanted = [PHONE_SET / f"phone_{i + 1:03d}.jpg" for i in range(count)]
    if not all(path.exists() for path in wanted):
        print(f"making {count} 12-megapixel photos (once) ...")
        subprocess.run([sys.executable, str(REPO / "tests/fixtures/corpus/make_phone_set.py"),
                        str(PHONE_SET), str(count)], check=True)
    return wanted


def _progress(task: dict[str, Any]) -> None:
    total, done = task["batch_total"], task["batch_success"] + task["batch_failed"]
    width = 30
    filled = int(width * done / max(total, 1))
    bar = "#" * filled + "." * (width - filled)
    line = (f"\r[{bar}] {done}/{total} done  {task['batch_processing']} processing  "
            f"{task['batch_failed']} failed  ({task['status']})")
    sys.stdout.write(line)
    sys.stdout.flush()


def _save(client: PixelBatchClient, task: dict[str, Any], out: Path) -> None:
    if not task["batch_success"]:
        print("nothing to download")
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"batch_{task['id']}.zip"
    path.write_bytes(client.download_zip(task["id"]))
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB, {len(names)} entries)")


if __name__ == "__main__":
    main()
