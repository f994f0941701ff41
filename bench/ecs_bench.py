#!/usr/bin/env python3
"""Benchmark of the fake ECS: requests per second and p50/p99 latency of CreateDisk,
AttachDisk and DescribeDisks over HTTP, with RPC-style (HMAC-SHA1) signed requests.

    .venv/bin/python bench/ecs_bench.py                          # 4 threads, 2000 requests per action
    .venv/bin/python bench/ecs_bench.py --threads 8 --requests 5000 --time-limit 120

The fake ECS runs as its own process (``zoneproof ecs serve`` on a SQLite file) pinned to
one core, so the numbers are those of one core. The load generator signs every request,
which costs CPU too, so it pins itself to another core when the machine has one. Each
client thread holds one keep-alive connection. DescribeDisks runs against the disks the
CreateDisk phase made: by the ids of 10 random disks, and as one unfiltered page of 100.

Latency is measured from sending a signed request to having read its answer; rps is
completed requests over the wall time of the phase. Results are printed as a table and
written to reports/bench-ecs.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aliyunsdkcore.auth.composer.rpc_signature_composer import get_signed_url  # noqa: E402

from zoneproof.ecs.actions import API_VERSION  # noqa: E402
from zoneproof.ecs.admin import EcsAdmin, EcsProcess  # noqa: E402
from zoneproof.ecs.catalog import MAX_DISKS_PER_INSTANCE  # noqa: E402
from zoneproof.ecs.server import DEFAULT_CREDENTIALS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "reports" / "bench-ecs.json"
REGION = "cn-beijing"
ZONES = ("cn-beijing-a", "cn-beijing-b", "cn-beijing-c")  # the server's defaults
KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))


def choose_cores() -> tuple[int | None, int | None]:
    """(server core, client core): two different cores when there are two, else share."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    return cores[0], (cores[1] if len(cores) > 1 else None)


# ---------------------------------------------------------------- the load generator
class ApiError(Exception):
    pass


class Client:
    """One keep-alive connection sending RPC-signed GET requests."""

    def __init__(self, endpoint: str):
        host, port = endpoint.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, action: str, params: dict[str, str]) -> tuple[dict, float]:
        """Return (answer, seconds from send to answer read); signing is not timed."""
        url, _ = get_signed_url({"Action": action, "Version": API_VERSION, **params}, KEY_ID, SECRET, "JSON",
                                "GET", {})
        started = time.perf_counter()
        try:
            self.conn.request("GET", url)
            resp = self.conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnects on the next request
            raise
        elapsed = time.perf_counter() - started
        doc = json.loads(body)
        if resp.status != 200:
            raise ApiError(f"{action} answered {resp.status} {doc.get('Code')}: {doc.get('Message')}")
        return doc, elapsed

    def close(self) -> None:
        self.conn.close()


def run_phase(clients: list[Client], action: str, requests: list[dict[str, str]], time_limit: float) -> dict:
    """Send the requests from all clients at once; return counts, rps, latencies, answers."""
    lock = threading.Lock()
    pending = iter(enumerate(requests))
    latencies: list[float] = []
    answers: list[dict | None] = [None] * len(requests)
    errors: list[str] = []
    start = threading.Barrier(len(clients) + 1)
    deadline = [0.0]

    def work(client: Client) -> None:
        start.wait()
        while time.perf_counter() < deadline[0]:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            index, params = item
            try:
                answers[index], elapsed = client.call(action, params)
            except (ApiError, OSError, http.client.HTTPException, ValueError) as err:
                with lock:
                    errors.append(str(err))
                continue
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    began = time.perf_counter()
    deadline[0] = began + time_limit
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    latencies.sort()
    done = len(latencies)

    def pct(q: float) -> float:  # nearest-rank percentile, in milliseconds
        return round(latencies[min(done - 1, int(q * done))] * 1000, 2) if done else float("nan")

    return {"sent": done + len(errors), "ok": done, "errors": len(errors), "first_error": errors[0] if errors else "",
            "planned": len(requests), "seconds": round(wall, 3), "rps": round(done / wall, 1) if wall else 0.0,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0), "answers": answers}


# ---------------------------------------------------------------- the benchmark
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=4, help="concurrent client connections")
    parser.add_argument("--requests", type=int, default=2000, help="requests per action")
    parser.add_argument("--time-limit", type=float, default=60, help="seconds at most per action")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    server_core, client_core = choose_cores()
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})  # this process and its threads: the clients
    result: dict = {"machine_cores": os.cpu_count(), "server_core": server_core, "client_core": client_core,
                    "python": platform.python_version(), "threads": args.threads, "requests": args.requests,
                    "time_limit_seconds": args.time_limit, "actions": {}}

    with tempfile.TemporaryDirectory(prefix="zp-ecs-bench-") as tmp:
        server = EcsProcess(Path(tmp) / "ecs.sqlite", cpu=server_core, log_path=Path(tmp) / "server.log",
                            args=("--region", REGION, "--zones", ",".join(ZONES)))
        clients: list[Client] = []
        try:
            server.start()
            admin = EcsAdmin(server.endpoint)

            # Enough instances per zone that every disk made below can be attached once.
            per_zone = -(-args.requests // len(ZONES))
            instances = {z: [f"i-bench-{i}-{k}" for k in range(-(-per_zone // MAX_DISKS_PER_INSTANCE))]
                         for i, z in enumerate(ZONES)}
            for zone, ids in instances.items():
                for instance_id in ids:
                    admin.register_instance(instance_id, zone)

            clients = [Client(server.endpoint) for _ in range(args.threads)]
            for client in clients:  # open every connection before the clock starts
                client.call("DescribeRegions", {})

            def record(name: str, phase: dict) -> dict:
                result["actions"][name] = {k: v for k, v in phase.items() if k != "answers"}
                return phase

            zones = [ZONES[i % len(ZONES)] for i in range(args.requests)]
            created = record("CreateDisk", run_phase(clients, "CreateDisk", [
                {"RegionId": REGION, "ZoneId": z, "DiskCategory": "cloud_essd", "Size": "20"} for z in zones],
                args.time_limit))
            disks = [(a["DiskId"], z) for a, z in zip(created["answers"], zones) if a]
            if not disks:
                raise RuntimeError(f"no disk was created: {created['first_error']}")

            # Each disk to the next instance of its zone with a free slot.
            used = {z: 0 for z in ZONES}
            attaches = []
            for disk_id, zone in disks:
                instance_id = instances[zone][used[zone] // MAX_DISKS_PER_INSTANCE]
                attaches.append({"DiskId": disk_id, "InstanceId": instance_id})
                used[zone] += 1
            record("AttachDisk", run_phase(clients, "AttachDisk", attaches, args.time_limit))

            ids = [d for d, _ in disks]
            record("DescribeDisks (10 ids)", run_phase(clients, "DescribeDisks", [
                {"RegionId": REGION, "DiskIds": json.dumps(rng.sample(ids, min(10, len(ids))))}
                for _ in range(args.requests)], args.time_limit))
            record("DescribeDisks (page of 100)", run_phase(clients, "DescribeDisks", [
                {"RegionId": REGION, "PageSize": "100"} for _ in range(args.requests)], args.time_limit))
            result["disks_in_store"] = len(disks)
        finally:
            for client in clients:
                client.close()
            server.stop()

    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2))

    print()
    print(f"fake ECS benchmark  (server on core {server_core}, clients on core {client_core}, "
          f"{args.threads} threads, {args.requests} requests per action, Python {result['python']})")
    print(f"  {'action':<28} {'ok':>6} {'errors':>6} {'seconds':>8} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in result["actions"].items():
        print(f"  {name:<28} {r['ok']:>6} {r['errors']:>6} {r['seconds']:>8.2f} {r['rps']:>8.1f} "
              f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}")
        if r["errors"]:
            print(f"    first error: {r['first_error']}")
        if r["sent"] < r["planned"]:
            print(f"    stopped by the time limit after {r['sent']} of {r['planned']} requests")
    print(f"  written to {REPORT}")
    return 0 if all(r["errors"] == 0 for r in result["actions"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
