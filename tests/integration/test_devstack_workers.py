"""Each Lambda execution environment is an OS process of its own, as on AWS: exactly its
function's environment, its own /tmp, module state kept while warm, at most the function's
concurrency at once, and killed when it runs past its Timeout."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.handlers import context_for
from devstack.iam import Credentials
from devstack.template import Function, load_template
from devstack.workers import BACKGROUND_NICE, FunctionError, WorkerPool, runtime_environment

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.11
    Timeout: 5
    Environment:
      Variables:
        SHARED: from-globals
Resources:
  Probe:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/probe/
      Handler: app.handler
      ReservedConcurrentExecutions: 2
      Environment:
        Variables:
          OWN: probe-only
  Other:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/probe/
      Handler: app.handler
      Environment:
        Variables:
          OTHER_ONLY: not-for-probe
"""

HANDLER = '''
import os, sys, tempfile, time

INVOCATIONS = 0  # module state: kept while the environment stays warm


def handler(event, context):
    global INVOCATIONS
    INVOCATIONS += 1
    time.sleep(event.get("sleep", 0))
    ballast = bytearray(b"x") * (event.get("allocate_mb", 0) << 20)  # written: resident
    if event.get("fail"):
        raise KeyError("boom")
    marker = os.path.join(tempfile.gettempdir(), "marker")
    seen_before = os.path.exists(marker)
    open(marker, "w").close()
    return {"pid": os.getpid(), "env": dict(os.environ), "path": sys.path,
            "tmp": tempfile.gettempdir(), "invocations": INVOCATIONS,
            "marker_seen": seen_before, "remaining": context.get_remaining_time_in_millis(),
            "allocated": len(ballast)}
'''

CREDENTIALS = Credentials("ASIATESTTESTTESTTEST", "secret", "token")


def _probe_function(tmp_path: Path, handler_source: str) -> Function:
    """The template's Probe function, its code being ``handler_source``."""
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    code = tmp_path / "functions" / "probe"
    code.mkdir(parents=True)
    (code / "app.py").write_text(handler_source)
    return load_template(tmp_path / "template.yaml").function("Probe")


def _environment(function: Function, region: str = "us-east-1") -> dict[str, str]:
    return runtime_environment(function, "http://127.0.0.1:1", region, CREDENTIALS.environment())


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[tuple[Function, WorkerPool]]:
    function = _probe_function(tmp_path, textwrap.dedent(HANDLER))
    pool = WorkerPool(function, _environment(function, "eu-west-1"),
                      function.reserved_concurrency or 10)
    yield function, pool
    pool.close()


def _invoke(function: Function, pool: WorkerPool, event: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    result: dict[str, Any] = pool(event or {}, context_for(function))
    return result


def test_the_environment_holds_exactly_the_function_s_variables(
        probe: tuple[Function, WorkerPool]) -> None:
    function, pool = probe
    env = _invoke(function, pool)["env"]
    assert env["OWN"] == "probe-only" and env["SHARED"] == "from-globals"
    assert "OTHER_ONLY" not in env, "another function's variable leaked in"
    assert env["AWS_ACCESS_KEY_ID"] == CREDENTIALS.access_key_id
    assert env["AWS_SESSION_TOKEN"] == CREDENTIALS.session_token
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == function.name
    test_only = {"PYTEST_CURRENT_TEST", "DEVSTACK_IAM_RECORD", "VIRTUAL_ENV"}
    assert not test_only & set(env), "the test runner's variables leaked in"


def test_nothing_of_the_local_stack_is_importable(probe: tuple[Function, WorkerPool]) -> None:
    function, pool = probe
    path = _invoke(function, pool)["path"]
    assert path[0] == str(function.code_uri)
    repo = str(Path(__file__).resolve().parents[2])
    assert repo not in path and not any(p.endswith("devstack/lambda_runtime") for p in path)


def test_a_warm_environment_keeps_module_state_and_its_tmp(
        probe: tuple[Function, WorkerPool]) -> None:
    function, pool = probe
    first, second = _invoke(function, pool), _invoke(function, pool)
    assert second["pid"] == first["pid"]
    assert (first["invocations"], second["invocations"]) == (1, 2)
    assert (first["marker_seen"], second["marker_seen"]) == (False, True)
    assert pool.environments == 1


def test_each_invocation_logs_the_platform_s_report_line(
        probe: tuple[Function, WorkerPool], capfd: pytest.CaptureFixture[str]) -> None:
    function, pool = probe
    contexts = [context_for(function), context_for(function)]
    for context in contexts:
        pool({}, context)
    deadline, err, reports = time.monotonic() + 5, "", []
    while len(reports) < 2 and time.monotonic() < deadline:
        err += capfd.readouterr().err  # the line follows the reply: it may still be on its way
        reports = [line for line in err.split("\n")[:-1] if line.startswith("REPORT ")]
        time.sleep(0.05)
    cold, warm = reports
    assert f"RequestId: {contexts[0].aws_request_id}\tDuration: " in cold
    assert f"Memory Size: {function.memory_size} MB\tMax Memory Used: " in cold
    assert "Init Duration: " in cold and "Init Duration" not in warm
    assert f"RequestId: {contexts[1].aws_request_id}" in warm


def test_concurrent_invocations_get_their_own_process_and_tmp_up_to_the_limit(
        probe: tuple[Function, WorkerPool]) -> None:
    function, pool = probe
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def call() -> None:
        result = _invoke(function, pool, {"sleep": 0.5})
        with lock:
            results.append(result)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    # ReservedConcurrentExecutions: 2 -> never more than two environments
    assert len({r["pid"] for r in results}) == 2 == pool.environments
    assert len({r["tmp"] for r in results}) == 2


def test_errors_come_back_as_the_runtime_payload(probe: tuple[Function, WorkerPool]) -> None:
    function, pool = probe
    with pytest.raises(FunctionError) as raised:
        _invoke(function, pool, {"fail": True})
    payload = json.loads(raised.value.payload)
    assert raised.value.error_type == payload["errorType"] == "KeyError"
    assert any("raise KeyError" in frame for frame in payload["stackTrace"])
    assert _invoke(function, pool)["invocations"] == 2, "an error keeps the environment"


def test_a_timeout_kills_the_process_and_the_next_call_is_a_cold_start(
        probe: tuple[Function, WorkerPool]) -> None:
    function, pool = probe
    pid = _invoke(function, pool)["pid"]
    started = time.monotonic()
    with pytest.raises(FunctionError) as raised:
        _invoke(function, pool, {"sleep": 60})
    assert raised.value.error_type == "Sandbox.Timedout"
    assert "Task timed out after 5.00 seconds" in json.loads(raised.value.payload)["errorMessage"]
    assert time.monotonic() - started < 30
    assert not _alive(pid), "the timed-out environment's process must be gone"
    fresh = _invoke(function, pool)
    assert fresh["pid"] != pid and fresh["invocations"] == 1


def test_going_past_memory_size_ends_the_environment_with_out_of_memory(
        probe: tuple[Function, WorkerPool]) -> None:
    function, pool = probe
    pid = _invoke(function, pool)["pid"]
    with pytest.raises(FunctionError) as raised:
        _invoke(function, pool, {"allocate_mb": function.memory_size + 32})
    assert raised.value.error_type == "Runtime.OutOfMemory"
    assert "signal: killed" in json.loads(raised.value.payload)["errorMessage"]
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert _invoke(function, pool)["invocations"] == 1, "the next call is a cold start"


def test_an_import_error_is_the_runtime_s_init_error(tmp_path: Path) -> None:
    function = _probe_function(tmp_path, "import module_that_is_not_there\n")
    pool = WorkerPool(function, _environment(function))
    try:
        with pytest.raises(FunctionError) as raised:
            pool({}, context_for(function))
        assert raised.value.error_type == "Runtime.ImportModuleError"
        assert "module_that_is_not_there" in raised.value.payload
    finally:
        pool.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_background_function_yields_the_cpu(tmp_path: Path) -> None:
    # On AWS environments never share a CPU; here state machine steps get what the API leaves
    function = _probe_function(tmp_path, textwrap.dedent(HANDLER))
    pool = WorkerPool(function, _environment(function), background=True)
    try:
        pid = pool({}, context_for(function))["pid"]
        assert os.getpriority(os.PRIO_PROCESS, pid) == BACKGROUND_NICE
        if hasattr(os, "SCHED_IDLE"):
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
    finally:
        pool.close()
