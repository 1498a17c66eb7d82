"""Concurrent invocations in one process never see each other's request."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from devstack import powertools_threads
from tests.integration.conftest import Stack
from tests.integration.test_create_batch import images


def _event(value: str) -> dict[str, Any]:
    return {
        "version": "2.0", "routeKey": "GET /echo/{value}", "rawPath": f"/echo/{value}",
        "rawQueryString": "", "headers": {}, "isBase64Encoded": False,
        "requestContext": {"http": {"method": "GET", "path": f"/echo/{value}",
                                    "sourceIp": "127.0.0.1"}, "stage": "$default"},
    }


def test_each_thread_resolves_its_own_request() -> None:
    # Given two resolvers, as two loaded copies of a handler module would have
    powertools_threads.install()
    apps = [APIGatewayHttpResolver(), APIGatewayHttpResolver()]
    for app in apps:
        @app.get("/echo/<value>")
        def echo(value: str, app: APIGatewayHttpResolver = app) -> dict[str, str]:
            time.sleep(0.02)  # let the other threads resolve in between
            return {"value": value, "path": app.current_event.path}

    seen: dict[str, dict[str, str]] = {}

    def call(n: int) -> None:
        reply = apps[n % 2].resolve(_event(str(n)), None)
        seen[str(n)] = json.loads(reply["body"])

    # When 20 requests are resolved at once
    threads = [threading.Thread(target=call, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every reply was computed from its own request
    assert all(body["path"] == f"/echo/{value}" for value, body in seen.items())
    assert len(seen) == 20


def test_concurrent_users_get_their_own_tasks(stack: Stack) -> None:
    users = [stack.user(f"user-{n}", quota=10) for n in range(12)]
    owners: dict[str, str] = {}
    gate = threading.Barrier(len(users))

    def create(user: str) -> None:
        gate.wait()
        reply = stack.call("POST", "/api/tasks/batch", user=user, body={
            "feature_id": "basic_clean", "input_images": images(user, 1)})
        assert reply.status == 200, reply.body
        owners[user] = reply.body["data"]["task_id"]

    threads = [threading.Thread(target=create, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for user, task_id in owners.items():
        task = stack.call("GET", f"/api/tasks/{task_id}", user=user).body["data"]
        assert task["userId"] == user
        assert stack.balance(user) == 9
