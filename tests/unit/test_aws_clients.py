"""AWS clients are made on first use, once, however many threads ask at the same moment."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pixelbatch.aws import AwsClients


@pytest.fixture
def fake_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)


def test_nothing_is_made_before_first_use(fake_env: None) -> None:
    clients = AwsClients()
    assert not {"dynamodb", "s3", "events", "sfn", "_session"} & set(vars(clients))
    assert clients.s3.meta.service_model.service_name == "s3"
    assert set(vars(clients)) == {"region", "_session", "s3"}


def test_threads_starting_together_get_one_client_each(fake_env: None) -> None:
    clients = AwsClients(region="us-east-1")
    start = threading.Barrier(16)
    made: list[tuple[str, Any]] = []
    errors: list[BaseException] = []

    def first_use(name: str) -> None:
        start.wait()
        try:
            made.append((name, getattr(clients, name)))
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    names = ["dynamodb", "s3", "events", "sfn"] * 4
    threads = [threading.Thread(target=first_use, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for name in set(names):
        assert len({id(client) for n, client in made if n == name}) == 1
