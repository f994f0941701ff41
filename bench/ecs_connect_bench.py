#!/usr/bin/env python3
"""Connection benchmark of the fake ECS: bursts of clients connecting at once, with and
without a crowd of idle keep-alive connections already open.

    .venv/bin/python bench/ecs_connect_bench.py                  # 20 bursts of 32, then the same beside 100 idle
    .venv/bin/python bench/ecs_connect_bench.py --clients 64 --bursts 50 --idle 100

Then a well-behaved client beside a greedy one: for ``--seconds`` a client makes signed
calls through the official Python SDK (``zoneproof.ecsapi``, keep-alive) alone, then
while another holds ``--hold`` idle keep-alive connections (200, then 1000: more than the
cap of 128, so the fake must close idle ones to admit anyone). Every call must succeed.

The fake ECS runs as its own process (``zoneproof ecs serve``) on loopback. In each burst,
``--clients`` threads wait at a barrier, then each opens a new connection and sends one
signed DescribeRegions. Connect time is from the barrier to the connected socket (a full
listen backlog shows as a SYN retransmit: 1 s, then 3 s); request time from sending to
having read the answer. A request with no answer within ``--timeout`` seconds counts as
unanswered. The run fails (exit 1) on any unanswered request or a connect over 1 s.
Results are printed and written to reports/bench-ecs-connect.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aliyunsdkcore.auth.composer.rpc_signature_composer import get_signed_url  # noqa: E402

from zoneproof.ecs.actions import API_VERSION  # noqa: E402
from zoneproof.ecs.admin import EcsProcess  # noqa: E402
from zoneproof.ecs.server import DEFAULT_CREDENTIALS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench-ecs-connect.json"
KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
CONNECT_BUDGET = 1.0


def one_request(host: str, port: int, timeout: float) -> tuple[float, float | None]:
    """(connect seconds, request seconds or None when unanswered)."""
    began = time.monotonic()
    sock = socket.create_connection((host, port), timeout=timeout)
    connected = time.monotonic()
    url, _ = get_signed_url({"Action": "DescribeRegions", "Version": API_VERSION}, KEY_ID, SECRET, "JSON", "GET", {})
    try:
        with sock:
            sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            response = http.client.HTTPResponse(sock, method="GET")
            response.begin()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"DescribeRegions answered {response.status}")
        return connected - began, time.monotonic() - connected
    except TimeoutError:
        return connected - began, None


def burst(host: str, port: int, clients: int, timeout: float) -> list[tuple[float, float | None]]:
    barrier = threading.Barrier(clients)
    results: list[tuple[float, float | None]] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            barrier.wait()
            results.append(one_request(host, port, timeout))
        except BaseException as err:  # noqa: BLE001 - reported by the caller
            errors.append(err)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed; first: {errors[0]!r}")
    return results


def phase(name: str, host: str, port: int, args) -> dict:
    results = []
    for _ in range(args.bursts):
        results += burst(host, port, args.clients, args.timeout)
    connects = sorted(r[0] for r in results)
    answered = sorted(r[1] for r in results if r[1] is not None)
    return {"phase": name, "requests": len(results), "unanswered": len(results) - len(answered),
            "connect_max_s": round(connects[-1], 4), "connect_p99_s": round(connects[int(len(connects) * 0.99)], 4),
            "request_p50_s": round(statistics.median(answered), 4),
            "request_max_s": round(answered[-1], 4)}


def sdk_calls(endpoint: str, seconds: float) -> dict:
    """Signed DescribeRegions calls through the official SDK for ``seconds``: how many,
    how many failed (and with what), and their latency."""
    from zoneproof.ecsapi import CloudError, EcsApi, EcsSettings

    cloud = EcsApi(EcsSettings(endpoint, KEY_ID, SECRET, "cn-beijing"))
    latencies, errors = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        began = time.monotonic()
        try:
            cloud.call("DescribeRegions", retry_throttling=False)
        except CloudError as err:
            errors.append(err.code)
            continue
        latencies.append(time.monotonic() - began)
    latencies.sort()
    return {"calls": len(latencies) + len(errors), "errors": len(errors), "error_codes": sorted(set(errors)),
            "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
            "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 2) if latencies else None}


def hold_idle(host: str, port: int, count: int, timeout: float) -> tuple[list[socket.socket], int]:
    """``count`` keep-alive connections, each after one answered request, left idle (the
    fake closes the oldest when it needs room: the holder does not mind); and how many of
    them were refused (503) instead."""
    held, refused = [], 0
    for _ in range(count):
        url, _ = get_signed_url({"Action": "DescribeRegions", "Version": API_VERSION}, KEY_ID, SECRET, "JSON", "GET",
                                {})
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
        response.read()
        if response.status == 503:
            refused += 1
            sock.close()
            continue
        if response.status != 200:
            raise RuntimeError(f"the idle holder's request {len(held) + 1} was answered {response.status}")
        held.append(sock)
    return held, refused


def fresh_client_calls(endpoint: str, seconds: float) -> dict:
    """``sdk_calls`` in a new process: its SDK's connection pool is made now, after the
    idle connections, as a client that comes later would make it."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(sdk_calls, (endpoint, seconds))


def beside_idle(endpoint: str, holds: list[int], seconds: float, timeout: float) -> list[dict]:
    host, port = endpoint.rsplit(":", 1)
    rows = [{"beside": 0, "holder_refused": 0, **fresh_client_calls(endpoint, seconds)}]
    for count in holds:
        held, refused = hold_idle(host, int(port), count, timeout)
        try:
            rows.append({"beside": count, "holder_refused": refused, **fresh_client_calls(endpoint, seconds)})
        finally:
            for sock in held:
                sock.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="clients connecting at once in each burst")
    parser.add_argument("--bursts", type=int, default=20)
    parser.add_argument("--idle", type=int, default=100, help="idle keep-alive connections held open in phase 2 "
                        "(below the server's cap of 128, so that the bursts still fit)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as unanswered")
    parser.add_argument("--hold", default="200,1000", help="idle keep-alive connections another client holds "
                        "(comma-separated counts, each a phase)")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds of signed SDK calls in each such phase")
    args = parser.parse_args()
    holds = [int(n) for n in args.hold.split(",") if n]
    if args.clients < 1 or args.bursts < 1 or args.idle < 0:
        parser.error("--clients and --bursts must be at least 1, --idle at least 0")

    with tempfile.TemporaryDirectory() as tmp, EcsProcess(Path(tmp) / "ecs.sqlite") as ecs:
        host, port = ecs.endpoint.rsplit(":", 1)
        rows = [phase("bursts", host, int(port), args)]
        idle = [socket.create_connection((host, int(port)), timeout=args.timeout) for _ in range(args.idle)]
        try:
            rows.append(phase(f"bursts beside {args.idle} idle connections", host, int(port), args))
        finally:
            for sock in idle:
                sock.close()
        neighbours = beside_idle(ecs.endpoint, holds, args.seconds, args.timeout)

    print(f"{'phase':<40} {'requests':>8} {'unanswered':>10} {'connect max':>12} {'request p50':>12} "
          f"{'request max':>12}")
    for r in rows:
        print(f"{r['phase']:<40} {r['requests']:>8} {r['unanswered']:>10} {r['connect_max_s']:>11.3f}s "
              f"{r['request_p50_s']:>11.3f}s {r['request_max_s']:>11.3f}s")
    print(f"\n{'signed SDK calls beside idle connections':<40} {'calls':>8} {'errors':>8} {'p50':>9} {'p95':>9} "
          f"{'holder refused':>15}")
    for n in neighbours:
        p50 = f"{n['p50_ms']:>7.2f}ms" if n["p50_ms"] is not None else f"{'-':>9}"
        p95 = f"{n['p95_ms']:>7.2f}ms" if n["p95_ms"] is not None else f"{'-':>9}"
        print(f"{'beside ' + str(n['beside']) + ' idle':<40} {n['calls']:>8} {n['errors']:>8} {p50} {p95} "
              f"{n['holder_refused']:>15}")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps({"machine": {"cpus": len(os.sched_getaffinity(0)),
                                              "python": platform.python_version()},
                                  "clients": args.clients, "bursts": args.bursts, "idle": args.idle,
                                  "phases": rows, "beside_idle": neighbours}, indent=2) + "\n")
    failed = [r for r in rows if r["unanswered"] or r["connect_max_s"] > CONNECT_BUDGET]
    for r in failed:
        print(f"FAILED {r['phase']}: {r['unanswered']} unanswered, slowest connect {r['connect_max_s']:.3f} s "
              f"(budget {CONNECT_BUDGET} s)")
    for n in neighbours:
        if n["errors"]:
            print(f"FAILED beside {n['beside']} idle: {n['errors']} of {n['calls']} calls failed ({n['error_codes']})")
    return 1 if failed or any(n["errors"] for n in neighbours) else 0


if __name__ == "__main__":
    sys.exit(main())
