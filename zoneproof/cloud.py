"""The cloud under test, reached only through the ECS API with the official SDK, so that one
verdict holds against the fake ECS beside a local cluster and against a real Alibaba Cloud
region alike: disks and instances for the oracle, CreateDisk/DeleteDisk for static PVs,
StopInstances/StartInstances for power cuts. The fake's admin API (its audit log and fault
injection, which no cloud API offers) is used where the endpoint is the fake's.

Against an existing cluster the endpoint and credentials come from the environment
variables the Alibaba disk plugin itself reads: ``ECS_ENDPOINT`` (host:port),
``ALICLOUD_CLIENT_SCHEME`` (http or https, default https), ``ALIBABA_CLOUD_ACCESS_KEY_ID``,
``ALIBABA_CLOUD_ACCESS_KEY_SECRET`` and ``REGION_ID``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

from zoneproof.ecsapi import CloudError, EcsApi, EcsSettings
from zoneproof.ecs.admin import EcsAdmin, EcsAdminError
from zoneproof.ecs.server import DEFAULT_CREDENTIALS

BATCH = 100  # ECS takes at most 100 ids per DescribeDisks/DescribeInstances/StopInstances call
ENV_VARS = ("ECS_ENDPOINT", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET")


class CloudConfigError(ValueError):
    """The cloud cannot be reached as configured; the message names what is missing."""


def _batches(ids: list[str]) -> list[list[str]]:
    ids = sorted(set(i for i in ids if i))
    return [ids[n:n + BATCH] for n in range(0, len(ids), BATCH)]


@dataclass(frozen=True)
class CloudAccess:
    endpoint: str  # host:port
    region: str
    access_key_id: str
    access_key_secret: str
    protocol: str = "http"

    @classmethod
    def fake(cls, endpoint: str, region: str) -> "CloudAccess":
        """The fake ECS at ``endpoint`` with its default credentials."""
        key_id, secret = next(iter(DEFAULT_CREDENTIALS.items()))
        return cls(endpoint, region, key_id, secret)

    @classmethod
    def from_env(cls, region: str = "", environ: dict[str, str] | None = None) -> "CloudAccess":
        env = os.environ if environ is None else environ
        missing = [name for name in ENV_VARS if not env.get(name)]
        region = env.get("REGION_ID") or region
        if not region:
            missing.append("REGION_ID")
        if missing:
            raise CloudConfigError(f"to reach the cloud set {', '.join(missing)} (the ECS endpoint as host:port and "
                                   "credentials, as the Alibaba disk plugin reads them)")
        scheme = env.get("ALICLOUD_CLIENT_SCHEME", "https").lower()
        if scheme not in ("http", "https"):
            raise CloudConfigError(f"ALICLOUD_CLIENT_SCHEME must be http or https, not {scheme!r}")
        return cls(env["ECS_ENDPOINT"], region, env["ALIBABA_CLOUD_ACCESS_KEY_ID"],
                   env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], scheme)

    def env(self) -> dict[str, str]:
        """The same access as environment variables (for a driver or a child process)."""
        return {"ECS_ENDPOINT": self.endpoint, "ALICLOUD_CLIENT_SCHEME": self.protocol, "REGION_ID": self.region,
                "ALIBABA_CLOUD_ACCESS_KEY_ID": self.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": self.access_key_secret}

    @cached_property
    def api(self) -> EcsApi:
        return EcsApi(EcsSettings(self.endpoint, self.access_key_id, self.access_key_secret, self.region,
                                    self.protocol))

    @cached_property
    def admin(self) -> EcsAdmin | None:
        """The fake ECS's admin API when the endpoint is the fake's; None for a real cloud."""
        if self.protocol != "http":
            return None
        candidate = EcsAdmin(self.endpoint, timeout=5)
        try:
            candidate.health()
        except (OSError, EcsAdminError):
            return None
        return candidate

    # ------------------------------------------------------------ reads for the oracle
    def _describe(self, kind: str, ids: list[str]) -> list[dict]:
        """DescribeDisks or DescribeInstances (``kind``: Disk, Instance) of the named ids."""
        found = []
        for batch in _batches(ids):
            answer = self.api.call(f"Describe{kind}s", RegionId=self.region, **{f"{kind}Ids": batch}, PageSize=BATCH)
            found += answer[f"{kind}s"][kind]
        return found

    def describe_disks(self, disk_ids: list[str]) -> list[dict]:
        return self._describe("Disk", disk_ids)

    def describe_instances(self, instance_ids: list[str]) -> list[dict]:
        return self._describe("Instance", instance_ids)

    def state(self, disk_ids: list[str], instance_ids: list[str]) -> dict:
        """What the oracle compares Kubernetes with: the named disks and instances."""
        return {"disks": self.describe_disks(disk_ids), "instances": self.describe_instances(instance_ids)}

    def disk_quantity(self, instance_id: str) -> int:
        """How many data disks the instance's type can hold."""
        return self.api.disk_quantity(instance_id)

    def disks_held(self, instance_id: str) -> list[str]:
        """The disks attached to the instance."""
        return sorted(d["DiskId"] for d in self.api.describe_disks(InstanceId=instance_id))

    # ------------------------------------------------------------ power
    def stop_instances(self, instance_ids: list[str]) -> None:
        """A power cut: ``ForceStop`` skips the guest's shutdown, as pulling the plug does."""
        for batch in _batches(instance_ids):
            self.api.call("StopInstances", RegionId=self.region, InstanceId=batch, ForceStop=True,
                          BatchOptimization="AllTogether")

    def start_instances(self, instance_ids: list[str]) -> None:
        for batch in _batches(instance_ids):
            self.api.call("StartInstances", RegionId=self.region, InstanceId=batch,
                          BatchOptimization="AllTogether")

    def release_instance(self, instance_id: str) -> None:
        """DeleteInstance of a stopped instance: its data disks detach and stay."""
        self.api.call("DeleteInstance", InstanceId=instance_id)

    def stopped(self, instance_ids: list[str]) -> list[str]:
        """The named instances whose status is not Running."""
        return sorted(i["InstanceId"] for i in self.describe_instances(instance_ids) if i.get("Status") != "Running")


__all__ = ["CloudAccess", "CloudConfigError", "CloudError"]
