"""The fake ECS's HTTP layer: ECS's error shape, framing as strict as a real front end,
and connection limits that hold under bursts and idle clients."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import threading
import time

import pytest

from bench.ecs_connect_bench import burst
from tests.ecs_clients import SDKS, ApiError
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.http import MAX_BODY
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer

KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
REGION, ZONE_A, ZONE_B = "cn-hangzhou", "cn-hangzhou-h", "cn-hangzhou-i"
TIMEOUT = 10


def make_server(**http_limits) -> EcsServer:
    server = EcsServer(EcsConfig(region=REGION, zones={ZONE_A: ("cloud_essd",), ZONE_B: ("cloud_essd",)}))
    for name, value in http_limits.items():
        setattr(server.httpd, name, value)
    if "max_connections" in http_limits:
        server.httpd._open = threading.BoundedSemaphore(http_limits["max_connections"])
    with server.store.transaction() as db:
        server.backend.register_instance(db, "i-b1", ZONE_B)
    return server.start()


@pytest.fixture
def server():
    srv = make_server()
    yield srv
    srv.stop()


def host_port(server: EcsServer) -> tuple[str, int]:
    host, port = server.endpoint.rsplit(":", 1)
    return host, int(port)


def exchange(server: EcsServer, raw: bytes, method: str = "GET") -> tuple[bytes, http.client.HTTPResponse, bytes]:
    """Send raw bytes; return the status line as sent, the parsed answer and its body."""
    with socket.create_connection(host_port(server), timeout=TIMEOUT) as sock:
        sock.sendall(raw)
        reader = sock.makefile("rb")
        status_line = reader.peek(64).split(b"\r\n", 1)[0]
        response = http.client.HTTPResponse(sock, method=method)
        response.fp = reader
        response.begin()
        return status_line, response, response.read()


# ---------------------------------------------------------------- ECS's shapes
@pytest.mark.parametrize("sdk_class", SDKS, ids=lambda cls: cls.name)
def test_cross_zone_attach_answers_ecs_code(server, sdk_class):
    sdk = sdk_class(server.endpoint, KEY_ID, SECRET, REGION)
    disk_id = sdk.call("CreateDisk", RegionId=REGION, ZoneId=ZONE_A, DiskCategory="cloud_essd", Size=20)["DiskId"]
    with pytest.raises(ApiError) as caught:
        sdk.call("AttachDisk", DiskId=disk_id, InstanceId="i-b1")
    assert (caught.value.code, caught.value.status) == ("ResourcesNotInSameZone", 403)
    assert "The specified instance and disk are not in the same zone." in caught.value.message


def test_errors_carry_ecs_host_id_recommend_and_request_id_header(server):
    conn = http.client.HTTPConnection(*host_port(server), timeout=TIMEOUT)
    try:
        conn.request("GET", "/?Action=DescribeRegions")  # unsigned
        response = conn.getresponse()
        doc = json.loads(response.read())
    finally:
        conn.close()
    assert (response.status, doc["Code"]) == (400, "IncompleteSignature")
    assert doc["HostId"] == f"ecs.{REGION}.aliyuncs.com"
    assert doc["Recommend"] == (f"https://api.aliyun.com/troubleshoot?q=IncompleteSignature&product=Ecs"
                                f"&requestId={doc['RequestId']}")
    assert response.getheader("x-acs-request-id") == doc["RequestId"]


def test_answers_carry_their_request_id_header(server):
    sdk = SDKS[0](server.endpoint, KEY_ID, SECRET, REGION)
    seen = []
    original = server.httpd.routes.api

    def spy(req):
        status, doc, request_id = original(req)
        seen.append((doc.get("RequestId"), request_id))
        return status, doc, request_id
    object.__setattr__(server.httpd.routes, "api", spy)
    sdk.call("DescribeRegions")
    (in_body, in_header), = seen
    assert in_body == in_header
    raw = exchange(server, b"GET /?Action=DescribeRegions HTTP/1.1\r\nHost: x\r\n\r\n")[1]
    assert raw.getheader("x-acs-request-id")


def test_malformed_disk_ids_answer_invalid_disk_ids_malformed(server):
    sdk = SDKS[0](server.endpoint, KEY_ID, SECRET, REGION)
    with pytest.raises(ApiError) as caught:
        sdk.call("DescribeDisks", RegionId=REGION, DiskIds="d-1,d-2")
    assert (caught.value.code, caught.value.status) == ("InvalidDiskIds.Malformed", 400)


def test_a_dropped_connection_is_one_log_line_without_traceback(server, monkeypatch):
    records: list[logging.LogRecord] = []
    dropped = threading.Event()
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)  # an exception escaping the handler

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)
            if "dropped its connection" in record.getMessage():
                dropped.set()
    keep, logger = Keep(logging.INFO), logging.getLogger("zoneproof.ecs")
    level = logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        sock = socket.create_connection(host_port(server), timeout=TIMEOUT)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
        sock.close()
        assert dropped.wait(TIMEOUT), "the dropped connection was not logged"
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    assert len(records) == 1 and records[0].exc_info is None, [r.getMessage() for r in records]
    assert not thread_errors


# ---------------------------------------------------------------- framing
@pytest.mark.parametrize("request_line", [b"GET / HTTP/2.0", b"A B C D", b"GET /", b"GET / HTTP/1.x",
                                          b"GET / FTP/1.1"])
def test_malformed_request_lines_get_a_400_status_line(server, request_line):
    status_line, response, body = exchange(server, request_line + b"\r\nHost: x\r\n\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request", status_line
    assert json.loads(body)["Code"] == "InvalidParameter"


def test_a_chunked_body_is_refused_and_never_read_as_a_request(server):
    chunked = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2c\r\nGET /?Action=DescribeRegions HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n")
    with socket.create_connection(host_port(server), timeout=TIMEOUT) as sock:
        sock.sendall(chunked)
        received = b""
        while chunk := sock.recv(65536):  # the server closes after its one answer
            received += chunk
    assert received.startswith(b"HTTP/1.1 411 "), received[:100]
    assert received.count(b"HTTP/1.1 ") == 1, received


@pytest.mark.parametrize("length", [b"+5", b" 5x", b"\xd9\xa5", b"5, 5", b"0x5", b"-0"])
def test_content_length_takes_ascii_digits_only(server, length):
    status_line, _, body = exchange(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + length +
                                    b"\r\n\r\nhello", "POST")
    assert status_line.startswith(b"HTTP/1.1 400 "), status_line
    assert "Content-Length" in json.loads(body)["Message"]


def test_an_oversized_body_is_answered_before_the_connection_closes(server):
    size = MAX_BODY + 4096
    with socket.create_connection(host_port(server), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        sock.sendall(b"x" * size)  # all of it: a server that stops reading would reset us here
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        assert response.status == 400
        assert "Content-Length" in json.loads(response.read())["Message"]
        assert sock.recv(1) == b"", "the connection must be closed after the refusal"


# ---------------------------------------------------------------- connections
def test_a_burst_of_32_connecting_clients_gets_every_answer_without_a_connect_stall(server):
    # The benchmark's burst, once: each client connects at a barrier and sends one signed request.
    results = burst(*host_port(server), clients=32, timeout=TIMEOUT)
    assert len(results) == 32
    unanswered = [r for r in results if r[1] is None]
    assert not unanswered, f"{len(unanswered)} of 32 requests unanswered within {TIMEOUT} s"
    assert max(r[0] for r in results) < 1.0, f"slowest connect {max(r[0] for r in results):.2f} s"


REQUEST = b"GET /?Action=DescribeRegions HTTP/1.1\r\nHost: x\r\n"  # its headers' end not sent yet: a request under way


def connect(server: EcsServer, count: int, *, busy: bool = False) -> list[socket.socket]:
    """Connections each in the middle of a request (``busy``: request line and a header
    sent, not their end) or idle between requests (answered one, kept alive)."""
    made = []
    for _ in range(count):
        sock = socket.create_connection(host_port(server), timeout=TIMEOUT)
        made.append(sock)
        if busy:
            sock.sendall(REQUEST)
        else:
            sock.sendall(REQUEST + b"\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            assert response.status == 400, response.status  # served (unsigned), and kept open, idle
    if busy:
        wait_until(lambda: len(server.httpd._idle_since) == 0, "every connection to be in its request")
    return made


def wait_until(check, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)


def test_connections_over_the_cap_are_refused_only_when_every_one_is_in_a_request():
    server = make_server(max_connections=8, idle_timeout=TIMEOUT)
    busy = []
    try:
        busy = connect(server, 8, busy=True)
        # Eight requests under way each hold a thread; the ninth is told to come back.
        status_line, response, body = exchange(server, REQUEST + b"Connection: close\r\n\r\n")
        assert status_line == b"HTTP/1.1 503 Service Unavailable"
        assert json.loads(body)["Code"] == "ServiceUnavailable"
        # The requests under way were not cut: each is answered once its headers end.
        for sock in busy:
            sock.sendall(b"\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 400, response.status  # unsigned, but served
            response.read()
        # Now idle between requests, they make room for the next client.
        assert exchange(server, REQUEST + b"Connection: close\r\n\r\n")[0].startswith(b"HTTP/1.1 400")
    finally:
        for sock in busy:
            sock.close()
        server.stop()


def test_at_the_cap_the_connection_idle_longest_makes_room_and_is_closed_cleanly():
    server = make_server(max_connections=8, idle_timeout=TIMEOUT)
    idle = []
    try:
        idle = connect(server, 8)
        for oldest in (0, 1):  # two newcomers that stay: the two oldest go, in that order
            idle += connect(server, 1)  # served (a 400: unsigned), not refused
            wait_until(lambda: not still_open(idle[oldest]), "the oldest idle connection to close")
            # Closed with an orderly end, as an idle timeout closes one: no reset.
            assert idle[oldest].recv(1) == b""
        assert [still_open(sock) for sock in idle[2:]] == [True] * 8
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_a_request_under_way_is_never_the_one_that_makes_room():
    server = make_server(max_connections=4, idle_timeout=TIMEOUT)
    made = []
    try:
        made = connect(server, 1, busy=True) + connect(server, 3)  # the busy one is the oldest
        for _ in range(3):
            assert exchange(server, REQUEST + b"Connection: close\r\n\r\n")[0].startswith(b"HTTP/1.1 400")
        made[0].sendall(b"\r\n")
        response = http.client.HTTPResponse(made[0])
        response.begin()
        assert response.status == 400  # answered: its request was not cut
    finally:
        for sock in made:
            sock.close()
        server.stop()


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout():
    server = make_server(idle_timeout=0.5)
    try:
        with socket.create_connection(host_port(server), timeout=TIMEOUT) as sock:
            began = time.monotonic()
            assert sock.recv(1) == b"", "the server should close an idle connection"
            assert time.monotonic() - began < TIMEOUT
    finally:
        server.stop()


# ---------------------------------------------------------------- the admin API
@pytest.mark.parametrize("target", ["/_admin/audit?after=99999999999999999999", "/_admin/audit?limit=-1",
                                    "/_admin/audit?after=%D9%A5"])
def test_admin_out_of_range_integers_are_400(server, target):
    status_line, response, body = exchange(server, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert response.status == 400, body
    assert "after" in json.loads(body)["error"] or "limit" in json.loads(body)["error"]


def test_admin_deeply_nested_json_is_400(server):
    body = b"[" * 100_000
    _, response, answer = exchange(server, b"POST /_admin/faults HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                                   % len(body) + body, "POST")
    assert response.status == 400, answer
    assert "JSON" in json.loads(answer)["error"]
