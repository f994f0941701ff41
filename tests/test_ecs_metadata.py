"""The fake instance metadata service (zoneproof.ecs.metadata), on a loopback port: the
identity document a node plugin reads its instance and zone from, in the hardened mode (a
token with a lifetime, checked by an injectable clock) and the plain one."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from zoneproof.ecs.metadata import TOKEN_HEADER, TTL_HEADER, Identity, MetadataServer

IDENTITY = Identity("i-abc123", "cn-beijing-b", "cn-beijing", "ecs.g7.xlarge")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service():
    clock = Clock()
    server = MetadataServer(("127.0.0.1", 0), IDENTITY, clock=clock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/latest/", clock
    server.shutdown()
    server.server_close()
    thread.join()


def _ask(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers or {})) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_the_identity_document_with_a_token_as_the_alibaba_plugin_asks(service):
    base, clock = service
    status, token = _ask(base + "api/token", "PUT", {TTL_HEADER: "60"})
    assert status == 200 and token
    status, body = _ask(base + "dynamic/instance-identity/document", headers={TOKEN_HEADER: token})
    assert status == 200
    assert json.loads(body) == {"instance-id": "i-abc123", "zone-id": "cn-beijing-b", "region-id": "cn-beijing",
                                "instance-type": "ecs.g7.xlarge", "serial-number": "abc123", "owner-account-id": "0"}
    clock.now += 61  # the token's lifetime is over
    assert _ask(base + "dynamic/instance-identity/document", headers={TOKEN_HEADER: token})[0] == 401
    assert _ask(base + "dynamic/instance-identity/document", headers={TOKEN_HEADER: "made-up"})[0] == 401


def test_plain_reads_and_refusals(service):
    base, _ = service
    assert _ask(base + "meta-data/zone-id") == (200, "cn-beijing-b")
    assert _ask(base + "meta-data/instance/instance-type") == (200, "ecs.g7.xlarge")
    assert _ask(base + "meta-data/no-such-key")[0] == 404
    for ttl in ("0", "21601", "sixty", ""):
        assert _ask(base + "api/token", "PUT", {TTL_HEADER: ttl} if ttl else {})[0] == 400, ttl
    assert _ask(base + "api/other", "PUT", {TTL_HEADER: "60"})[0] == 404
