"""The fake ECS HTTP endpoint: the ECS OpenAPI on ``/`` (both signature styles) and a JSON
admin API on ``/_admin/`` for registering instances, injecting faults and reading the
audit log and state.

Built on the standard library's threading HTTP server: the endpoint serves loopback test
traffic only, and needs no routing or middleware a framework would add.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from zoneproof.ecs.actions import Dispatcher, new_request_id
from zoneproof.ecs.auth import SignedRequest, Verifier, request_params
from zoneproof.ecs.backend import EcsBackend, EcsConfig, PowerSwitch
from zoneproof.ecs.errors import EcsError
from zoneproof.ecs.faults import Faults
from zoneproof.ecs.storage import DiskStorage
from zoneproof.ecs.store import Store

log = logging.getLogger(__name__)

DEFAULT_CREDENTIALS = {"ZPTESTACCESSKEYID": "zoneproof-test-secret"}
MAX_BODY = 1 << 20
HOST_ID = "ecs.fake.zoneproof"


class _AdminError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _decode_pairs(text: bytes | str, what: str) -> list[tuple[str, str]]:
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise EcsError("InvalidParameter", f"The {what} is not valid UTF-8 url-encoding.")


class EcsServer:
    """A running fake ECS. Use as a context manager, or ``start()``/``stop()``.

    ``power_switch(instance_id, on)`` is called for each instance that StopInstances
    (on=False) or StartInstances (on=True) changes: see ``EcsBackend``."""

    def __init__(self, config: EcsConfig | None = None, *, db_path: Path | str = ":memory:",
                 host: str = "127.0.0.1", port: int = 0, credentials: dict[str, str] | None = None,
                 seed: int = 0, power_switch: PowerSwitch | None = None, disk_root: Path | None = None):
        self.store = Store(db_path)
        self.faults = Faults(seed)
        config = config or EcsConfig()
        storage = DiskStorage(disk_root, tuple(config.zones)) if disk_root is not None else None
        self.backend = EcsBackend(config, self.store, self.faults, power_switch=power_switch, storage=storage)
        self.dispatcher = Dispatcher(self.backend)
        self.credentials = dict(credentials or DEFAULT_CREDENTIALS)
        self.verifier = Verifier(self.credentials, nonces=self.store)
        self.httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """``host:port``, what the SDKs and ``ECS_ENDPOINT`` take."""
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "EcsServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-ecs", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join()
        self.store.close()

    def __enter__(self) -> "EcsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- API
    def handle_api(self, req: SignedRequest) -> tuple[int, dict]:
        request_id = new_request_id()
        try:
            try:
                verified = self.verifier.verify(req)
            except EcsError as err:
                # Audited under the action the request claims, though it was never run.
                claimed = req.headers.get("x-acs-action") or request_params(req).get("Action") or ""
                self.dispatcher.record(claimed, request_params(req), err, _style(req), request_id)
                raise
            if not verified.action:
                raise EcsError("MissingParameter", 'The input parameter "Action" that is mandatory for '
                               "processing this request is not supplied.")
            params = dict(verified.params)
            if verified.version is not None:
                params["Version"] = verified.version
            return 200, self.dispatcher.call(verified.action, params, style=verified.style, request_id=request_id)
        except EcsError as err:
            return err.status, {"RequestId": request_id, "HostId": HOST_ID, "Code": err.code,
                                "Message": err.message, "Recommend": f"https://zoneproof.dev/ecs-errors#{err.code}"}

    # ---------------------------------------------------------------- admin
    def handle_admin(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, object]:
        parts = [p for p in path.split("/") if p][1:]  # drop "_admin"
        try:
            data = json.loads(body) if body else None
        except ValueError:
            raise _AdminError(400, "the request body is not valid JSON")
        route = (method, parts[0] if parts else "", len(parts))
        try:
            if route == ("GET", "health", 1):
                return 200, {"ok": True, "region": self.backend.config.region}
            if route == ("GET", "state", 1):
                with self.store.transaction() as db:
                    self.backend.settle(db, self.backend.clock())
                    return 200, self.backend.snapshot(db)
            if route == ("GET", "audit", 1):
                after = int(query.get("after", 0))
                limit = int(query.get("limit", 10000))
                return 200, {"entries": self.store.audit(after=after, limit=limit)}
            if route == ("POST", "instances", 1):
                if not isinstance(data, dict) or not data.get("instance_id") or not data.get("zone"):
                    raise _AdminError(400, 'an instance needs "instance_id" and "zone"')
                with self.store.transaction() as db:
                    return 200, self.backend.register_instance(db, str(data["instance_id"]), str(data["zone"]),
                                                               str(data.get("name") or ""))
            if route == ("DELETE", "instances", 2):
                with self.store.transaction() as db:
                    self.backend.deregister_instance(db, parts[1])
                return 200, {"deleted": parts[1]}
            if route == ("GET", "faults", 1):
                return 200, {"faults": self.faults.list()}
            if route == ("POST", "faults", 1):
                return 200, self.faults.add(data).to_dict()
            if route == ("DELETE", "faults", 1):
                self.faults.clear()
                return 200, {"faults": []}
            if route == ("DELETE", "faults", 2):
                if not self.faults.remove(int(parts[1])):
                    raise _AdminError(404, f"no fault {parts[1]}")
                return 200, {"deleted": int(parts[1])}
        except ValueError as err:
            raise _AdminError(400, str(err))
        except EcsError as err:
            raise _AdminError(err.status, f"{err.code}: {err.message}")
        raise _AdminError(404, f"no admin route {method} {path}")


def _style(req: SignedRequest) -> str:
    return "v3" if "authorization" in req.headers else "rpc"


def _make_handler(server: EcsServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "zoneproof-fake-ecs"
        # Headers and body go out in two writes; with Nagle on, a keep-alive client's
        # delayed ACK holds the body back ~40 ms per request.
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # route the per-request log to logging, quietly
            log.debug("%s " + fmt, self.address_string(), *args)

        def send_error(self, code, message=None, explain=None):
            # The base class answers unparseable requests (bad request line, bad headers,
            # unknown method) with an HTML page; ECS clients expect the JSON error shape.
            self.close_connection = True
            status = 400  # InvalidParameter's status, whatever the stdlib's own code (414, 431, ...)
            self._send(status, {"RequestId": new_request_id(), "HostId": HOST_ID, "Code": "InvalidParameter",
                                "Message": f"The request is malformed: {message or explain or code}.",
                                "Recommend": ""})

        def _send(self, status: int, document: object) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self.close_connection = True
                return self._send(400, {"RequestId": new_request_id(), "HostId": HOST_ID, "Code": "InvalidParameter",
                                        "Message": f"Content-Length must be between 0 and {MAX_BODY}.",
                                        "Recommend": ""})
            body = self.rfile.read(length) if length else b""
            try:
                try:
                    split = urlsplit(self.path)
                except ValueError:
                    return self.send_error(400, f"the request target {self.path[:100]!r} is not a valid URL")
                if split.path.startswith("/_admin/"):
                    try:
                        status, doc = server.handle_admin(self.command, split.path, dict(parse_qsl(split.query)), body)
                    except _AdminError as err:
                        status, doc = err.status, {"error": str(err)}
                    return self._send(status, doc)
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    key = name.lower()
                    headers[key] = f"{headers[key]},{value}" if key in headers else value
                try:
                    query = _decode_pairs(split.query, "query string")
                    ctype = headers.get("content-type", "")
                    form = _decode_pairs(body, "form body") if ctype.startswith(
                        "application/x-www-form-urlencoded") else []
                except EcsError as err:
                    return self._send(err.status, {"RequestId": new_request_id(), "HostId": HOST_ID,
                                                   "Code": err.code, "Message": err.message, "Recommend": ""})
                req = SignedRequest(method=self.command, path=split.path or "/", query=query, form=form,
                                    headers=headers, body=body)
                status, doc = server.handle_api(req)
                self._send(status, doc)
            except Exception:  # noqa: BLE001 - a bug must answer, not hang the client
                log.exception("fake ECS failed on %s %s", self.command, self.path)
                self._send(500, {"RequestId": new_request_id(), "HostId": HOST_ID, "Code": "InternalError",
                                 "Message": "The request processing has failed due to some unknown error.",
                                 "Recommend": ""})

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler
