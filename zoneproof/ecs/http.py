"""The fake ECS's HTTP layer: requests in, JSON answers out, with the connection limits a
service needs (a listen backlog, an idle timeout, a cap on open connections) and strict
framing: HTTP/1.0 and 1.1 only, ``Content-Length`` of ASCII digits, no chunked bodies.

At the cap a new connection takes the place of the one idle longest between requests,
closed as its idle timeout would close it: a client that keeps many idle keep-alive
connections never makes another fail. Only when every admitted connection is in the middle
of a request is a new one answered 503.

Built on the standard library's threading HTTP server: the endpoint serves test traffic
on loopback or a private bridge, needs no routing or middleware a framework would add, and
what the stdlib does loosely (HTTP/0.9 answers without a status line, a signed number as a
length, an unread body read as the next request) is closed off here.
"""

from __future__ import annotations

import io
import json
import logging
import re
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from zoneproof.ecs.auth import SignedRequest
from zoneproof.ecs.errors import AnswerLost, EcsError

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
# Room for a burst of clients connecting at once (the stdlib's default backlog is 5).
LISTEN_BACKLOG = 512
# Open connections served at once; beyond that the longest idle makes room, or, when every
# one is in a request, the new connection is answered 503 and closed.
MAX_CONNECTIONS = 128
# How long a new connection waits for the idle one it displaces to let go of its thread.
EVICTION_WAIT = 2.0
# A keep-alive connection idle this long is closed (the SDKs reconnect when they need to).
IDLE_TIMEOUT = 30.0
# An oversized body is read and thrown away up to this much, so the client sees the answer
# rather than a reset; a bigger one is cut off.
MAX_DRAIN = 64 << 20
CONTENT_LENGTH = re.compile(r"[0-9]{1,19}", re.ASCII)


def error_document(err: EcsError, request_id: str, region: str) -> dict:
    """An error body in ECS's shape."""
    return {"RequestId": request_id, "HostId": f"ecs.{region}.aliyuncs.com", "Code": err.code,
            "Message": err.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}&product=Ecs&requestId={request_id}"}


@dataclass(frozen=True)
class Routes:
    """What the HTTP layer calls: ``api`` for the ECS OpenAPI (returns status, document,
    request id) and ``admin`` for ``/_admin/`` (returns status, document)."""

    region: str
    new_request_id: Callable[[], str]
    api: Callable[[SignedRequest], tuple[int, dict, str]]
    admin: Callable[[str, str, str, bytes], tuple[int, object]]


class EcsHttpServer(ThreadingHTTPServer):
    """A thread per connection, up to ``max_connections``; each idle connection closes
    after ``idle_timeout`` seconds."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def __init__(self, address: tuple[str, int], routes: Routes, *, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout: float = IDLE_TIMEOUT):
        self.routes = routes
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._open = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._idle_since: dict[socket.socket, float] = {}  # connections between requests -> since when
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        if not self._open.acquire(blocking=False) and not self._make_room():
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._open.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._open.release()

    # What each connection is doing, as its handler says.
    def between_requests(self, connection: socket.socket) -> None:
        with self._lock:
            self._idle_since[connection] = time.monotonic()

    def in_request(self, connection: socket.socket) -> None:
        with self._lock:
            self._idle_since.pop(connection, None)

    def _make_room(self) -> bool:
        """At the cap: close the connection idle longest between requests, as its idle
        timeout would (its handler reads the end and closes it cleanly), and take its
        place once its thread lets go. False when every connection is in a request."""
        deadline = time.monotonic() + EVICTION_WAIT
        while time.monotonic() < deadline:
            with self._lock:
                oldest_first = sorted(self._idle_since, key=self._idle_since.__getitem__)
                victim = next((c for c in oldest_first if not _request_arriving(c)), None)
                if victim is None:
                    return False
                del self._idle_since[victim]
                log.info("fake ECS: %d connections open; closing the one idle longest to admit another",
                         self.max_connections)
                try:
                    victim.shutdown(socket.SHUT_RD)
                except OSError as err:  # closed by its client meanwhile: its thread is ending anyway
                    log.debug("fake ECS: the idle connection closed first: %s", err)
            if self._open.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return True
        return False

    def _refuse(self, request: socket.socket) -> None:
        """Over the cap, every connection busy: a 503 in ECS's shape, then close, without a thread."""
        request_id = self.routes.new_request_id()
        body = json.dumps(error_document(EcsError("ServiceUnavailable", "Too many open connections; retry later."),
                                         request_id, self.routes.region)).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json;charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nx-acs-request-id: {request_id}\r\nConnection: close\r\n\r\n")
        log.warning("fake ECS: %d connections open, each in a request; refusing one more", self.max_connections)
        try:
            request.settimeout(1.0)
            request.sendall(head.encode() + body)
        except OSError as err:
            log.info("fake ECS: the refused client went away: %s", err)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request, client_address):
        # A client that drops its connection is not the service's fault: one line, no traceback.
        exc = sys.exc_info()[1]  # socketserver calls this from inside its except clause
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.info("fake ECS: client %s dropped its connection (%s)", client_address[0], type(exc).__name__)
            return
        log.error("fake ECS: unexpected error serving %s", client_address[0], exc_info=exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "zoneproof-fake-ecs"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed
    # ACK holds the body back ~40 ms per request.
    disable_nagle_algorithm = True
    server: EcsHttpServer

    def setup(self):
        self.timeout = self.server.idle_timeout  # applied to the socket by StreamRequestHandler
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(_BusyOnRead(self.connection, self.server))
        self.server.between_requests(self.connection)  # until a request line arrives

    def parse_request(self):
        self.server.in_request(self.connection)
        return super().parse_request()

    def finish(self):
        self.server.in_request(self.connection)  # gone: never to be chosen for eviction
        super().finish()

    def log_message(self, fmt, *args):  # route the per-request log to logging, quietly
        log.debug("%s " + fmt, self.address_string(), *args)

    def send_error(self, code, message=None, explain=None):
        # The base class answers unparseable requests (bad request line, bad headers, unknown
        # method) with an HTML page, and for a request line it could not read (or HTTP/0.9)
        # with no status line at all; ECS clients expect a status line and the JSON error.
        self.close_connection = True
        self.request_version = self.protocol_version
        self._send_error(400, EcsError("InvalidParameter", f"The request is malformed: {message or explain or code}."))

    def _send_error(self, status: int, err: EcsError) -> None:
        request_id = self.server.routes.new_request_id()
        self._send(status, error_document(err, request_id, self.server.routes.region), request_id)

    def _send(self, status: int, document: object, request_id: str | None = None) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if request_id:
            self.send_header("x-acs-request-id", request_id)
        if self.close_connection:
            self.send_header("Connection", "close")
        else:
            # Idle from the moment its answer leaves: the order in which clients got their
            # answers is the order in which their connections fell idle.
            self.server.between_requests(self.connection)
        self.end_headers()
        self.wfile.write(body)

    def _body_length(self) -> int | None:
        """The body's length, or None (after answering) when the framing is refused."""
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 is not served")
            return None
        if "Transfer-Encoding" in self.headers:
            # Only Content-Length framing is served; reading such a body as the next
            # request would be worse than refusing it.
            self.close_connection = True
            self._send_error(411, EcsError("InvalidParameter", "Transfer-Encoding is not supported; send the "
                                           "body with a Content-Length."))
            return None
        lengths = self.headers.get_all("Content-Length") or []
        text = lengths[0] if len(lengths) == 1 else "0" if not lengths else ""
        if not CONTENT_LENGTH.fullmatch(text) or int(text) > MAX_BODY:
            self.close_connection = True
            self._send_error(400, EcsError("InvalidParameter", f"Content-Length must be one number of ASCII digits "
                                           f"between 0 and {MAX_BODY}, got {', '.join(lengths)[:40]!r}."))
            self._drain(int(text) if CONTENT_LENGTH.fullmatch(text) else 0)
            return None
        return int(text)

    def _drain(self, length: int) -> None:
        """After refusing a body: read and drop it (up to MAX_DRAIN), so that closing the
        connection does not reset it under the client before it reads the answer."""
        self.wfile.flush()
        remaining = min(length, MAX_DRAIN)
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while remaining > 0:
                chunk = self.rfile.read1(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError as err:
            log.info("fake ECS: stopped draining a refused body: %s", err)

    def _handle(self) -> None:
        length = self._body_length()
        if length is None:
            return
        body = self.rfile.read(length) if length else b""
        try:
            split = urlsplit(self.path)
        except ValueError:
            return self.send_error(400, f"the request target {self.path[:100]!r} is not a valid URL")
        try:
            if split.path.startswith("/_admin/"):
                status, doc = self.server.routes.admin(self.command, split.path, split.query, body)
                return self._send(status, doc)
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            try:
                query = _decode_pairs(split.query, "query string")
                ctype = headers.get("content-type", "")
                form = _decode_pairs(body, "form body") if ctype.startswith("application/x-www-form-urlencoded") else []
            except EcsError as err:
                return self._send_error(err.status, err)
            req = SignedRequest(method=self.command, path=split.path or "/", query=query, form=form,
                                headers=headers, body=body)
            status, doc, request_id = self.server.routes.api(req)
            self._send(status, doc, request_id)
        except AnswerLost as lost:
            log.info("fake ECS: %s: closing the connection unanswered", lost)
            self.close_connection = True
        except (ConnectionError, TimeoutError):
            raise  # the client went away: EcsHttpServer.handle_error says so in one line
        except Exception:  # noqa: BLE001 - a bug must answer, not hang the client
            log.exception("fake ECS failed on %s %s", self.command, self.path[:200])
            self._send_error(500, EcsError("InternalError"))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class _BusyOnRead(socket.SocketIO):
    """A connection's reads: each waits for bytes, marks the connection in a request, and
    only then takes them. Taken first, a request line read but not yet parsed would leave
    the connection idle with nothing waiting on it, for making room to close."""

    def __init__(self, connection: socket.socket, server: EcsHttpServer):
        super().__init__(connection, "rb")
        self._server = server

    def readinto(self, buffer) -> int:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        timeout = self._sock.gettimeout()
        if not poller.poll(None if timeout is None else timeout * 1000):
            raise TimeoutError("timed out")  # as the socket's own read would, at the idle timeout
        self._server.in_request(self._sock)
        return super().readinto(buffer)


def _request_arriving(connection: socket.socket) -> bool:
    """Whether an idle connection has something to read: a next request arriving (then it
    is not idle), or its client's end (then its thread is ending by itself). poll, not
    select: a thousand connections have descriptors past select's limit."""
    poller = select.poll()
    try:
        poller.register(connection, select.POLLIN)
    except (OSError, ValueError):  # closed meanwhile: its thread is ending by itself
        return True
    return bool(poller.poll(0))


def _decode_pairs(text: bytes | str, what: str) -> list[tuple[str, str]]:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise EcsError("InvalidParameter", f"The {what} is not valid UTF-8 url-encoding.")
