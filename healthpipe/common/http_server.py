"""An HTTP/1.1 server on one event loop in a background thread (uvicorn, with httptools parsing), for an ASGI app.

Why an event loop rather than http.server's thread per connection: a request's work here is Python under one GIL.
With a thread per connection, 32 clients meant 32 threads taking turns on the GIL in whatever order the OS woke
them, and a request could wait out many turns: p99 4-6x the p50 (B8). One loop answers requests one at a time,
in the order they arrive, so the wait is the queue ahead and no more. Work that waits on the network (a read from
InfluxDB) must not run on the loop: the app hands it to a thread pool.

A client's request head must arrive within observability.CLIENT_TIMEOUT_SECONDS of the connection (or of the last
answer on it): uvicorn itself times out only an idle kept-alive connection, and a client that sends half a request
line, or a byte a second, would hold its connection for ever.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from healthpipe.common import observability

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

BACKLOG = 128  # the listen queue: many clients connecting at once must not overflow it into SYN retries (1 s)


class ClientTimeout(Exception):
    """The client did not send its request (head or body) within observability.CLIENT_TIMEOUT_SECONDS."""


class BodyTooLarge(Exception):
    """The request body is over the app's limit."""


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head is not complete in time."""

    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this kept-alive connection: the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(observability.CLIENT_TIMEOUT_SECONDS, self._too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket made with proto IPPROTO_TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    whose proto says TCP, and socket.create_server's say 0. With Nagle on, an answer's head and body (two writes)
    waited for the client's delayed ACK: 44 ms a request on a kept-alive connection."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         proto=socket.IPPROTO_TCP)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class BackgroundHTTPServer:
    """Serve `app` on host:port (0: any free port) from a thread of its own; https when given a certificate.

    The socket is bound here, so `port` is known (and connections queue) before `start`."""

    def __init__(self, app: App, host: str, port: int, *, name: str, tls_cert_file: str | Path | None = None,
                 tls_key_file: str | Path | None = None):
        self.name = name
        self.socket = _listen(host, port)
        tls = bool(tls_cert_file and tls_key_file)  # Python's server context (3.10+) refuses older than TLS 1.2
        config = uvicorn.Config(app, interface="asgi3", http=HeadDeadlineProtocol, loop="asyncio", lifespan="off",
                                log_config=None, access_log=False, proxy_headers=False, server_header=False,
                                backlog=BACKLOG,
                                timeout_keep_alive=max(1, round(observability.CLIENT_TIMEOUT_SECONDS)),
                                ssl_certfile=tls_cert_file if tls else None, ssl_keyfile=tls_key_file if tls else None)
        # uvicorn's own lines at INFO (started, shutting down) say what the process's log already says; an exception
        # that escapes the app still comes out, at ERROR
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        return self.address[1]

    def start(self, timeout: float = 30) -> None:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]}, name=self.name,
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:  # a failed start (a bad certificate) ends the thread: say so here
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the HTTP server did not start (see the log)")
            time.sleep(0.01)

    def stop(self, timeout: float = 10) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.socket.close()


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; BodyTooLarge past `limit` bytes, ClientTimeout if it does not arrive in time."""
    async def read() -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientTimeout("the client went away before its body was read")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), observability.CLIENT_TIMEOUT_SECONDS)
    except TimeoutError:
        raise ClientTimeout(f"no whole body within {observability.CLIENT_TIMEOUT_SECONDS:g}s") from None


async def respond(send: Send, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None, close: bool = False) -> None:
    """One whole answer. `close`: the client must not send its next request on this connection (the body of this
    one was left unread)."""
    head = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (the first), by its lower-case name."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None

