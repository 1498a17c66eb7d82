"""The money rules under any interleaving of create, claim, finish, fail, finalize, retry,
cancel and reconcile, through the real services and stores on moto (in process), with the
template's own tables.

A hypothesis state machine drives the operations one at a time and checks the money rules
after every step, straight from the table rows (tests/support/money.py): one charge per item
attempt, one refund per attempt that ended failed or cancelled, balances that match the ledger,
counters that match the items, and at rest a net charge of quota_cost x successes per task.
Explicit sequences pin interleavings of interest, and a threaded test runs the operations at
once on the same tasks. Item outcomes are chosen by the test: what is under test is the money,
not the imaging.
"""

from __future__ import annotations

import contextlib
import copy
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends
from pixelbatch.aws import AwsClients
from pixelbatch.clock import now
from pixelbatch.container import build_container
from pixelbatch.contract import BatchBody, SingleBody
from pixelbatch.errors import (
    ConcurrentUpdate,
    DomainError,
    NoFailedItems,
    NotABatchTask,
    NotTaskOwner,
    PlanNotAllowed,
    QuotaInsufficient,
    RateLimited,
    StartFailed,
    StateConflict,
)
from pixelbatch.models import ItemRef
from pixelbatch.repos.catalog import CatalogStore
from pixelbatch.repos.executions import ExecutionStarter
from pixelbatch.repos.objects import ObjectStore
from pixelbatch.repos.ratelimit import RateLimitStore
from pixelbatch.repos.tasks import ItemFailureRecord, TaskStore
from pixelbatch.seed import reset_account, seed_catalog
from pixelbatch.services import processing as processing_module
from pixelbatch.services.catalog import CatalogService, RateLimiter
from pixelbatch.services.processing import Outcome, ProcessingService, output_key
from pixelbatch.services.tasks import TaskService
from pixelbatch.settings import Settings

from devstack.resources import create_bucket, create_table
from devstack.template import Template
from tests.integration.conftest import lambda_environment
from tests.support.http_events import REPO
from tests.support.money import (
    OPEN_TASK,
    UNFINISHED_ITEM,
    ItemRow,
    Snapshot,
    TaskRow,
    api_reader,
    at_rest_problems,
    attempt_problems,
    counter_problems,
    every_problem,
    expected_final_status,
    moto_reader,
    status_problems,
    take_snapshot,
    user_problems,
)

# Limited quotas so that some creations and retries are refused; "cy" is on the free plan, which
# only basic_clean allows.
USERS: dict[str, tuple[int, str]] = {"ana": (10, "pro"), "ben": (20, "pro"), "cy": (5, "free")}
FEATURE_COST: dict[str, int] = {"basic_clean": 1, "watermark": 2, "portrait_retouch": 3}
FREE_PLAN_FEATURES = frozenset({"basic_clean"})
MAX_ITEMS = 6
# Few tasks per example, so that the steps pile up on the same tasks.
MAX_TASKS = 3
# Bringing everything to rest wipes the interleavings in flight: let some pile up first.
STEPS_BETWEEN_RESTS = 8
WORKER_FAILURE = ItemFailureRecord("not_an_image", "图片格式不支持", retryable=False)
FAR_FUTURE = timedelta(days=1)
OUTPUT = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"

STATEFUL_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
    # One bug at a time, and no "explain" phase: it reruns failures under line tracing, which
    # costs minutes at this example size.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)


def stranger_to(task: TaskRow, users: Mapping[str, tuple[int, str]]) -> str:
    return next(user_id for user_id in sorted(users) if user_id != task.owner_id)


def rarely(one_in: int) -> st.SearchStrategy[bool]:
    """True about once in `one_in` draws; shrinks to False."""
    return st.integers(0, one_in - 1).map(lambda n: n == one_in - 1)


# ---------------------------------------------------------------------- the world


class RecordingStarter(ExecutionStarter):
    """Stands in for Step Functions: records starts and stops, and fails a start on request."""

    def __init__(self) -> None:
        super().__init__(None, state_machine_arn=None)
        self.started: list[tuple[str, int, tuple[ItemRef, ...]]] = []
        self.stopped: list[tuple[str, int]] = []
        self.closing: list[tuple[str, int]] = []
        self.fail_next = False

    def start(self, task_id: str, round_no: int, refs: Sequence[ItemRef]) -> None:
        self.started.append((task_id, round_no, tuple(refs)))
        if self.fail_next:
            raise RuntimeError("StartExecution: ServiceUnavailable")

    def start_closing(self, task_id: str, round_no: int, *, for_round: bool = False) -> None:
        self.closing.append((task_id, round_no))
        if self.fail_next:
            raise RuntimeError("StartExecution: ServiceUnavailable")

    def stop(self, task_id: str, round_no: int, *, cause: str) -> None:
        self.stopped.append((task_id, round_no))


@dataclass(frozen=True)
class Services:
    """What one Lambda container holds: the real stores and services, with the stub starter."""

    store: TaskStore
    tasks: TaskService
    processing: ProcessingService
    starter: RecordingStarter
    s3: Any
    dynamodb: Any
    outputs_bucket: str


def wire(settings: Settings) -> Services:
    clients = AwsClients()
    container = build_container(settings, clients)
    starter = RecordingStarter()
    tasks = TaskService(
        settings,
        tasks=container.task_store,
        accounts=container.account_store,
        catalog=CatalogService(CatalogStore(
            clients.dynamodb, features_table=settings.features_table,
            pipelines_table=settings.pipelines_table,
        )),
        limiter=RateLimiter(RateLimitStore(clients.dynamodb, table=settings.rate_limit_table)),
        executions=starter,
        objects=ObjectStore(clients.s3, presign_ttl_seconds=settings.presign_ttl_seconds),
    )
    return Services(
        container.task_store, tasks, container.processing, starter, clients.s3,
        clients.dynamodb, settings.outputs_bucket,
    )


@dataclass
class World:
    """One moto in process for the whole test, with the template's tables built and the catalog
    seeded once. `reset` gives each example that freshly built state again: building tables in
    moto costs about half a second, restoring a deep copy of moto's fresh tables a millisecond."""

    template: Template
    settings: Settings
    services: Services
    initial: dict[str, int]
    _pristine: dict[tuple[tuple[str, tuple[int, str]], ...], Any]

    @classmethod
    def build(cls, template: Template) -> World:
        settings = Settings.from_env()
        dynamodb = boto3.client("dynamodb")
        for table in template.tables:
            create_table(dynamodb, table)
        for bucket in template.buckets:
            create_bucket(boto3.client("s3"), bucket, template.naming.region)
        seed_catalog(Path(REPO / "catalog"), settings.features_table, settings.pipelines_table)
        world = cls(template, settings, wire(settings), {}, {})
        world._pristine[()] = copy.deepcopy(world._backend.tables)
        return world

    @property
    def _backend(self) -> Any:
        return dynamodb_backends[DEFAULT_ACCOUNT_ID][self.template.naming.region]

    def reset(self, users: Mapping[str, tuple[int, str]] = USERS) -> None:
        """Fresh tables holding the catalog and these users (each with their one grant). S3
        keeps earlier examples' outputs, under task ids no later example uses."""
        key = tuple(sorted(users.items()))
        if key not in self._pristine:
            self._backend.tables = copy.deepcopy(self._pristine[()])
            for user_id, (quota, plan) in users.items():
                reset_account(user_id, quota, plan)
            self._pristine[key] = copy.deepcopy(self._backend.tables)
        self._backend.tables = copy.deepcopy(self._pristine[key])
        self.initial = {user_id: quota for user_id, (quota, _) in users.items()}
        starter = self.services.starter
        starter.started.clear()
        starter.stopped.clear()
        starter.fail_next = False

    def snapshot(self) -> Snapshot:
        return take_snapshot(moto_reader(self.template.naming.region), self.settings)

    def api_snapshot(self) -> Snapshot:
        return take_snapshot(api_reader(self.services.dynamodb), self.settings)

    def urls(self, user_id: str, count: int) -> list[str]:
        bucket = self.settings.uploads_bucket
        return [f"s3://{bucket}/uploads/{user_id}/image-{i}.jpg" for i in range(count)]


@pytest.fixture
def world(template: Template, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    lambda_environment(template, monkeypatch)
    with mock_aws():
        built = World.build(template)
        built.reset()
        yield built


# ---------------------------------------------------------------------- worker moves


def finish(services: Services, task_id: str, ref: ItemRef, *, success: bool) -> bool:
    """What the item worker does once it holds an attempt: write the output under the
    attempt's deterministic key and count it, or record the failure and refund it. False when
    the attempt is no longer its own. (What the worker does with a losing output is not money;
    see test_a_duplicate_delivery_keeps_the_winners_output.)"""
    if success:
        key = output_key(task_id, ref, "jpg")
        services.s3.put_object(
            Bucket=services.outputs_bucket, Key=key, Body=OUTPUT, ContentType="image/jpeg"
        )
        return services.store.complete_item(task_id, ref, output_key=key, ext="jpg")
    task = services.store.get(task_id)
    assert task is not None
    return services.store.fail_item(task, ref, WORKER_FAILURE)


def drive_to_rest(world: World, snap: Snapshot, outcomes: int) -> Snapshot:
    """Every unfinished item runs to the end (bit k of `outcomes` says whether the k-th one
    succeeds), then every task not yet finished is finalized. Returns the state at rest, after
    checking it."""
    services, k = world.services, 0
    unsettled = sorted(
        task.task_id for task in snap.tasks.values()
        if task.unfinished or task.status in OPEN_TASK or task.open_shard
    )
    for task_id in unsettled:
        for item in snap.tasks[task_id].unfinished:
            ref = ItemRef(item.index, item.attempt)
            if item.status == "pending":
                assert services.store.claim_item(task_id, ref), (task_id, ref)
            assert finish(services, task_id, ref, success=bool(outcomes >> k & 1))
            k += 1
    for task_id in unsettled:
        assert services.processing.finalize(task_id).status != "waiting", task_id
    rest = world.snapshot()
    problems = at_rest_problems(rest) + every_problem(rest, world.initial)
    assert not problems, "\n".join(problems)
    return rest


# ---------------------------------------------------------------------- the state machine


class MoneyMachine(RuleBasedStateMachine):
    """One operation per step, in whatever order hypothesis picks; the rows are checked after
    each. Each rule also states what the operation must have answered given the state before
    it (read from the previous step's snapshot: steps run one at a time)."""

    tasks = Bundle("tasks")

    def __init__(self, world: World, users: Mapping[str, tuple[int, str]] = USERS) -> None:
        super().__init__()
        self.world = world
        self.services = world.services
        self.users = users
        world.reset(users)
        fresh = world.snapshot()
        assert not fresh.tasks and {row.kind for row in fresh.ledger} == {"grant"}
        self._snap: Snapshot | None = fresh
        self._settled = False
        self._created = 0
        self._steps_since_rest = 0

    # -- helpers

    def _before(self) -> Snapshot:
        """The state before this step; the step is about to change it."""
        snap = self._snap or self.world.snapshot()
        self._snap = None
        self._settled = False
        self._steps_since_rest += 1
        return snap

    @staticmethod
    def _attempt(task: TaskRow, index: int, stale: bool) -> tuple[ItemRow, ItemRef]:
        """The item at `index` (modulo the batch size) and either its current attempt or one
        that is not current any more (or not yet)."""
        item = task.items[index % len(task.items)]
        attempt = item.attempt
        if stale:
            attempt = attempt - 1 if attempt > 1 else attempt + 1
        return item, ItemRef(item.index, attempt)

    # -- creation

    @precondition(lambda self: self._created < MAX_TASKS)
    @rule(
        target=tasks,
        user=st.sampled_from(sorted(USERS)),
        feature=st.sampled_from(sorted(FEATURE_COST)),
        count=st.integers(1, MAX_ITEMS),
        single=rarely(5),
        start_fails=rarely(5),
    )
    def create(
        self, user: str, feature: str, count: int, single: bool, start_fails: bool
    ) -> MultipleResults[str]:
        before = self._before()
        urls = self.world.urls(user, 1 if single else count)
        body: BatchBody | SingleBody = (
            SingleBody(feature_id=feature, input_image=urls[0]) if single
            else BatchBody(feature_id=feature, input_images=urls)
        )
        price = FEATURE_COST[feature] * len(urls)
        allowed = self.users[user][1] != "free" or feature in FREE_PLAN_FEATURES
        starts = len(self.services.starter.started)
        self.services.starter.fail_next = start_fails
        try:
            task = self.services.tasks.create(user, body)
        except PlanNotAllowed:
            assert not allowed
            return multiple()
        except RateLimited:
            return multiple()
        except QuotaInsufficient:
            assert allowed and before.balances[user] < price, (before.balances[user], price)
            return multiple()
        except StartFailed:
            # The charge has been undone (the invariants say whether it was, exactly)
            assert start_fails and allowed and before.balances[user] >= price
            assert len(self.services.starter.started) == starts + 1
            self._created += 1
            return multiple(self.services.starter.started[-1][0])
        finally:
            self.services.starter.fail_next = False
        assert allowed and not start_fails and before.balances[user] >= price
        assert self.services.starter.started[-1] == (
            task.task_id, 1, tuple(ItemRef(i, 1) for i in range(len(urls)))
        )
        self._created += 1
        return multiple(task.task_id)

    # -- the item worker and the state machine's Catch

    @rule(task=tasks, index=st.integers(0, MAX_ITEMS - 1), succeeds=st.booleans())
    def work(self, task: str, index: int, succeeds: bool) -> None:
        """The item worker's usual path for the current attempt: claim it if pending (carry on
        with it if a redelivery finds it processing), then finish it; skip an item that is
        not unfinished."""
        before = self._before().tasks[task]
        item, ref = self._attempt(before, index, stale=False)
        if item.status == "pending":
            assert self.services.store.claim_item(task, ref), item
        elif item.status != "processing":
            assert not self.services.store.claim_item(task, ref), item
            return
        assert finish(self.services, task, ref, success=succeeds), item

    @rule(task=tasks, index=st.integers(0, MAX_ITEMS - 1))
    def claim(self, task: str, index: int) -> None:
        before = self._before().tasks[task]
        item, ref = self._attempt(before, index, stale=False)
        claimed = self.services.store.claim_item(task, ref)
        assert claimed == (item.status == "pending"), item

    @rule(task=tasks, index=st.integers(0, MAX_ITEMS - 1), stale=rarely(4))
    def complete(self, task: str, index: int, stale: bool) -> None:
        """Also a duplicate or late worker: one that checked its attempt while it was still
        processing, and finishes after someone else moved it on."""
        before = self._before().tasks[task]
        item, ref = self._attempt(before, index, stale)
        done = finish(self.services, task, ref, success=True)
        assert done == (item.status == "processing" and not stale), (item, ref)

    @rule(task=tasks, index=st.integers(0, MAX_ITEMS - 1), stale=rarely(4),
          via_catch=st.booleans())
    def fail(self, task: str, index: int, stale: bool, via_catch: bool) -> None:
        """The worker's own failure (fail_item) or the Catch's record_failure, which may come
        for an item no worker ever claimed."""
        before = self._before().tasks[task]
        item, ref = self._attempt(before, index, stale)
        if via_catch:
            outcome = self.services.processing.record_failure(task, ref, "States.Timeout")
            failed = outcome.detail != "skipped"
            assert not failed or outcome == Outcome("failed", "timeout"), outcome
        else:
            failed = finish(self.services, task, ref, success=False)
        assert failed == (item.status in UNFINISHED_ITEM and not stale), (item, ref)

    # -- the batch

    @rule(task=tasks, twice=st.booleans())
    def finalize(self, task: str, twice: bool) -> None:
        before = self._before().tasks[task]
        outcome = self.services.processing.finalize(task)
        if twice:
            assert self.services.processing.finalize(task) == outcome
        if before.unfinished:
            assert outcome.status == "waiting", (outcome, before)
            return
        want = "cancelled" if before.status == "cancelled" else expected_final_status(before.items)
        assert outcome.status == want, (outcome, before)
        after = self.world.snapshot().tasks[task]
        assert after.status == want, (after, before)

    @rule(task=tasks, start_fails=rarely(3), by_stranger=rarely(8))
    def user_retries(self, task: str, start_fails: bool, by_stranger: bool) -> None:
        snap = self._before()
        before = snap.tasks[task]
        if by_stranger:
            with pytest.raises(NotTaskOwner):
                self.services.tasks.retry_failed(stranger_to(before, self.users), task)
            return
        failed = [item for item in before.items if item.status == "failed"]
        price = before.quota_cost * len(failed)
        self.services.starter.fail_next = start_fails
        try:
            result = self.services.tasks.retry_failed(before.owner_id, task)
        except NotABatchTask:
            assert not before.is_batch
            return
        except StateConflict:
            assert before.is_batch and before.status == "cancelled", before
            return
        except NoFailedItems:
            assert before.is_batch and before.status != "cancelled" and not failed, before
            return
        except QuotaInsufficient:
            assert failed and snap.balances[before.owner_id] < price, before
            return
        except StartFailed:
            assert start_fails and failed and snap.balances[before.owner_id] >= price, before
            return
        finally:
            self.services.starter.fail_next = False
        assert before.is_batch and before.status != "cancelled" and not start_fails
        assert (result.count, result.quota_cost) == (len(failed), price)
        assert self.services.starter.started[-1] == (
            task, before.round + 1, tuple(ItemRef(i.index, i.attempt + 1) for i in failed)
        )

    @rule(task=tasks, by_stranger=rarely(8), close_fails=rarely(4))
    def user_cancels(self, task: str, by_stranger: bool, close_fails: bool) -> None:
        """A closing execution that cannot start leaves the task listed for the reconciler."""
        before = self._before().tasks[task]
        if by_stranger:
            with pytest.raises(NotTaskOwner):
                self.services.tasks.cancel(stranger_to(before, self.users), task)
            return
        self.services.starter.fail_next = close_fails
        try:
            refunded = self.services.tasks.cancel(before.owner_id, task)
        except StateConflict:
            assert before.status not in OPEN_TASK, before
            return
        finally:
            self.services.starter.fail_next = False
        assert before.status in OPEN_TASK, before
        assert refunded == before.quota_cost * len(before.unfinished), (refunded, before)
        # Its stopped rounds never finalize: a closing execution does, for the ZIP
        assert self.services.starter.closing[-1] == (task, before.round)

    # -- everything runs to the end

    @precondition(lambda self: self._created > 0 and self._steps_since_rest >= STEPS_BETWEEN_RESTS)
    @rule(by_reconciler=st.booleans(), outcomes=st.integers(0, 2**16 - 1))
    def settle_everything(self, by_reconciler: bool, outcomes: int) -> None:
        """Either the workers finish whatever is unfinished (bit k of `outcomes`: does the
        k-th succeed) and every task is finalized; or every execution died, and past the
        deadline the reconciler settles what is left as failed and refunded, and finalizes."""
        before = self._before()
        self._steps_since_rest = 0
        if not by_reconciler:
            drive_to_rest(self.world, before, outcomes)
            return
        open_tasks = [t for t in before.tasks.values() if t.open_shard]
        report = self.services.processing.reconcile(now() + FAR_FUTURE)
        after = self.world.snapshot()
        left = {t.task_id: (t.status, [i.status for i in t.items])
                for t in after.tasks.values() if t.unfinished}
        assert not left, f"unfinished items the reconciler did not settle: {left}"
        assert report.settled_items == sum(len(t.unfinished) for t in open_tasks), report
        assert report.finalized_tasks == len(open_tasks), report
        problems = at_rest_problems(after)
        assert not problems, "\n".join(problems)

    # -- after every step

    @invariant()
    def money_rules_hold(self) -> None:
        snap = self.world.snapshot()
        problems = every_problem(snap, self.world.initial)
        assert not problems, "\n".join(problems)
        self._snap = snap
        self._settled = True

    def teardown(self) -> None:
        # Only when the last step and its checks passed: otherwise that failure is the report.
        if self._settled:
            drive_to_rest(self.world, self._before(), outcomes=2**16 - 1)


def test_money_rules_hold_under_any_interleaving(world: World) -> None:
    run_state_machine_as_test(lambda: MoneyMachine(world), settings=STATEFUL_SETTINGS)


# ---------------------------------------------------------------------- explicit sequences


def play(machine: MoneyMachine, steps: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Run rules in this order, checking the invariants after each as the state machine does;
    a `task` argument that is an int names the n-th task created. Returns the task ids."""
    created: list[str] = []
    for name, arguments in steps:
        if isinstance(arguments.get("task"), int):
            arguments = {**arguments, "task": created[arguments["task"]]}
        result = getattr(machine, name)(**arguments)
        if isinstance(result, MultipleResults):
            created.extend(result.values)
        machine.money_rules_hold()
    machine.teardown()
    return created


def test_late_and_stale_finishers_around_a_retry_and_a_cancel(world: World) -> None:
    # Given a 3-image batch whose item 0 failed on its first attempt and was retried
    machine = MoneyMachine(world)
    [task_id] = play(machine, [
        ("create", {"user": "ben", "feature": "portrait_retouch", "count": 3, "single": False,
                    "start_fails": False}),
        ("fail", {"task": 0, "index": 0, "stale": False, "via_catch": True}),
        ("work", {"task": 0, "index": 1, "succeeds": True}),
        ("user_retries", {"task": 0, "start_fails": False, "by_stranger": False}),
        # When the first attempt's Catch arrives late, the second attempt is claimed, the user
        # cancels, and the second attempt's worker finishes after the cancel
        ("fail", {"task": 0, "index": 0, "stale": True, "via_catch": True}),
        ("claim", {"task": 0, "index": 0}),
        ("finalize", {"task": 0, "twice": False}),
        ("user_cancels", {"task": 0, "by_stranger": False, "close_fails": False}),
        ("complete", {"task": 0, "index": 0, "stale": False}),
        ("finalize", {"task": 0, "twice": True}),
    ])
    # Then only item 1's success stays charged: 3 charged twice for item 0, refunded twice
    rest = world.snapshot()
    assert rest.tasks[task_id].status == "cancelled"
    assert [item.status for item in rest.tasks[task_id].items] == [
        "cancelled", "success", "cancelled"]
    assert rest.net(task_id=task_id) == 3 and rest.balances["ben"] == USERS["ben"][0] - 3


def test_a_failed_start_on_creation_refunds_everything(world: World) -> None:
    # Given a creation whose execution start fails, a retry, and then a reconciler run
    machine = MoneyMachine(world)
    [task_id] = play(machine, [
        ("create", {"user": "ana", "feature": "basic_clean", "count": 4, "single": False,
                    "start_fails": True}),
        ("user_retries", {"task": 0, "start_fails": False, "by_stranger": False}),
        ("settle_everything", {"by_reconciler": True, "outcomes": 0}),
    ])
    # Then nothing stays charged: no image of the batch ever succeeded
    rest = world.snapshot()
    assert rest.net(task_id=task_id) == 0 and rest.balances["ana"] == USERS["ana"][0]


def test_the_largest_batch_retries_and_cancels_across_transaction_chunks(world: World) -> None:
    # Given a 50-image batch whose 45 last images failed, and were retried in one transaction
    machine = MoneyMachine(world, users={"ana": (10, "pro"), "ben": (200, "pro")})
    create = {"user": "ben", "feature": "basic_clean", "count": 50, "single": False,
              "start_fails": False}
    first_five = [("work", {"task": 0, "index": i, "succeeds": True}) for i in range(5)]
    the_rest_fail = [("fail", {"task": 0, "index": i, "stale": False, "via_catch": i % 2 == 0})
                     for i in range(5, 50)]
    retry = ("user_retries", {"task": 0, "start_fails": False, "by_stranger": False})
    # When 3 of the retried images are done and the user cancels the 42 others (two chunks)
    redone = [("work", {"task": 0, "index": i, "succeeds": i != 6}) for i in (5, 6, 7)]
    cancel = ("user_cancels", {"task": 0, "by_stranger": False, "close_fails": False})
    [task_id] = play(machine, [
        ("create", create), *first_five, *the_rest_fail, retry, *redone, cancel,
        ("finalize", {"task": 0, "twice": False}),
    ])
    # Then 7 images are paid for, once each
    rest = world.snapshot()
    task = rest.tasks[task_id]
    assert (task.status, task.batch_success, task.batch_failed, task.batch_cancelled) == (
        "cancelled", 7, 1, 42)
    assert rest.net(task_id=task_id) == 7 and rest.balances["ben"] == 200 - 7


def test_a_failed_retry_start_still_zips_the_successes_of_the_round_before(
    world: World,
) -> None:
    # Given ben's 2-image batch that failed whole, was retried, and whose round 2 has one
    # success and one failure, with round 2's Finalize already past (it found round 3 pending)
    machine = MoneyMachine(world)
    [task_id] = play(machine, [
        ("create", {"user": "ben", "feature": "basic_clean", "count": 2, "single": False,
                    "start_fails": False}),
        ("work", {"task": 0, "index": 0, "succeeds": False}),
        ("work", {"task": 0, "index": 1, "succeeds": False}),
        ("finalize", {"task": 0, "twice": False}),
        ("user_retries", {"task": 0, "start_fails": False, "by_stranger": False}),
        ("work", {"task": 0, "index": 0, "succeeds": True}),
        ("work", {"task": 0, "index": 1, "succeeds": False}),
        # When ben retries image 1 and Step Functions refuses that start
        ("user_retries", {"task": 0, "start_fails": True, "by_stranger": False}),
    ])
    # Then a closing execution of round 3 was asked to finalize it (until one does, it stays
    # listed for the reconciler), and at rest it is a partial success with its ZIP (play ends
    # by driving it to rest and checking that), image 0 paid for once
    assert world.services.starter.closing[-1] == (task_id, 3)
    rest = world.snapshot()
    assert rest.tasks[task_id].status == "partial_success" and rest.tasks[task_id].zipped
    assert rest.balances["ben"] == USERS["ben"][0] - 1


def _batch_with_a_failed_retry_start(world: World) -> tuple[str, Snapshot]:
    """ben's 2-image batch: item 0 failed (the Catch recorded it) while item 1 is still
    pending in round 1; ben retries item 0 and Step Functions refuses the start."""
    services = world.services
    task = services.tasks.create(
        "ben", BatchBody(feature_id="basic_clean", input_images=world.urls("ben", 2))
    )
    services.processing.record_failure(task.task_id, ItemRef(0, 1), "States.Timeout")
    services.starter.fail_next = True
    with pytest.raises(StartFailed):
        services.tasks.retry_failed("ben", task.task_id)
    services.starter.fail_next = False
    return task.task_id, world.snapshot()


def test_a_failed_retry_start_leaves_the_running_round_open(world: World) -> None:
    # Given a retry whose start failed while round 1 still has item 1 to run
    task_id, snap = _batch_with_a_failed_retry_start(world)
    task = snap.tasks[task_id]
    assert [item.status for item in task.items][1] == "pending"
    # Then the task is still open: round 1's finalize and the reconciler must still see it
    assert task.status in OPEN_TASK and task.open_shard, task
    assert not every_problem(snap, world.initial)


def test_the_reconciler_settles_what_a_failed_retry_start_left_running(world: World) -> None:
    # Given a retry whose start failed while round 1 still has item 1 to run
    task_id, _ = _batch_with_a_failed_retry_start(world)
    # When round 1's execution dies too, and the reconciler runs past the deadline
    world.services.processing.reconcile(now() + FAR_FUTURE)
    # Then item 1 is settled and refunded like any stuck item, and ben has his quota back
    rest = world.snapshot()
    assert [item.status for item in rest.tasks[task_id].items] == ["failed", "failed"], rest
    assert rest.balances["ben"] == USERS["ben"][0]
    assert not at_rest_problems(rest)


def test_the_reconciler_settles_what_an_interrupted_cancel_left_unfinished(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given ben's 3-image batch with image 0 done
    services = world.services
    task = services.tasks.create(
        "ben", BatchBody(feature_id="basic_clean", input_images=world.urls("ben", 3))
    )
    assert services.store.claim_item(task.task_id, ItemRef(0, 1))
    assert finish(services, task.task_id, ItemRef(0, 1), success=True)
    # When the cancel marks the task cancelled, then its refund transaction meets contention
    # beyond its retry budget (the caller gets a 409, a second cancel a "task has ended" 409)
    def contended(*_: Any, **__: Any) -> list[ItemRef]:
        raise ConcurrentUpdate()

    monkeypatch.setattr(services.store, "cancel_items", contended)
    with pytest.raises(ConcurrentUpdate):
        services.tasks.cancel("ben", task.task_id)
    monkeypatch.undo()
    with pytest.raises(StateConflict):
        services.tasks.cancel("ben", task.task_id)
    # And the execution dies, and the reconciler runs past the deadline
    services.processing.reconcile(now() + FAR_FUTURE)
    # Then the two unfinished images are cancelled and refunded, as the cancel meant
    rest = world.snapshot()
    statuses = [item.status for item in rest.tasks[task.task_id].items]
    assert statuses == ["success", "cancelled", "cancelled"], rest.tasks[task.task_id]
    assert rest.balances["ben"] == USERS["ben"][0] - 1
    assert not at_rest_problems(rest)


def test_a_duplicate_delivery_keeps_the_winners_output(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 1-image batch of a real photo
    services, settings_ = world.services, world.settings
    photo = REPO / "tests/fixtures/corpus/photos/rocket.jpg"
    key = f"uploads/ben/{photo.name}"
    services.s3.put_object(Bucket=settings_.uploads_bucket, Key=key, Body=photo.read_bytes())
    task = services.tasks.create("ben", BatchBody(
        feature_id="basic_clean", input_images=[f"s3://{settings_.uploads_bucket}/{key}"]))
    ref = ItemRef(0, 1)
    # When a second delivery of the same attempt runs to the end while the first is rendering
    render = processing_module.run_pipeline
    duplicate: list[Outcome] = []

    def rendering(*args: Any) -> Any:
        if not duplicate:
            duplicate.append(Outcome("running"))
            duplicate[0] = services.processing.process_item(task.task_id, ref)
        return render(*args)

    monkeypatch.setattr(processing_module, "run_pipeline", rendering)
    first = services.processing.process_item(task.task_id, ref)
    # Then both report success, the output is still there, and the batch finalizes with it
    assert duplicate == [Outcome("success")] and first.status == "success", (duplicate, first)
    item = services.store.get_item(task.task_id, 0)
    assert item is not None and item.output_key
    services.s3.head_object(Bucket=settings_.outputs_bucket, Key=item.output_key)
    assert services.processing.finalize(task.task_id) == Outcome("success")
    rest = world.snapshot()
    assert not at_rest_problems(rest) and rest.balances["ben"] == USERS["ben"][0] - 1


def test_a_watermark_batch_can_be_created(world: World) -> None:
    """Its schema default (opacity 0.5) and its pipeline hold a fraction, which DynamoDB
    stores only as a Decimal."""
    task = world.services.tasks.create(
        "ben", BatchBody(feature_id="watermark", input_images=world.urls("ben", 2))
    )
    assert world.snapshot().balances["ben"] == USERS["ben"][0] - 2 * 2, task


# ---------------------------------------------------------------------- threads

THREADS = 6
OPS_PER_THREAD = 24
RACES = 3
RACE_USERS: dict[str, tuple[int, str]] = {"ana": (80, "pro"), "ben": (80, "pro")}


@dataclass
class Racer:
    """One Lambda container's worth of services, doing random operations on shared tasks."""

    services: Services
    rng: random.Random
    owners: dict[str, str]
    seen: list[tuple[str, ItemRef]]

    def act(self) -> None:
        moves: list[tuple[Callable[[str], object], float]] = [
            (self.work, 6), (self.late_finish, 2), (self.catch, 2), (self.finalize, 2),
            (self.retry, 2), (self.cancel, 0.15), (self.reconcile, 0.2),
        ]
        move = self.rng.choices([m for m, _ in moves], weights=[w for _, w in moves])[0]
        # A refusal (quota, state, nothing to retry) is a legitimate answer.
        with contextlib.suppress(DomainError):
            move(self.rng.choice(sorted(self.owners)))

    def _current(self, task_id: str) -> ItemRef | None:
        item = self.services.store.get_item(task_id, self.rng.randrange(MAX_ITEMS))
        if item is None:
            return None
        ref = ItemRef(item.index, item.attempt)
        self.seen.append((task_id, ref))
        return ref

    def work(self, task_id: str) -> None:
        ref = self._current(task_id)
        if ref is not None and (
            self.services.store.claim_item(task_id, ref) or self.rng.random() < 0.3
        ):  # the claimant, or a redelivery that carries on with the same attempt
            finish(self.services, task_id, ref, success=self.rng.random() < 0.6)

    def late_finish(self, task_id: str) -> None:
        if self.seen:
            task_id, ref = self.rng.choice(self.seen)
            finish(self.services, task_id, ref, success=self.rng.random() < 0.5)

    def catch(self, task_id: str) -> None:
        ref = self._current(task_id)
        if ref is not None:
            self.services.processing.record_failure(task_id, ref, "States.Timeout")

    def finalize(self, task_id: str) -> None:
        self.services.processing.finalize(task_id)

    def retry(self, task_id: str) -> None:
        self.services.starter.fail_next = self.rng.random() < 0.3
        self.services.tasks.retry_failed(self.owners[task_id], task_id)

    def cancel(self, task_id: str) -> None:
        self.services.tasks.cancel(self.owners[task_id], task_id)

    def reconcile(self, task_id: str) -> None:
        self.services.processing.reconcile(now() + FAR_FUTURE)


def race(world: World, seed: int) -> None:
    """Two batches, THREADS racers; every racer's failure that is not a domain error counts."""
    owners = {}
    for user_id, feature in (("ana", "basic_clean"), ("ben", "portrait_retouch")):
        body = BatchBody(feature_id=feature, input_images=world.urls(user_id, MAX_ITEMS))
        owners[world.services.tasks.create(user_id, body).task_id] = user_id
    # boto3 builds clients unsafely across threads: each racer's services are built here
    racers = [Racer(wire(world.settings), random.Random(seed * 100 + n), owners, [])
              for n in range(THREADS)]
    gate = threading.Barrier(THREADS)
    crashes: list[BaseException] = []

    def run(racer: Racer) -> None:
        gate.wait()
        try:
            for _ in range(OPS_PER_THREAD):
                racer.act()
        except BaseException as crash:  # reported below, with the seed
            crashes.append(crash)

    threads = [threading.Thread(target=run, args=(racer,)) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not crashes, (seed, crashes)


@pytest.mark.parametrize("seed", range(RACES))
def test_racing_workers_retries_cancels_and_finalizes_keep_the_money_straight(
    world: World, seed: int
) -> None:
    # Given two 6-image batches
    world.reset(RACE_USERS)
    # When 6 racers at once claim, finish (also late, with stale attempts), fail, finalize,
    # retry (with failing starts), cancel and reconcile
    race(world, seed)
    # Then, once they are done, the API and moto's memory agree and every rule holds
    snap = world.api_snapshot()
    assert snap == world.snapshot()
    money = user_problems(snap, world.initial) + attempt_problems(snap) + counter_problems(snap)
    assert not money, "\n".join(money)
    statuses = status_problems(snap)
    assert not statuses, "\n".join(statuses)
    # And at rest, after the workers finish what is left, every task is settled and paid for
    drive_to_rest(world, snap, outcomes=random.Random(seed).getrandbits(2 * MAX_ITEMS))
