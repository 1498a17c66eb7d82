"""Is the API responsive while batches run? Create and read latency, idle vs under load."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from bench.context import Context
from bench.photos import BATCH_FEATURE, BATCH_INPUTS, thumbnails
from bench.report import Section, table
from bench.stats import percentile
from devstack.client import FINISHED, PixelBatchClient

LOAD_BATCHES = 5  # the product card: an API that stays responsive with 5 batches running
PACE_S = 0.25  # a read every tick
TICKS_PER_CREATE = 4  # and a create every fourth
CREATORS = 4  # 15 creates a minute each: under basic_clean's rate limit of 30
IDLE_SAMPLES = 160
TARGET = 3.0
WATCH_INTERVAL_S = 1.0  # each batch's owner watches it as the web console does, once a second


@dataclass
class Samples:
    create: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)


class _Probe:
    """Reads of a finished task every tick, and a 1-image create every few ticks, each create
    from the next of several users so that the per-user rate limit never answers instead."""

    def __init__(self, ctx: Context) -> None:
        stack = ctx.stack()
        self.creators = [stack.new_client() for _ in range(CREATORS)]
        self.reader = stack.new_client()
        small = [(p.name, p.data) for p in thumbnails(ctx.photos(1))]
        self.inputs = [[u.input_url for u in c.upload(small)] for c in self.creators]
        read_inputs = [u.input_url for u in self.reader.upload(small)]
        self.read_task = self.reader.create_batch(BATCH_FEATURE, read_inputs, **BATCH_INPUTS)
        self.reader.wait(self.read_task)
        self.warm()
        self.tick = 0

    def warm(self) -> None:
        """As many warm environments as the loaded phase uses at once (every creator, the
        reader and each batch's owner), so that a cold start, which costs the same idle or
        loaded and has a section of its own, does not decide either tail."""
        token = str(self.reader.session.headers["Authorization"]).removeprefix("Bearer ")
        owners = [PixelBatchClient(self.reader.base_url, token) for _ in range(LOAD_BATCHES)]
        calls = [*(partial(self.create, which) for which in range(CREATORS)),
                 *(partial(self.read, client) for client in [self.reader, *owners])]
        with ThreadPoolExecutor(len(calls)) as pool:
            for _ in range(2):
                list(pool.map(lambda call: call(), calls))

    def create(self, which: int) -> None:
        reply = self.creators[which].request("POST", "/api/tasks/batch", json={
            "feature_id": BATCH_FEATURE, "input_images": self.inputs[which],
            "input_data": BATCH_INPUTS})
        assert reply.status_code == 200, reply.text

    def read(self, client: PixelBatchClient) -> None:
        reply = client.request("GET", f"/api/tasks/{self.read_task}")
        assert reply.status_code == 200, reply.text

    def sample(self, into: Samples) -> None:
        if self.tick % TICKS_PER_CREATE == 0:
            started = time.perf_counter()
            self.create((self.tick // TICKS_PER_CREATE) % CREATORS)
            into.create.append(time.perf_counter() - started)
        self.tick += 1
        started = time.perf_counter()
        self.read(self.reader)
        into.read.append(time.perf_counter() - started)

    def paced(self, into: Samples, until: threading.Event | None, count: int) -> None:
        taken = 0
        while (until is not None and not until.is_set()) or (until is None and taken < count):
            started = time.perf_counter()
            self.sample(into)
            taken += 1
            time.sleep(max(0.0, PACE_S - (time.perf_counter() - started)))


def _load(ctx: Context, running: threading.Event, done: threading.Event) -> int:
    """Five batches of 12-megapixel photos at once; returns how many images they held.

    ``running`` is set once every batch is created (its photos uploaded), ``done`` once all
    have finished."""
    stack = ctx.stack()
    photos = [(p.name, p.data) for p in ctx.photos(ctx.plan.images)]
    clients = [stack.new_client() for _ in range(LOAD_BATCHES)]
    tasks = []
    try:
        for client in clients:
            inputs = [u.input_url for u in client.upload(photos)]
            tasks.append((client, client.create_batch(BATCH_FEATURE, inputs, **BATCH_INPUTS)))
        running.set()
        for client, task_id in tasks:
            client.wait(task_id, timeout=3600, interval=WATCH_INTERVAL_S)
    finally:
        running.set()
        done.set()
    return len(photos) * LOAD_BATCHES


def measure(ctx: Context) -> tuple[Samples, Samples, int]:
    probe = _Probe(ctx)
    idle, loaded = Samples(), Samples()
    probe.paced(idle, None, IDLE_SAMPLES // 2)
    running, done = threading.Event(), threading.Event()
    images: list[int] = []
    loader = threading.Thread(target=lambda: images.append(_load(ctx, running, done)))
    loader.start()
    running.wait()  # the uploads are load on the emulator, not on the service: not sampled
    probe.paced(loaded, done, 0)
    loader.join()
    for creator in probe.creators:
        _drain(creator)
    probe.paced(idle, None, IDLE_SAMPLES // 2)  # idle again: before and after, side by side
    return idle, loaded, images[0] if images else 0


def _drain(client: PixelBatchClient) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        tasks = client.ok("GET", "/api/tasks", params={"limit": "100"})["data"]["tasks"]
        if all(task["status"] in FINISHED for task in tasks):
            return
        time.sleep(0.5)


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}"


def run(ctx: Context) -> Section:
    idle, loaded, images = measure(ctx)
    create_ratio = percentile(loaded.create, 99) / percentile(idle.create, 99)
    read_ratio = percentile(loaded.read, 99) / percentile(idle.read, 99)
    rows = [
        ("POST /api/tasks/batch (1 image)", len(idle.create), _ms(idle.create, 50),
         _ms(idle.create, 99), len(loaded.create), _ms(loaded.create, 50),
         _ms(loaded.create, 99), f"{create_ratio:.2f}"),
        ("GET /api/tasks/{id}", len(idle.read), _ms(idle.read, 50), _ms(idle.read, 99),
         len(loaded.read), _ms(loaded.read, 50), _ms(loaded.read, 99), f"{read_ratio:.2f}"),
    ]
    verdict = "within" if max(create_ratio, read_ratio) <= TARGET else "OVER"
    headline = (f"under {LOAD_BATCHES} running batches ({images} photos of 12 MP): create p99 "
                f"x{create_ratio:.2f}, read p99 x{read_ratio:.2f} of idle ({verdict} the "
                f"target of {TARGET:g})")
    method = (
        f"From one thread, a user reads a finished task every {PACE_S} s and, every "
        f"{TICKS_PER_CREATE} reads, one of {CREATORS} users creates a 1-image batch: "
        f"{IDLE_SAMPLES // 2} ticks on the idle stack, then from the moment {LOAD_BATCHES} "
        f"batches of {ctx.plan.images} phone photos (basic_clean) are created until the last "
        f"finishes, each watched by its owner polling every {WATCH_INTERVAL_S:g} s as the web "
        "console does, then "
        f"{IDLE_SAMPLES // 2} ticks idle again. The API's environments are warmed first, as many "
        f"at once as the loaded phase uses. The batches' uploads (a gigabyte of photos into "
        f"the emulator's S3, which on AWS would not share the API's host) are not sampled. "
        f"Every Lambda runs in "
        f"its own process, so image work and the API compete only for the "
        f"{os.cpu_count()} cores, as separate execution environments would for the host."
    )
    body = "\n\n".join([
        table(["Route", "idle n", "idle p50 ms", "idle p99 ms", "loaded n", "loaded p50 ms",
               "loaded p99 ms", "loaded p99 / idle p99"], rows),
        method,
    ])
    return Section("responsive", "API responsiveness under load", headline, body)
