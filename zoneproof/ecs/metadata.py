"""A fake of ECS's instance metadata service, for one node.

On ECS a guest learns who it is (instance, zone, region, instance type) from the service at
``100.100.100.200``. Node plugins read it, so the zone a node plugin reports comes from the
cloud, not from a label someone set. Here the service runs beside a node plugin, in its
node's network namespace, on that address put on the node's loopback: a request for it is
answered inside the node and never leaves it. It answers for the node's own instance, as
ECS describes it (``DescribeInstances``).

Both access modes of the real service: plain GETs, and the hardened one (a token from
``PUT /latest/api/token`` with a TTL header, then sent with each GET); a token that is sent
must be one this service issued and still valid.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

log = logging.getLogger(__name__)

ADDRESS = "100.100.100.200"
TOKEN_HEADER = "X-aliyun-ecs-metadata-token"
TTL_HEADER = "X-aliyun-ecs-metadata-token-ttl-seconds"
MAX_TTL = 21600  # seconds, as on ECS


@dataclass(frozen=True)
class Identity:
    instance_id: str
    zone: str
    region: str
    instance_type: str
    owner_account_id: str = "0"

    def document(self) -> dict[str, str]:
        """``/latest/dynamic/instance-identity/document``."""
        return {"instance-id": self.instance_id, "zone-id": self.zone, "region-id": self.region,
                "instance-type": self.instance_type, "serial-number": self.instance_id.removeprefix("i-"),
                "owner-account-id": self.owner_account_id}

    def meta_data(self) -> dict[str, str]:
        """``/latest/meta-data/<path>``, plain text."""
        return {"instance-id": self.instance_id, "zone-id": self.zone, "region-id": self.region,
                "instance/instance-type": self.instance_type, "serial-number": self.instance_id.removeprefix("i-"),
                "owner-account-id": self.owner_account_id}


def serve_on_node(identity: Identity, address: str, port: int) -> None:
    """Answer for ``identity`` at ``address`` until interrupted, the address put on this
    network namespace's loopback meanwhile and taken off again (OSError if it cannot be)."""
    local = ["ip", "address", "replace", f"{address}/32", "dev", "lo"]
    proc = subprocess.run(local, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(f"`{' '.join(local)}` failed: {proc.stderr.strip()}")
    try:
        server = MetadataServer((address, port), identity)
        log.info("instance metadata of %s (%s) at http://%s:%d", identity.instance_id, identity.zone, address, port)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        gone = subprocess.run(["ip", "address", "del", f"{address}/32", "dev", "lo"], capture_output=True, text=True)
        if gone.returncode != 0:
            log.error("could not take %s off the loopback: %s", address, gone.stderr.strip())


class MetadataServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], identity: Identity, clock: Callable[[], float] = time.monotonic):
        super().__init__(address, _Handler)
        self.identity, self.clock = identity, clock
        self._tokens: dict[str, float] = {}  # token -> expiry
        self._lock = threading.Lock()

    def issue(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = self.clock() + ttl
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
            return expiry is not None and self.clock() < expiry


class _Handler(BaseHTTPRequestHandler):
    server: MetadataServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # noqa: D401 - through logging, not stderr
        log.info("%s %s", self.address_string(), fmt % args)

    def _answer(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):  # noqa: N802 - the http.server interface
        if self.path != "/latest/api/token":
            return self._answer(404, "Not Found")
        ttl = self.headers.get(TTL_HEADER, "")
        if not (ttl.isascii() and ttl.isdigit() and 1 <= int(ttl) <= MAX_TTL):
            return self._answer(400, f"{TTL_HEADER} must be a whole number of seconds from 1 to {MAX_TTL}")
        return self._answer(200, self.server.issue(int(ttl)))

    def do_GET(self):  # noqa: N802 - the http.server interface
        token = self.headers.get(TOKEN_HEADER)
        if token is not None and not self.server.valid(token):
            return self._answer(401, "Unauthorized: the metadata token is not valid or has expired")
        identity = self.server.identity
        if self.path == "/latest/dynamic/instance-identity/document":
            return self._answer(200, json.dumps(identity.document()), "application/json")
        if self.path.startswith("/latest/meta-data/"):
            value = identity.meta_data().get(self.path.removeprefix("/latest/meta-data/").rstrip("/"))
            if value is not None:
                return self._answer(200, value)
        return self._answer(404, "Not Found")
