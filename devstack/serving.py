"""The local stack's HTTP servers: werkzeug's, serving each connection on a pooled thread.

werkzeug's threaded server starts a thread for every connection, and it answers one request
per connection; starting a thread waits for the new thread to take the GIL, so under load the
accepting thread queued every request behind the busiest threads of the emulator.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from werkzeug.serving import ThreadedWSGIServer

# Requests run at once, at most: a Lambda invocation holds its request for as long as it runs,
# while its function's own calls come in on others. Threads start only as they are needed.
MAX_THREADS = 1024


class PooledWSGIServer(ThreadedWSGIServer):
    """``app`` on ``host:port`` (0 picks a free port) once ``serve_forever`` runs."""

    def __init__(self, host: str, port: int, app: Any, name: str) -> None:
        super().__init__(host, port, app)
        self._pool = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix=name)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self.process_request_thread, request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)

