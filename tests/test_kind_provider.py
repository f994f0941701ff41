"""The kind provider end to end: node containers with real kubelets, disks that are block
devices of the node their instance is, the reference driver's node plugin registered by the
kubelets, the article's StatefulSet over three zones with data on ext4 in its volumes, a
node power cut through the ECS API, the pod back in its zone with its data, and nothing
left after."""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import datetime, timezone

import pytest
import yaml
from kubernetes import client
from kubernetes.stream import stream

from zoneproof import data, labels, manifests, oracle
from zoneproof.cluster import blockdev
from zoneproof.cluster import docker as docker_daemon
from zoneproof.cluster.kind import KIND_CLUSTER_LABEL, KindProvider
from zoneproof.cluster.spec import ClusterSpec
from zoneproof.deploy import incluster
from zoneproof.deploy.driver import DriverDeployment
from zoneproof.processes import processes_under
from zoneproof.profile import PROFILES, load_profile, parse_profile
from zoneproof.waiting import wait_for

# A first run builds the node image's tools and the images (about 10 minutes here).
pytestmark = [pytest.mark.cluster, pytest.mark.kind, pytest.mark.timeout(3600)]
log = logging.getLogger(__name__)

NAME = "zp-kindtest"
ZONES = ("cn-beijing-a", "cn-beijing-b", "cn-beijing-c")
NAMESPACE = "zp-kind-data"


def _leftovers(provider: KindProvider, private: bool, made_network: bool) -> list[str]:
    found = []
    if provider.cluster_dir.exists():
        found.append(f"cluster directory {provider.cluster_dir}")
    if private and docker_daemon.attached().private:
        found.append("the private Docker daemon, still running")
    # Look into the daemon's state too (a stopped private daemon keeps its containers).
    with docker_daemon.borrowed(f"{NAME}-check") as daemon:
        out = daemon.run("ps", "-a", "--filter", f"label={KIND_CLUSTER_LABEL}={NAME}", "--format", "{{.Names}}")
        found += [f"container {n}" for n in out.stdout.decode().split()]
        if made_network and daemon.run("network", "inspect", "kind", check=False).returncode == 0:
            found.append("the kind network")
    mounts = subprocess.run(["grep", "-c", NAME, "/proc/self/mountinfo"], capture_output=True, text=True)
    if mounts.stdout.strip() not in ("", "0"):
        found.append(f"{mounts.stdout.strip()} mounts naming {NAME}")
    return found


def _placed(provider: KindProvider, cloud, profile, replicas: int, namespace: str = NAMESPACE) -> oracle.Verdict:
    def check():
        verdict = oracle.check(oracle.take_snapshot(provider.api_client, cloud, namespace, driver=profile.driver),
                               driver=profile.driver)
        if any(not p.ok for p in verdict.pods):  # a violation fails at once; no pod yet is waited for
            raise AssertionError(f"placement violation:\n{verdict.table()}")
        return oracle.settled(verdict, replicas)[0], oracle.settled(verdict, replicas)[1]

    wait_for(check, what=f"{replicas} pods placed in their disks' zones", timeout=240)
    return oracle.check(oracle.take_snapshot(provider.api_client, cloud, namespace, driver=profile.driver),
                        driver=profile.driver)


def _running_again(core: client.CoreV1Api, pod_name: str, since: datetime) -> None:
    """Until the pod's container runs again, started after ``since`` (the kubelet of a
    node that lost power restarts everything; the API may still show the old state)."""
    def check():
        try:
            pod = core.read_namespaced_pod(pod_name, NAMESPACE)
        except client.exceptions.ApiException as err:
            if err.status == 404:
                return False, "pod not recreated yet"
            raise
        statuses = pod.status.container_statuses or []
        running = [c.state.running for c in statuses if c.state and c.state.running and c.ready]
        fresh = [r for r in running if r.started_at and r.started_at > since]
        return bool(fresh), f"{pod_name} {pod.status.phase} on {pod.spec.node_name or 'no node'}"

    wait_for(check, what=f"{pod_name} to run again after the power cut", timeout=180)


@pytest.fixture(scope="module")
def kind():
    """A kind cluster, one worker per zone, with the reference driver; torn down after the
    module, and then nothing may be left: containers, mounts, processes, loop devices."""
    spec = ClusterSpec(name=NAME, zones=ZONES, nodes_per_zone=1)
    provider = KindProvider(spec)
    profile = load_profile("reference")
    private = made_network = False
    deployment = None
    try:
        provider.up()
        private, made_network = provider._state()["private_docker"], provider._state()["made_network"]
        deployment = DriverDeployment(provider, profile, logs=provider.cluster_dir / "driver-logs")
        deployment.up()
        yield provider, deployment, profile
    finally:
        try:
            if deployment is not None:
                deployment.down()
        finally:
            provider.down()
    assert not processes_under(provider.cluster_dir)
    assert _leftovers(provider, private, made_network) == []
    # A loop released under a mounted filesystem goes once its node's mounts have gone.
    wait_for(lambda: (not blockdev.loops_under(provider.cluster_dir, released=True),
                      blockdev.loops_under(provider.cluster_dir, released=True)),
             what="the disks' loop devices to go with their nodes", timeout=30)


def _workers(provider: KindProvider) -> dict[str, tuple[str, str]]:
    """Worker name -> (zone, instance id)."""
    return {n.metadata.name: (n.metadata.labels[labels.ZONE], n.metadata.labels[labels.INSTANCE_ID])
            for n in provider.core.list_node().items if not n.metadata.name.endswith("-control-plane")}


def _power_cycle(provider: KindProvider, cloud, node: str, instance: str, while_off=None) -> None:
    """A power cut through the ECS API, as the chaos experiments make one, and power back."""
    cloud.stop_instances([instance])
    provider.wait_nodes_ready([node], ready=False, timeout=provider.spec.timings.not_ready_bound + 30)
    if while_off is not None:
        while_off()
    cloud.start_instances([instance])
    provider.wait_nodes_ready([node], timeout=120)


def _shows(provider: KindProvider, node: str, test: str) -> bool:
    return provider.run_on_node(node, "sh", "-c", f"if {test}; then echo yes; else echo no; fi").strip() == "yes"


def test_an_attached_disk_is_a_block_device_of_its_instances_node_only(kind):
    provider, deployment, profile = kind
    cloud = deployment.cloud()
    workers = _workers(provider)
    assert len(workers) == len(ZONES)
    for node in provider.core.list_node().items:
        if node.metadata.name in workers:
            assert node.spec.provider_id.startswith("alicloud://cn-beijing.i-")
            assert node.metadata.labels[labels.INSTANCE_ID] in node.spec.provider_id
    holder = sorted(workers)[0]
    zone, instance = workers[holder]
    disk = cloud.api.call("CreateDisk", RegionId=cloud.region, ZoneId=zone, DiskCategory=profile.disk_categories[0],
                          Size=profile.min_size_gib)["DiskId"]
    try:
        cloud.api.call("AttachDisk", DiskId=disk, InstanceId=instance)
        described = cloud.describe_disks([disk])[0]
        device, link = described["Device"], f"/dev/disk/by-id/virtio-{described['SerialNumber']}"
        assert _shows(provider, holder, f"[ -b {device} ] && [ $(readlink -f {link}) = {device} ]")
        for other in set(workers) - {holder}:
            assert not _shows(provider, other, f"[ -e {link} ]"), other
        token = f"written-on-{holder}"
        provider.run_on_node(holder, "sh", "-c", f"printf {token} | dd of={link} conv=fsync status=none")

        def nothing_while_off():
            # The node is off: its loop device was cut and released before the power went.
            assert blockdev.loops_under(provider.disk_root) == {}
        _power_cycle(provider, cloud, holder, instance, while_off=nothing_while_off)
        assert _shows(provider, holder, f"[ -b {device} ]")  # given back to the node that started again
        read = provider.run_on_node(holder, "sh", "-c", f"dd if={link} bs={len(token)} count=1 status=none")
        assert read == token

        cloud.api.call("DetachDisk", DiskId=disk, InstanceId=instance)
        assert not _shows(provider, holder, f"[ -e {link} ] || [ -e {device} ]")
        assert blockdev.loops_under(provider.disk_root) == {}
    finally:
        cloud.api.wait_disk(disk, {"Available"})
        cloud.api.call("DeleteDisk", DiskId=disk)
    assert not list(provider.disk_root.glob(f"*/{disk}*"))  # its image went with it


def test_statefulset_data_follows_its_disk_through_a_power_cut(kind):
    provider, deployment, profile = kind
    workers = list(_workers(provider))
    # The driver image is in the nodes now: loading it again does nothing (no kind call).
    loaded = json.loads(provider.state_file.read_text())["loaded_images"]
    assert len(loaded) == 1, loaded
    real_kind, provider._kind = provider._kind, None  # calling it would fail the test
    provider.load_images(*loaded)
    provider._kind = real_kind
    # The kubelet, not zoneproof, labelled each worker from NodeGetInfo.
    for node in provider.core.list_node().items:
        if node.metadata.name in workers:
            assert node.metadata.labels[labels.DISK_ZONE] == node.metadata.labels[labels.ZONE]

    api = provider.api_client
    cloud = deployment.cloud()
    provider.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    scheme = profile.storage_classes["wait-for-first-consumer"]
    sc = profile.storage_class("wait-for-first-consumer", f"{NAMESPACE}-wffc", list(ZONES))
    client.StorageV1Api(api).create_storage_class(sc)
    assert scheme.binding == "WaitForFirstConsumer"
    sts = data.runnable(manifests.statefulset(len(ZONES), sc["metadata"]["name"], size=profile.size))
    client.AppsV1Api(api).create_namespaced_stateful_set(NAMESPACE, sts)

    verdict = _placed(provider, cloud, profile, len(ZONES))
    ledger = data.DataLedger()
    assert ledger.check(provider.core, NAMESPACE, expected=len(ZONES)) == len(ZONES)
    pods = provider.core.list_namespaced_pod(NAMESPACE).items
    for device, _, fstype, *_ in _data_mounts(provider.core, NAMESPACE):  # ext4 on its disk's block device
        assert device.startswith("/dev/vd") and fstype == "ext4", (device, fstype)

    # Power cut on the node of web-1, through the ECS API: the kubelet dies with its
    # container, the disk's device is cut first.
    victim = next(p for p in pods if p.metadata.name.endswith("-1"))
    node, zone = victim.spec.node_name, next(p.node_zone for p in verdict.pods if p.pod == victim.metadata.name)
    cut = datetime.now(timezone.utc).replace(microsecond=0)
    _power_cycle(provider, cloud, node, _workers(provider)[node][1])
    _running_again(provider.core, victim.metadata.name, cut)

    verdict = _placed(provider, cloud, profile, len(ZONES))
    back = next(p for p in verdict.pods if p.pod == victim.metadata.name)
    assert back.node_zone == zone
    assert ledger.check(provider.core, NAMESPACE, expected=len(ZONES)) == len(ZONES)

    # A driver taken down is gone when down() returns: the next deployment must not
    # meet its DaemonSet still being deleted.
    deployment.down()
    left = client.AppsV1Api(api).list_daemon_set_for_all_namespaces(field_selector=f"metadata.name={incluster.NAME}")
    assert not left.items, [d.metadata.deletion_timestamp for d in left.items]


def _in_pod(core: client.CoreV1Api, pod: client.V1Pod, command: list[str], container: str | None = None) -> str:
    api = client.ApiClient(core.api_client.configuration)  # see zoneproof.data.read_token
    try:
        return stream(client.CoreV1Api(api).connect_get_namespaced_pod_exec, pod.metadata.name,
                      pod.metadata.namespace, container=container or pod.spec.containers[0].name, command=command,
                      stderr=False, stdin=False, stdout=True, tty=False)
    finally:
        api.close()


def _data_mounts(core: client.CoreV1Api, namespace: str) -> list[list[str]]:
    """Each pod's /data mount line (device, path, type, ...)."""
    found = []
    for pod in core.list_namespaced_pod(namespace).items:
        mounts = _in_pod(core, pod, ["cat", "/proc/mounts"])
        found.append(next(line.split() for line in mounts.splitlines() if line.split()[1] == "/data"))
    return found


# The metadata document of the node, asked as the Alibaba plugin asks: a token, then the document.
ASK_METADATA = ("import json, urllib.request as u; base = 'http://100.100.100.200/latest/'; "
                "token = u.urlopen(u.Request(base + 'api/token', method='PUT', headers={"
                "'X-aliyun-ecs-metadata-token-ttl-seconds': '60'})).read().decode(); "
                "print(u.urlopen(u.Request(base + 'dynamic/instance-identity/document', headers={"
                "'X-aliyun-ecs-metadata-token': token})).read().decode())")


def test_a_node_plugin_built_from_a_driver_binary_runs_as_its_profile_declares(kind, tmp_path):
    """The path the upstream plugin's node side takes, with the reference driver's own node
    command as the "binary": an image built around it, the DaemonSet with the profile's
    environment and host mounts, registered by the kubelets, and each node answering as
    ECS's instance metadata service for its own instance, on an address of its own."""
    provider, first, reference = kind
    first.down()  # the module's deployment; the test before has checked what it needed
    binary = tmp_path / "reference-driver"
    binary.write_text('#!/bin/sh\nexec python3 -m zoneproof.cli "$@"\n')
    binary.chmod(0o755)
    body = yaml.safe_load(PROFILES.joinpath("reference.yaml").read_text())
    body["run"]["binary"] = "required"
    keys = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "{access_key_id}", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "{access_key_secret}"}
    body["run"]["node_plugin"] = {
        "image": "driver-binary", "metadata_service": True, "env": keys,
        "command": ["{driver_binary}", "csi", "serve", "--endpoint", "{endpoint}", "--ecs-endpoint", "{ecs_endpoint}",
                    "--region", "{region}", "--node-name", "{node_name}", "--block-devices"],
        "mounts": [{"host_path": "/var/lib/zoneproof-binary-test", "mount_path": "/host/test"}]}
    profile = parse_profile(body, "the reference driver as a driver binary")
    deployment = DriverDeployment(provider, profile, driver_binary=str(binary),
                                  logs=provider.cluster_dir / "driver-logs")
    namespace = "zp-kind-binary"
    try:
        deployment.up()  # returns once every kubelet registered the node plugin
        cloud = deployment.cloud()
        workers = _workers(provider)
        plugins = provider.core.list_namespaced_pod(incluster.NAMESPACE, label_selector=f"app={incluster.NAME}").items
        assert sorted(p.spec.node_name for p in plugins) == sorted(workers)
        for pod in plugins:
            plugin = next(c for c in pod.spec.containers if c.name == "node-plugin")
            assert plugin.image.startswith("zoneproof/driver-binary:")
            assert plugin.command[0] == "/usr/local/bin/csi-driver"
            assert "/host/test" in [m.mount_path for m in plugin.volume_mounts]
            zone, instance = workers[pod.spec.node_name]
            document = json.loads(_in_pod(provider.core, pod, ["python3", "-c", ASK_METADATA], "instance-metadata"))
            assert (document["instance-id"], document["zone-id"]) == (instance, zone)
            assert cloud.describe_instances([instance])[0]["ZoneId"] == zone
            # The address is the node's own: answered on its loopback, never sent out.
            route = _in_pod(provider.core, pod, ["ip", "route", "get", "100.100.100.200"], "instance-metadata")
            assert route.startswith("local 100.100.100.200 dev lo"), route

        provider.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        sc = profile.storage_class("wait-for-first-consumer", f"{namespace}-wffc", list(ZONES))
        client.StorageV1Api(provider.api_client).create_storage_class(sc)
        sts = data.runnable(manifests.statefulset(1, sc["metadata"]["name"], size=profile.size))
        client.AppsV1Api(provider.api_client).create_namespaced_stateful_set(namespace, sts)
        _placed(provider, cloud, profile, 1, namespace)
        assert data.DataLedger().check(provider.core, namespace, expected=1) == 1
        (device, _, fstype, *_), = _data_mounts(provider.core, namespace)
        assert device.startswith("/dev/vd") and fstype == "ext4", (device, fstype)
    finally:
        deployment.down()
    left = provider.core.list_namespaced_pod(incluster.NAMESPACE, label_selector=f"app={incluster.NAME}").items
    assert not left
    for node in workers:  # the metadata service took its address off each node as it went
        assert "100.100.100.200" not in provider.run_on_node(node, "ip", "-o", "address", "show", "dev", "lo")
