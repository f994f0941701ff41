"""Python access to a fake ECS: the admin API over HTTP, and running the service as a
separate process (what the cluster providers, chaos actions and restart tests use)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from zoneproof.waiting import wait_for


class EcsAdminError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"fake ECS admin API answered {status}: {message}")
        self.status = status


class EcsAdmin:
    """Client of the admin API at ``endpoint`` (``host:port``)."""

    def __init__(self, endpoint: str, timeout: float = 10.0):
        self.endpoint = endpoint
        self.timeout = timeout

    def _call(self, method: str, path: str, body: object = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://{self.endpoint}/_admin/{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read()).get("error", "")
            except ValueError:
                message = err.reason
            raise EcsAdminError(err.code, message) from None

    def health(self) -> dict:
        return self._call("GET", "health")

    def state(self) -> dict:
        return self._call("GET", "state")

    def audit(self, after: int = 0) -> list[dict]:
        return self._call("GET", f"audit?after={after}")["entries"]

    def register_instance(self, instance_id: str, zone: str, name: str = "") -> dict:
        return self._call("POST", "instances", {"instance_id": instance_id, "zone": zone, "name": name})

    def register_instances(self, instances: dict[str, str]) -> None:
        """Register instance id -> zone pairs (e.g. a cluster provider's ``instances()``)."""
        for instance_id, zone in sorted(instances.items()):
            self.register_instance(instance_id, zone)

    def deregister_instance(self, instance_id: str) -> None:
        self._call("DELETE", f"instances/{instance_id}")

    def add_fault(self, kind: str, **fields) -> dict:
        return self._call("POST", "faults", {"kind": kind, **fields})

    def faults(self) -> list[dict]:
        return self._call("GET", "faults")["faults"]

    def remove_fault(self, fault_id: int) -> None:
        self._call("DELETE", f"faults/{fault_id}")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")


class EcsProcess:
    """``zoneproof ecs serve`` as a child process, with its state in ``db_path``."""

    def __init__(self, db_path: Path, *, args: tuple[str, ...] = (), log_path: Path | None = None,
                 cpu: int | None = None, host: str = "127.0.0.1"):
        self.db_path = Path(db_path)
        self.args = args
        self.host = host  # where it listens; nodes in containers reach the host on their gateway
        self.cpu = cpu  # confine the service to this CPU core (benchmarks)
        self.log_path = log_path  # where its log goes; by default kept for the start-up error only
        self.proc: subprocess.Popen | None = None
        self._stderr = None
        self.endpoint = ""

    def start(self, timeout: float = 30) -> "EcsProcess":
        port_file = Path(tempfile.mkstemp(prefix="zp-ecs-port-")[1])
        port_file.unlink()
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        stderr = open(self.log_path, "ab") if self.log_path else tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zoneproof.cli", "ecs", "serve", "--db", str(self.db_path),
             "--port-file", str(port_file), "--host", self.host, *self.args],
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, {self.cpu})) if self.cpu is not None else None)
        self._stderr = stderr

        def port_written():
            if self.proc.poll() is not None:
                raise RuntimeError(f"fake ECS exited with {self.proc.returncode}: {self._log_tail()}")
            return port_file.exists() and port_file.read_text().strip() != "", "no port yet"

        try:
            wait_for(port_written, what="the fake ECS to listen", timeout=timeout, interval=0.05)
            self.endpoint = f"{self.host}:{port_file.read_text().strip()}"
        finally:
            port_file.unlink(missing_ok=True)
        return self

    def _log_tail(self) -> str:
        if self.log_path:
            return self.log_path.read_text(errors="replace")[-2000:]
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    def kill(self) -> None:
        """``kill -9``: no clean-up, no flush; what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self._stderr:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> "EcsProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_healthy(endpoint: str, timeout: float = 10) -> None:
    def check():
        try:
            return EcsAdmin(endpoint, timeout=1).health()["ok"], "answering"
        except (OSError, EcsAdminError) as err:
            return False, str(err)

    wait_for(check, what=f"fake ECS at {endpoint}", timeout=timeout, interval=0.1)
