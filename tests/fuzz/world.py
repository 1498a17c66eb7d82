"""What the fuzzer knows about the local stack: a rich account, real tasks in every interesting
state, the caller's own uploads and the catalog's features, and how generated cases are steered
towards them.

Steering is deterministic (a hash of the generated value picks the replacement), so a failing
case replays the same way. An image field never leaves with a web URL in it: the allowlisted
hosts are real internet hosts the stack would fetch from.
"""

from __future__ import annotations

import io
import json
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from PIL import Image
from schemathesis import Case

from devstack.client import PixelBatchClient
from tests.e2e.conftest import ApiSession, LocalApi

REPO: Final = Path(__file__).resolve().parents[2]
CATALOG: Final = REPO / "catalog" / "features.json"
PIPELINES: Final = REPO / "catalog" / "pipelines.json"

FUZZ_QUOTA: Final = 10_000_000
FUZZ_PLAN: Final = "enterprise"
TASK_WAIT_SECONDS: Final = 120

IMAGE_FIELDS: Final = ("input_images", "input_image")
WEB_URL: Final = re.compile(r"(?i)https?:")  # the only schemes besides s3 the stack fetches
JUNK: Final = b"Not an image, whatever its name says.\n" * 20


def bucket(value: Any) -> int:
    """A stable number for a generated value (the same case always steers the same way)."""
    text = json.dumps(value, sort_keys=True, default=repr, ensure_ascii=True)
    return zlib.crc32(text.encode())


def is_web_url(value: str) -> bool:
    return WEB_URL.search(value) is not None


def png(size: int = 48, color: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


def catalog_features() -> list[dict[str, Any]]:
    """Every feature of the catalog: usable, disabled, deleted and plan-restricted ones."""
    features: list[dict[str, Any]] = json.loads(CATALOG.read_text(encoding="utf-8"))
    return features


def catalog_feature_ids() -> tuple[str, ...]:
    return tuple(str(feature["feature_id"]) for feature in catalog_features())


@dataclass
class Outcomes:
    """Status codes seen per operation, to show what the fuzzer actually reached."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def record(self, operation: str, status: int) -> None:
        self.statuses.setdefault(operation, Counter())[status] += 1

    def summary(self) -> str:
        lines = [
            f"{operation}: " + ", ".join(f"{code}x{n}" for code, n in sorted(counts.items()))
            for operation, counts in sorted(self.statuses.items())
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class FuzzWorld:
    api: LocalApi
    user_id: str
    token: str
    uploads: tuple[str, ...]
    own_tasks: Mapping[str, str]
    foreign_task: str
    features: tuple[str, ...]
    outcomes: Outcomes = field(default_factory=Outcomes)

    def session(self) -> ApiSession:
        """A session of the fuzz user: relative URLs go to the stack, redirects are not followed."""
        return self.api.session(self.token)

    @property
    def task_ids(self) -> tuple[str, ...]:
        return (*self.own_tasks.values(), self.foreign_task)

    def steer(self, case: Case) -> None:
        """Point a generated case at real tasks, features and uploads part of the time."""
        if "taskId" in (case.path_parameters or {}):
            generated = case.path_parameters["taskId"]
            pick = bucket(generated)
            if pick % 3:
                case.path_parameters = {**case.path_parameters,
                                        "taskId": self.task_ids[pick % len(self.task_ids)]}
        if isinstance(case.body, dict):
            case.body = self._steer_body(case.body)

    def _steer_body(self, body: dict[str, Any]) -> dict[str, Any]:
        steered = dict(body)
        feature = steered.get("feature_id")
        if isinstance(feature, str) and bucket(feature) % 3:
            steered["feature_id"] = self.features[bucket([feature]) % len(self.features)]
        if isinstance(steered.get("input_data"), dict) and bucket(steered["input_data"]) % 3 == 0:
            steered["input_data"] = {}  # valid for every feature: its defaults apply
        images = steered.get("input_images")
        if isinstance(images, list):
            steered["input_images"] = [self._image(item) for item in images]
        if "input_image" in steered:
            steered["input_image"] = self._image(steered["input_image"])
        return steered

    def _image(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if is_web_url(value) or bucket(value) % 3:
            return self.uploads[bucket([value]) % len(self.uploads)]
        return value


def assert_no_web_image(body: Any) -> None:
    """The stack would download any allowlisted https image from the internet: never send one."""
    if not isinstance(body, dict):
        return
    for name in IMAGE_FIELDS:
        value = body.get(name)
        values = value if isinstance(value, list) else [value]
        leaked = [item for item in values if isinstance(item, str) and is_web_url(item)]
        assert not leaked, f"refusing to send web image URLs in {name}: {leaked}"


# ---------------------------------------------------------------------- building the world


def upload_images(client: PixelBatchClient, count: int) -> list[str]:
    """`count` small PNGs of distinct colours through presigned PUTs; their input_urls."""
    files = [(f"image_{i}.png", png(color=(40 * i % 256, 120, 200))) for i in range(count)]
    return [upload.input_url for upload in client.upload(files)]


def build_world(api: LocalApi) -> FuzzWorld:
    """A user with a big enterprise quota, and tasks that have settled in distinct states."""
    user_id, token = api.make_user(quota=FUZZ_QUOTA, plan=FUZZ_PLAN)
    client = PixelBatchClient(api.base_url, token)
    good = upload_images(client, 2)
    (junk,) = [u.input_url for u in client.upload([("junk.jpg", JUNK)])]
    partial = client.create_batch("basic_clean", [good[0], junk], brightness=10)
    failed = client.create_batch("bw_classic", [junk, junk])
    done = client.create_batch("portrait_retouch", good)
    single = client.ok("POST", "/api/tasks", json={"feature_id": "basic_clean",
                                                   "input_image": good[1]})["data"]["task_id"]
    own = {"partial_success": partial, "failed": failed, "success": done, "single": single}
    for expected, task_id in own.items():
        settled = client.wait(task_id, timeout=TASK_WAIT_SECONDS)["status"]
        assert settled == expected.replace("single", "success"), (expected, settled)
    _, other_token = api.make_user(quota=100, plan="pro")
    other = PixelBatchClient(api.base_url, other_token)
    foreign = other.create_batch("basic_clean", upload_images(other, 1))
    return FuzzWorld(
        api=api,
        user_id=user_id,
        token=token,
        uploads=(*good, junk),
        own_tasks=own,
        foreign_task=foreign,
        features=catalog_feature_ids(),
    )
