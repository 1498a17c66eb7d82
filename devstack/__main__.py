"""``python -m devstack``: the whole system on moto, served on http://127.0.0.1:$PORT.

Environment: PORT (HTTP API, default 3000), MOTO_PORT (moto server, default 4566); 0 picks a
free port and the ready line reports the real one. DEVSTACK_JWT_SECRET fixes the dev signing key,
DEVSTACK_TEMPLATE points at another template, DEVSTACK_SCHEDULE_SCALE shortens the periods of
Schedule events (0.01: every 5 minutes becomes every 3 s; "off" disables them). Logs go to stderr;
stdout gets one ready line.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devstack.auth import DevTokens, dev_secret
from devstack.collector import freeze_survivors_of_full_collections
from devstack.gateway import Gateway, GatewayServer, dev_authorizer
from devstack.handlers import REPO_TEMPLATE
from devstack.stack import DEFAULT_MOTO_PORT, LocalStack, StackConfig, configure_logging
from devstack.template import JwtAuthorizer, TemplateError

log = logging.getLogger("devstack")

READY_LINE = "PixelBatch local API ready at {url}"
DEFAULT_PORT = 3000


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise SystemExit(f"{name}={raw!r} is not a port number")
    return int(raw)


def _schedule_scale() -> float | None:
    raw = os.environ.get("DEVSTACK_SCHEDULE_SCALE", "1").strip().lower()
    if raw in ("off", "0", "none", ""):
        return None
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"DEVSTACK_SCHEDULE_SCALE={raw!r} is not a number or 'off'") from None


def _stop_event() -> threading.Event:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop


def _tokens(stack: LocalStack) -> DevTokens:
    authorizer = dev_authorizer(stack.template) or JwtAuthorizer(
        "devstack", "devstack", ("devstack",), "$request.header.Authorization"
    )
    return DevTokens(dev_secret(), authorizer)


def main() -> int:
    configure_logging()
    port, moto_port = _port("PORT", DEFAULT_PORT), _port("MOTO_PORT", DEFAULT_MOTO_PORT)
    template_path = Path(os.environ.get("DEVSTACK_TEMPLATE") or REPO_TEMPLATE)
    stop = _stop_event()
    try:
        config = StackConfig(
            template_path=template_path, moto_port=moto_port, schedule_scale=_schedule_scale()
        )
        stack = LocalStack(config).start()
    except (TemplateError, OSError) as exc:
        log.error("the local stack did not start: %s", exc)
        return 1
    freeze_survivors_of_full_collections()
    gateway = GatewayServer(
        Gateway(stack.template, stack.registry, _tokens(stack), stack.reset_account), port=port
    )
    try:
        try:
            gateway.start()
        except OSError as exc:
            log.error("the API cannot listen on 127.0.0.1:%d: %s", port, exc.strerror)
            return 1
        template = stack.template
        log.info(
            "moto on %s; %d tables, %d buckets, %d functions, %d routes, %d schedules, "
            "%d state machines; started in %.2f s",
            stack.endpoint_url, len(template.tables), len(template.buckets),
            len(template.functions), len(template.routes), len(template.schedules),
            len(template.state_machines), stack.startup_seconds,
        )
        print(READY_LINE.format(url=gateway.base_url), flush=True)
        while not stop.wait(0.5):
            pass
        log.info("stopping")
    finally:
        gateway.stop()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
