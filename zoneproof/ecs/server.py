"""The fake ECS service: the ECS OpenAPI on ``/`` (both signature styles) and a JSON admin
API on ``/_admin/`` for registering instances, injecting faults and reading the audit log
and state. The HTTP layer is ``zoneproof.ecs.http``.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

from zoneproof.ecs.actions import Dispatcher, new_request_id
from zoneproof.ecs.auth import SignedRequest, Verifier, request_params
from zoneproof.ecs.backend import Devices, EcsBackend, EcsConfig, PowerSwitch
from zoneproof.ecs.errors import EcsError
from zoneproof.ecs.faults import Faults
from zoneproof.ecs.http import EcsHttpServer, Routes, error_document
from zoneproof.ecs.storage import DiskStorage
from zoneproof.ecs.store import Store

log = logging.getLogger(__name__)

DEFAULT_CREDENTIALS = {"ZPTESTACCESSKEYID": "zoneproof-test-secret"}
# The audit log's sequence numbers are SQLite integers.
MAX_SQLITE_INTEGER = (1 << 63) - 1
# How often the serving loop looks for a stop (seconds): stop() waits up to this long, and
# socketserver's default (0.5 s) adds half a second to every fake ECS that stops.
STOP_POLL_INTERVAL = 0.05


class _AdminError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _admin_int(query: dict[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_SQLITE_INTEGER:
        raise _AdminError(400, f"{name} must be a whole number from 0 to {MAX_SQLITE_INTEGER}, got {text[:40]!r}")
    return int(text)


class EcsServer:
    """A running fake ECS. Use as a context manager, or ``start()``/``stop()``.

    ``power_switch(instance_id, on)`` is called for each instance that StopInstances
    (on=False) or StartInstances (on=True) changes: see ``EcsBackend``. With ``disk_root``
    each disk has an image there; ``devices_for(storage)`` makes the guests' devices of
    attached disks from them (released again when the server stops)."""

    def __init__(self, config: EcsConfig | None = None, *, db_path: Path | str = ":memory:",
                 host: str = "127.0.0.1", port: int = 0, credentials: dict[str, str] | None = None,
                 seed: int = 0, power_switch: PowerSwitch | None = None, disk_root: Path | None = None,
                 devices_for: Callable[[DiskStorage], Devices] | None = None):
        self.store = Store(db_path)
        self.faults = Faults(seed)
        config = config or EcsConfig()
        storage = DiskStorage(disk_root, tuple(config.zones)) if disk_root is not None else None
        devices = devices_for(storage) if devices_for is not None and storage is not None else None
        self.backend = EcsBackend(config, self.store, self.faults, power_switch=power_switch, storage=storage,
                                  devices=devices)
        self.dispatcher = Dispatcher(self.backend)
        self.credentials = dict(credentials or DEFAULT_CREDENTIALS)
        self.verifier = Verifier(self.credentials, nonces=self.store)
        self.httpd = EcsHttpServer((host, port), Routes(region=config.region, new_request_id=new_request_id,
                                                        api=self.handle_api, admin=self.handle_admin))
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """``host:port``, what the SDKs and ``ECS_ENDPOINT`` take."""
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "EcsServer":
        self._thread = threading.Thread(target=self.serve_forever, name="fake-ecs", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=STOP_POLL_INTERVAL)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.close()

    def close(self) -> None:
        """After serving: the socket, the guests' devices, the store."""
        self.httpd.server_close()
        if self._thread:
            self._thread.join()
        try:
            if self.backend.devices is not None:
                self.backend.devices.release_all()
        finally:
            self.store.close()

    def __enter__(self) -> "EcsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- API
    def handle_api(self, req: SignedRequest) -> tuple[int, dict, str]:
        """Answer one API request: (HTTP status, document, request id)."""
        request_id = new_request_id()
        try:
            try:
                verified = self.verifier.verify(req)
            except EcsError as err:
                # Audited under the action the request claims, though it was never run.
                params = request_params(req)
                claimed = req.headers.get("x-acs-action") or params.get("Action") or ""
                style = "v3" if "authorization" in req.headers else "rpc"
                self.dispatcher.record(claimed, params, err, style, request_id)
                raise
            if not verified.action:
                raise EcsError("MissingParameter", 'The input parameter "Action" that is mandatory for '
                               "processing this request is not supplied.")
            params = dict(verified.params)
            if verified.version is not None:
                params["Version"] = verified.version
            return 200, self.dispatcher.call(verified.action, params, style=verified.style,
                                             request_id=request_id), request_id
        except EcsError as err:
            return err.status, error_document(err, request_id, self.backend.config.region), request_id

    # ---------------------------------------------------------------- admin
    def handle_admin(self, method: str, path: str, query: str, body: bytes) -> tuple[int, object]:
        """Answer one admin request: (HTTP status, document); bad input is a 4xx naming it."""
        try:
            return self._admin(method, path, dict(parse_qsl(query)), body)
        except _AdminError as err:
            return err.status, {"error": str(err)}

    def _admin(self, method: str, path: str, query: dict, body: bytes) -> tuple[int, object]:
        parts = [p for p in path.split("/") if p][1:]  # drop "_admin"
        try:
            data = json.loads(body) if body else None
        except (ValueError, RecursionError):  # RecursionError: absurdly nested input
            raise _AdminError(400, "the request body is not valid JSON (or is nested too deeply)")
        route = (method, parts[0] if parts else "", len(parts))
        try:
            if route == ("GET", "health", 1):
                return 200, {"ok": True, "region": self.backend.config.region}
            if route == ("GET", "state", 1):
                with self.store.transaction() as db:
                    self.backend.settle(db, self.backend.clock())
                    return 200, self.backend.snapshot(db)
            if route == ("GET", "audit", 1):
                after = _admin_int(query, "after", 0)
                limit = _admin_int(query, "limit", 10000)
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
