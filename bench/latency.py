"""Create-batch latency under concurrent clients, against a trivial route of the same server."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from bench.context import Context
from bench.overhead import BATCH_TIMEOUT_S, POLL_INTERVAL_S
from bench.photos import BATCH_FEATURE, BATCH_INPUTS, thumbnails
from bench.report import Section, table
from bench.stats import Summary, median, percentile
from devstack.client import FINISHED, PixelBatchClient

HEALTH = "/local/health"
CREATE = "/api/tasks/batch"

Request = Callable[[], requests.Response]


@dataclass
class Round:
    latencies: list[float] = field(default_factory=list)
    replies: list[requests.Response] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(reply.status_code for reply in self.replies)


def simultaneous(senders: list[Request]) -> Round:
    """Fire every request at once (one thread each, released together); time each one."""
    latencies: list[float] = [0.0] * len(senders)
    replies: list[requests.Response | None] = [None] * len(senders)
    errors: list[BaseException] = []
    gate = threading.Barrier(len(senders))

    def worker(index: int) -> None:
        gate.wait()
        started = time.perf_counter()
        try:
            replies[index] = senders[index]()
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)
        latencies[index] = time.perf_counter() - started

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(senders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return Round(latencies, [reply for reply in replies if reply is not None])


def _create(client: PixelBatchClient, urls: list[str]) -> Request:
    body = {"feature_id": BATCH_FEATURE, "input_images": urls, "input_data": BATCH_INPUTS}
    return lambda: client.request("POST", CREATE, json=body)


def create_round(clients: list[PixelBatchClient], inputs: list[list[str]]) -> Round:
    return simultaneous([_create(c, urls) for c, urls in zip(clients, inputs, strict=True)])


def health_round(base_url: str, count: int) -> Round:
    def get(session: requests.Session) -> Request:
        return lambda: session.get(base_url + HEALTH, timeout=60)

    return simultaneous([get(requests.Session()) for _ in range(count)])


def foreign_tasks(clients: list[PixelBatchClient], done: Round) -> int:
    """Creates answered with a task id that their own user cannot read."""
    count = 0
    for client, reply in zip(clients, done.replies, strict=True):
        if reply.status_code == 200:
            task_id = reply.json()["data"]["task_id"]
            count += client.request("GET", f"/api/tasks/{task_id}").status_code != 200
    return count


def drain(clients: list[PixelBatchClient]) -> None:
    """Wait until no batch of these users is unfinished, so that rounds do not overlap."""
    deadline = time.monotonic() + BATCH_TIMEOUT_S
    for client in clients:
        while True:
            tasks = client.ok("GET", "/api/tasks", params={"limit": "100"})["data"]["tasks"]
            if all(task["status"] in FINISHED for task in tasks):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("batches still running after the latency rounds")
            time.sleep(POLL_INTERVAL_S)


@dataclass
class Measured:
    alone: list[Round] = field(default_factory=list)  # one create at a time on an idle stack
    create: list[Round] = field(default_factory=list)  # a create per user, all at once
    health: list[Round] = field(default_factory=list)  # as many trivial requests at once
    same_user: Round = field(default_factory=Round)  # one user's creates, all at once
    foreign: int = 0  # creates answered with another user's task


class _Rounds:
    """The three kinds of round; every round that creates waits for its batches to finish."""

    def __init__(self, ctx: Context, measured: Measured) -> None:
        plan, self.stack = ctx.plan, ctx.stack()
        small = [(p.name, p.data) for p in thumbnails(ctx.photos(plan.latency_batch_size))]
        self.clients = [self.stack.new_client() for _ in range(plan.clients)]
        self.inputs = [[u.input_url for u in client.upload(small)] for client in self.clients]
        self.small, self.measured = small, measured

    def alone(self) -> None:
        for client, urls in list(zip(self.clients, self.inputs, strict=True))[:2]:
            self.measured.alone.append(create_round([client], [urls]))
            drain([client])

    def concurrent(self) -> None:
        done = create_round(self.clients, self.inputs)
        self.measured.create.append(done)
        self.measured.foreign += foreign_tasks(self.clients, done)
        drain(self.clients)

    def health(self) -> None:
        self.measured.health.append(health_round(self.stack.base_url, len(self.clients)))

    def warm_up(self) -> None:
        """An API Lambda environment per client, as after a first burst."""
        create_round(self.clients, [urls[:1] for urls in self.inputs])
        drain(self.clients)

    def same_user(self) -> None:
        one = self.stack.new_client()
        urls = [u.input_url for u in one.upload(self.small)]
        count = len(self.clients)
        self.measured.same_user = create_round([one] * count, [urls] * count)


def measure(ctx: Context) -> Measured:
    measured = Measured()
    rounds = _Rounds(ctx, measured)
    rounds.warm_up()
    kinds = [rounds.alone, rounds.health, rounds.concurrent]
    for number in range(ctx.plan.latency_rounds):
        for kind in kinds if number % 2 == 0 else reversed(kinds):
            kind()
    rounds.same_user()
    return measured


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.0f}"


def _row(label: str, rounds: list[Round]) -> tuple[object, ...]:
    values = [s for r in rounds for s in r.latencies]
    statuses = sum((r.statuses for r in rounds), Counter[int]())
    p50, p99 = percentile(values, 50), percentile(values, 99)
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    return (label, len(values), _ms(values, 50), _ms(values, 99), f"{p99 / p50:.2f}", codes)


def _method(ctx: Context, measured: Measured) -> str:
    plan = ctx.plan
    return (
        f"Each of {plan.clients} users (quota 100000, plan pro) uploads the same "
        f"{plan.latency_batch_size} photos beforehand, shrunk to 504x378 JPEGs: creating a "
        "batch never reads the pixels, and small inputs keep the batches it starts from "
        f"swamping this {os.cpu_count()}-core machine. A concurrent round releases one "
        "request per user at the same instant (a thread each, behind a barrier) and times "
        "each from send to reply; a round of the trivial route sends as many "
        f"`GET {HEALTH}` (answered by the local gateway, no Lambda) the same way; the "
        "baseline sends two creates one at a time. The three kinds of round run in turn, "
        f"forward then backward, {plan.latency_rounds} times, after one unmeasured burst "
        "that starts an API Lambda environment per client; after every create the bench "
        "waits until the batches it started are finished, so each round meets an idle stack. "
        "Batches started by the first replies of a concurrent round do run while the rest "
        "of the round is served. Different users keep the per-user rate limit (basic_clean: "
        "30 creates a minute) out of the measurement; the last row is one user sending all "
        "its creates at once (every transaction debits the same account row). p99 of so few "
        "samples is close to the maximum. Creates answered with a task id their own user "
        f"cannot read: {measured.foreign} of {sum(len(r.replies) for r in measured.create)}."
    )


def run(ctx: Context) -> Section:
    measured = measure(ctx)
    create = [s for r in measured.create for s in r.latencies]
    alone = [s for r in measured.alone for s in r.latencies]
    per_round = Summary.of([median(c.latencies) / median(h.latencies)
                            for c, h in zip(measured.create, measured.health, strict=True)])
    n = ctx.plan.clients
    rows = [
        _row(f"POST {CREATE}, {n} users at once", measured.create),
        _row(f"GET {HEALTH}, {n} at once", measured.health),
        _row(f"POST {CREATE}, one at a time (baseline)", measured.alone),
        _row(f"POST {CREATE}, one user {n}x at once", [measured.same_user]),
    ]
    p50, p99 = percentile(create, 50), percentile(create, 99)
    slowdown = p50 / median(alone)
    headline = (
        f"create p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, p99/p50 = {p99 / p50:.2f} "
        f"({n} concurrent users); create p50 / trivial route p50 = {per_round.fmt(1)}; "
        f"p50 at {n} at once / p50 one at a time = {slowdown:.1f}"
    )
    body = "\n\n".join([
        table(["Requests", "n", "p50 ms", "p99 ms", "p99/p50", "HTTP status"], rows),
        f"Create p50 / trivial-route p50, per round: {per_round.fmt(1)}. Create p50 with {n} "
        f"users at once / create p50 one at a time: {slowdown:.1f}.",
        _method(ctx, measured),
    ])
    return Section("latency", "Create-batch latency", headline, body)
