"""Serve an ASGI app on 127.0.0.1 in a background thread for tests.

The fakes must be reachable by the *real* SDKs and Pipecat services, which
open their own sockets, so an in-process ASGI transport is not enough: we run
a genuine uvicorn server on an ephemeral port. Running it in its own thread
(with its own event loop) means it works the same from sync and async tests.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["ServedApp"]


class ServedApp:
    """Run ``app`` with uvicorn on ``127.0.0.1:<ephemeral port>``.

    Use ``with ServedApp(app) as s:`` (sync or async tests) or
    ``async with ServedApp(app) as s:`` (async tests; stopping then does not
    block the test's event loop, so clients on that loop can finish their
    close handshakes while the server shuts down).
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        graceful_timeout: float = 2.0,
        start_timeout: float = 10.0,
        lifespan: str = "off",
        port: int = 0,
    ) -> None:
        self.app = app
        self._lifespan = lifespan  # "on" for apps that set themselves up at start-up
        self._requested_port = port  # 0: any free port
        self.host = host
        self._graceful_timeout = graceful_timeout
        self._start_timeout = start_timeout
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.port: int = 0

    # -- addresses -------------------------------------------------------
    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:P`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:P`` (no trailing slash)."""
        return f"ws://{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "ServedApp":
        """Bind, start serving and return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("ServedApp already started")
        # Binding ourselves gives us the port before uvicorn starts, with no race.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,  # don't reconfigure global logging under pytest
            log_level="warning",
            access_log=False,
            loop="asyncio",
            lifespan=self._lifespan,
            timeout_graceful_shutdown=max(1, int(self._graceful_timeout)),
            ws_ping_interval=None,  # deterministic: no server-initiated pings
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, name=f"ServedApp:{self.port}", daemon=True
        )
        self._thread.start()
        self._wait_started()
        return self

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc

    def _wait_started(self) -> None:
        assert self._server is not None and self._thread is not None
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("server did not start in time")
            time.sleep(0.005)

    def stop(self) -> None:
        """Ask uvicorn to exit; force it if open connections keep it alive."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(self._graceful_timeout + 1.0)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5.0)
        self._thread = None
        self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def astop(self) -> None:
        """Stop without blocking the calling event loop."""
        await asyncio.to_thread(self.stop)

    # -- context managers ------------------------------------------------
    def __enter__(self) -> "ServedApp":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> "ServedApp":
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()
