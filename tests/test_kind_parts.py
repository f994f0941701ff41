"""The kind provider's parts that need no cluster: its kind config, the pod network
manifest, the edits to kind's node files, the plugin registration the kubelet talks to,
the node plugin's block devices and mounts, and the data ledger."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
import yaml
from kubernetes import client

from zoneproof import data, labels
from zoneproof.cluster import blockdev
from zoneproof.cluster.base import ClusterError
from zoneproof.cluster.kind import (KindProvider, kind_config, kubelet_flags_for, pack_one, plan_workers,
                                    pod_network_manifest, unpack_one)
from zoneproof.cluster.nodeimage import NODE_FILE_EDITS, module_dir
from zoneproof.cluster.spec import ClusterSpec, Timings
from zoneproof.csi import node as node_module
from zoneproof.csi.identity import IdentityService
from zoneproof.deploy.incluster import refusal_of
from zoneproof.deploy.plugin_registration import registration, registration_grpc, registration_socket, serve
from zoneproof.csi.proto import load
from zoneproof.ecs.storage import DiskStorage

csi, csi_grpc = load()
SPEC = ClusterSpec(name="zp", zones=("za-1", "zb-1"), nodes_per_zone=2,
                   timings=Timings(node_monitor_grace_period=9, node_lease_duration=10))


def test_workers_are_named_as_kind_names_them_and_spread_over_the_zones():
    workers = plan_workers(SPEC)
    assert [w.name for w in workers] == ["zp-worker", "zp-worker2", "zp-worker3", "zp-worker4"]
    assert [w.zone for w in workers] == ["za-1", "za-1", "zb-1", "zb-1"]
    assert len({w.instance_id for w in workers}) == 4


def test_kind_config_carries_labels_provider_ids_and_timings():
    config = kind_config(SPEC, own_pod_network=True)
    assert config["networking"]["disableDefaultCNI"] is True
    control, *workers = config["nodes"]
    assert control == {"role": "control-plane"}
    for node, planned in zip(workers, plan_workers(SPEC)):
        assert node["labels"][labels.ZONE] == node["labels"][labels.ZONE_DEPRECATED] == planned.zone
        assert node["labels"][labels.INSTANCE_ID] == planned.instance_id
        assert node["labels"][labels.INSTANCE_TYPE].startswith("ecs.")  # as ACK nodes are labelled
        assert labels.DISK_ZONE not in node["labels"]  # the kubelet adds it from NodeGetInfo
        assert "extraMounts" not in node  # no node sees the disks' images: only devices its attaches make
        patch = yaml.safe_load(node["kubeadmConfigPatchesJSON6902"][0]["patch"])
        assert patch[0]["op"] == "test" and patch[1]["value"] == planned.provider_id
    cluster_patch = yaml.safe_load(config["kubeadmConfigPatchesJSON6902"][0]["patch"])
    args = {p["value"]["name"]: p["value"]["value"] for p in cluster_patch}
    assert args["node-monitor-grace-period"] == "9s"
    assert args["default-unreachable-toleration-seconds"] == "30"
    kubelet = yaml.safe_load(config["kubeadmConfigPatches"][0])
    assert kubelet["nodeLeaseDurationSeconds"] == 10


FLAGS = ('KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock '
         '--node-ip=172.18.0.3 --node-labels=topology.kubernetes.io/zone=za-1,x=y '
         '--pod-infra-container-image=registry.k8s.io/pause:3.10 --provider-id=alicloud://r.i-old"\n')


def test_a_node_made_again_elsewhere_gets_kubelet_flags_naming_only_its_new_machine():
    worker = plan_workers(SPEC)[0]
    moved = replace(worker, zone="zb-1", instance_id="i-new")
    flags = kubelet_flags_for(FLAGS, moved)
    args = dict(arg.split("=", 1) for arg in flags.split('"')[1].split())
    labelled = dict(pair.split("=", 1) for pair in args["--node-labels"].split(","))
    assert labelled == moved.labels and labelled[labels.ZONE] == "zb-1" and "x" not in labelled
    assert args["--provider-id"] == moved.provider_id
    # every other flag as kubeadm wrote it, and the file's shape kept
    assert args["--node-ip"] == "172.18.0.3" and args["--pod-infra-container-image"].endswith("pause:3.10")
    assert flags.startswith('KUBELET_KUBEADM_ARGS="') and flags.endswith('"\n')
    assert kubelet_flags_for(flags, worker) == kubelet_flags_for(FLAGS, worker)  # and back, as planned


@pytest.mark.parametrize("text, named", [("KUBELET_EXTRA=1\n", "KUBELET_KUBEADM_ARGS"),
                                         ('KUBELET_KUBEADM_ARGS="--node-ip=1.2.3.4 --provider-id=x"\n',
                                          "--node-labels")])
def test_kubelet_flags_that_cannot_name_the_machine_are_refused(text, named):
    with pytest.raises(ClusterError, match=named):
        kubelet_flags_for(text, plan_workers(SPEC)[0])


def test_one_file_goes_through_docker_cps_tar_both_ways():
    assert unpack_one(pack_one("kubeadm-flags.env", FLAGS.encode())) == FLAGS.encode()


def test_pod_network_manifest_fills_only_its_own_placeholders():
    docs = pod_network_manifest("zp")
    text = yaml.safe_dump_all(docs)
    assert "${" not in text.replace("${NODE_NAME}", "")  # none of ours left
    script = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["agent.sh"]
    assert "$creds" in script and "$NODE_NAME" in script  # the agent's own shell variables stay
    env = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "API_SERVER", "value": "zp-control-plane:6443"} in env


def test_every_edit_to_kinds_node_files_applies_exactly_once():
    files = module_dir("kind") / "images" / "base" / "files"
    for edit in NODE_FILE_EDITS:
        text = (files / edit.path).read_text()
        # An edit inserting before a line it also keeps applies to the original text.
        assert text.count(edit.old) == 1, f"{edit.path}: {edit.old[:50]!r} ({edit.why})"


def test_bad_provider_choices_are_refused():
    with pytest.raises(Exception, match="node image choice 'latest'"):
        KindProvider(SPEC, node_image="latest")
    with pytest.raises(Exception, match="privileged choice 'yes'"):
        KindProvider(SPEC, privileged="yes")


def _serve_plugin(socket: Path) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    csi_grpc.add_IdentityServicer_to_server(IdentityService(with_controller=False), server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    return server


@pytest.fixture
def short_dir():
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="zp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_registration_names_the_plugin_and_ends_when_the_kubelet_refuses(short_dir):
    plugin = short_dir / "csi.sock"
    registry = short_dir / "registry"
    mark = short_dir / "registered"
    mark.write_text("a previous container's")  # a stale mark is no registration
    outcome = {}

    def run():
        try:
            outcome["code"] = serve(str(plugin), "/kubelet/csi.sock", registry, mark, short_dir / "refusal")
        except BaseException as err:  # reported by the test, not lost in the thread
            outcome["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    server = _serve_plugin(plugin)  # the plugin comes up after its registrar, as in a pod
    try:
        socket = registration_socket(registry, "diskplugin.csi.alibabacloud.com")
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = registration_grpc.RegistrationStub(channel)
            info = stub.GetInfo(registration.InfoRequest(), timeout=10)
            assert (info.type, info.name, info.endpoint) == ("CSIPlugin", "diskplugin.csi.alibabacloud.com",
                                                             "/kubelet/csi.sock")
            assert list(info.supported_versions) == ["1.0.0"]
            assert not mark.exists()  # not ready before the kubelet says it registered the plugin
            stub.NotifyRegistrationStatus(registration.RegistrationStatus(plugin_registered=True), timeout=10)
            assert mark.read_text() == "diskplugin.csi.alibabacloud.com"
            assert worker.is_alive()
            stub.NotifyRegistrationStatus(registration.RegistrationStatus(plugin_registered=False,
                                                                          error="version mismatch"), timeout=10)
        worker.join(timeout=30)
        assert outcome == {"code": 1}
        assert not socket.exists()
        assert (short_dir / "refusal").read_text() == "the kubelet refused diskplugin.csi.alibabacloud.com: version mismatch"
    finally:
        server.stop(0)


class _Cloud:
    region = "r"

    def __init__(self, zone: str, holders: list[str]):
        self.disk = {"DiskId": "d-1", "SerialNumber": "1", "ZoneId": zone,
                     "Status": "In_use" if holders else "Available",
                     "Attachments": {"Attachment": [{"InstanceId": h} for h in holders]}}

    def describe_disk(self, disk_id):
        return self.disk


class _Aborted(Exception):
    pass


class _Context:
    def abort(self, code, message):
        raise _Aborted(code, message)


def _request(kind, **fields):
    cap = csi.VolumeCapability(mount=csi.VolumeCapability.MountVolume(),
                               access_mode=csi.VolumeCapability.AccessMode(mode=1))
    return getattr(csi, kind)(volume_capability=cap, **fields)


@pytest.fixture
def disk_device(tmp_path):
    """Disk d-1 (serial 1) as a loop device linked as a virtio disk's is, in a by-id folder
    of the test's; all mounts and the loop undone afterwards, even when the test fails."""
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        pytest.skip("needs root and loop devices (the kind provider's own needs)")
    storage = DiskStorage(tmp_path / "disks", ["za-1"])
    storage.create("za-1", "d-1", 1)
    device = subprocess.run(["losetup", "--find", "--show", str(storage.link("za-1", "d-1", "i-1"))],
                            capture_output=True, text=True, check=True).stdout.strip()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "virtio-1").symlink_to(device)
    yield by_id
    for target in (tmp_path / "target", tmp_path / "staging"):
        node_module._unmount(target)
    blockdev.release_under(storage.root)


def test_node_plugin_stages_the_attached_disks_block_device_and_nothing_else(disk_device, tmp_path, monkeypatch):
    staging, target = tmp_path / "staging", tmp_path / "target"

    def stage_and_publish(service):
        service.NodeStageVolume(_request("NodeStageVolumeRequest", volume_id="d-1",
                                         staging_target_path=str(staging)), _Context())
        service.NodePublishVolume(_request("NodePublishVolumeRequest", volume_id="d-1", target_path=str(target),
                                           staging_target_path=str(staging)), _Context())

    def unpublish_and_unstage(service):
        service.NodeUnpublishVolume(csi.NodeUnpublishVolumeRequest(volume_id="d-1", target_path=str(target)),
                                    _Context())
        service.NodeUnstageVolume(csi.NodeUnstageVolumeRequest(volume_id="d-1", staging_target_path=str(staging)),
                                  _Context())

    service = node_module.NodeService(_Cloud("za-1", ["i-1"]), "i-1", "za-1", block_devices=True, by_id=disk_device)
    stage_and_publish(service)
    try:
        (target / "token").write_text("web-0 abc")  # through the pod's mount, onto a fresh ext4
        assert node_module._filesystem((disk_device / "virtio-1").resolve()) == "ext4"
    finally:
        unpublish_and_unstage(service)
    assert not node_module._mounted(staging) and not target.exists()
    stage_and_publish(service)  # staged again: the filesystem is mounted, not made anew
    try:
        assert (target / "token").read_text() == "web-0 abc"
    finally:
        unpublish_and_unstage(service)

    # Attached elsewhere: refused, though the device is here.
    other = node_module.NodeService(_Cloud("za-1", ["i-2"]), "i-1", "za-1", block_devices=True, by_id=disk_device)
    with pytest.raises(_Aborted, match="not attached to this node"):
        stage_and_publish(other)
    # Attached here by the API, but no device shows on this node: refused.
    monkeypatch.setattr(node_module, "DEVICE_WAIT", 0.2)
    elsewhere = node_module.NodeService(_Cloud("za-1", ["i-1"]), "i-1", "za-1", block_devices=True, by_id=tmp_path)
    with pytest.raises(_Aborted, match="no device .* shows on this node"):
        stage_and_publish(elsewhere)
    assert not node_module._mounted(staging)


def _pod(name, claim, node="n1", ready=True):
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, deletion_timestamp=None),
        status=SimpleNamespace(conditions=[SimpleNamespace(type="Ready", status=str(ready))]),
        spec=SimpleNamespace(node_name=node, volumes=[SimpleNamespace(
            persistent_volume_claim=SimpleNamespace(claim_name=claim))]))


class _Core:
    def __init__(self, pods):
        self.pods = pods

    def list_namespaced_pod(self, namespace):
        return SimpleNamespace(items=self.pods)


def test_data_ledger_fails_when_a_volume_does_not_hold_what_was_written(monkeypatch):
    tokens = {"web-0": "web-0 first", "web-1": "web-1 other"}
    monkeypatch.setattr(data, "read_token", lambda core, ns, pod: tokens[pod.metadata.name])
    ledger = data.DataLedger()
    core = _Core([_pod("web-0", "disk-web-0"), _pod("web-1", "disk-web-1")])
    assert ledger.check(core, "ns", expected=2) == 2
    tokens["web-0"] = "web-0 fresh"  # a new, empty disk: the pod stamped it again
    with pytest.raises(data.DataLost, match="did not follow its disk"):
        ledger.check(core, "ns", expected=2)
    tokens["web-0"] = "web-1 other"  # another pod's disk
    with pytest.raises(data.DataLost, match="not a token its pod wrote"):
        ledger.check(core, "ns", expected=2)
    tokens["web-0"] = "web-0 first"
    core.pods[1] = _pod("web-1", "disk-web-1", ready=False)
    with pytest.raises(Exception, match="2 pods Ready to read their data"):
        ledger.check(core, "ns", expected=2, timeout=1)


def test_runnable_workloads_stamp_their_first_volume():
    from zoneproof import manifests

    sts = data.runnable(manifests.statefulset(3, "sc"))
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == data.BUSYBOX_IMAGE and container["imagePullPolicy"] == "Never"
    assert f"/data/{data.TOKEN_FILE}" in container["command"][-1]
    assert container["volumeMounts"] == manifests.statefulset(3, "sc")["spec"]["template"]["spec"]["containers"][
        0]["volumeMounts"]


def test_the_stamp_writes_a_token_once_and_keeps_it(tmp_path):
    from zoneproof import manifests

    container = data.runnable(manifests.statefulset(1, "sc"))["spec"]["template"]["spec"]["containers"][0]
    stamp = container["command"][-1].split("mkdir -p /www")[0].replace("/data/", f"{tmp_path}/")
    env = {"ZONEPROOF_POD": "web-0", "PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", "-c", stamp + "true"], check=True, env=env)
    first = (tmp_path / data.TOKEN_FILE).read_text().strip()
    assert first.startswith("web-0 ") and len(first) > len("web-0 ") + 30
    subprocess.run(["sh", "-c", stamp + "true"], check=True, env=env)
    assert (tmp_path / data.TOKEN_FILE).read_text().strip() == first


def test_a_driver_binary_node_plugin_gets_its_mounts_and_a_metadata_service_that_answers_first():
    from zoneproof.deploy import incluster
    from zoneproof.profile import load_profile

    plugin = load_profile("alibaba").run.node_plugin
    values = {"ecs_endpoint": "172.18.0.1:9000", "region": "r", "access_key_id": "k", "access_key_secret": "s"}
    spec = incluster.daemonset("d", plugin, "zoneproof/driver-binary:x", "zoneproof/driver:y", ["/bin/plugin"], {},
                               values)["spec"]["template"]["spec"]
    assert spec["hostNetwork"] and spec["hostPID"] and spec["hostIPC"]
    address, sidecar = spec["initContainers"]
    # Its address first, with a route that keeps requests for it in the node (the probe asks early).
    assert "ip route replace blackhole 100.100.100.200/32" in address["command"][-1] and "restartPolicy" not in address
    # A native sidecar: the kubelet starts the plugin only once the service answers.
    assert sidecar["restartPolicy"] == "Always" and sidecar["startupProbe"]["httpGet"]["host"] == "100.100.100.200"
    assert sidecar["image"] == "zoneproof/driver:y" and "--node-name" in sidecar["command"]
    node_plugin = next(c for c in spec["containers"] if c["name"] == "node-plugin")
    assert node_plugin["image"] == "zoneproof/driver-binary:x"
    mounts = {m["mountPath"]: m.get("mountPropagation") for m in node_plugin["volumeMounts"]}
    assert mounts["/dev"] == "HostToContainer" and mounts["/var/lib/kubelet"] == "Bidirectional"
    assert mounts["/var/lib/container"] == "Bidirectional" and "/host/etc" in mounts
    reference = load_profile("reference").run.node_plugin
    plain = incluster.daemonset("d", reference, "img", "img", ["p"], {}, values)["spec"]["template"]["spec"]
    assert plain["initContainers"] == []  # no metadata service unless the profile asks


def _node_plugin_pod(registrar_state: dict, last_state: dict | None = None) -> client.V1Pod:
    status = client.V1ContainerStatus(name="registrar", image="i", image_id="", ready=False, restart_count=1,
                                      state=client.V1ContainerState(**registrar_state),
                                      last_state=client.V1ContainerState(**(last_state or {})))
    return client.V1Pod(spec=client.V1PodSpec(containers=[], node_name="n1"),
                        status=client.V1PodStatus(container_statuses=[status]))


def test_only_a_registrar_that_left_the_kubelets_refusal_is_a_refusal():
    refused = client.V1ContainerStateTerminated(exit_code=1, message="the kubelet refused d: node id is immutable\n")
    cut = client.V1ContainerStateTerminated(exit_code=255, reason="Unknown")  # a power cut: no message
    running = {"running": client.V1ContainerStateRunning()}
    assert refusal_of(_node_plugin_pod({"terminated": refused})) == "the kubelet refused d: node id is immutable"
    assert refusal_of(_node_plugin_pod(running, {"terminated": refused})).startswith("the kubelet refused")
    assert refusal_of(_node_plugin_pod(running, {"terminated": cut})) == ""
    assert refusal_of(_node_plugin_pod(running)) == ""
