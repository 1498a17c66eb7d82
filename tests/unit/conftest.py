"""Unit tests never reach the network; the few that drive a loopback server opt in with
`pytest.mark.enable_socket` (and then may connect only to 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(scope="session", autouse=True)
def _tracer_ready() -> None:
    """Powertools' Tracer opens the X-Ray daemon's UDP socket when it is created (it sends
    nothing unless a trace is recorded); handlers create it on their first traced call, so
    create it here, before any test blocks sockets."""
    from pixelbatch.observability import tracer

    assert tracer.tracer is not None


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("enable_socket"):
        yield
        return
    disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        enable_socket()
