"""Driver profiles load, render StorageClasses and run commands, and reject bad files by name."""

import pytest
import yaml

from zoneproof.deploy.driver import DriverError, check_run_inputs, render
from zoneproof.profile import PROFILES, ProfileError, load_profile, parse_profile, shipped


@pytest.mark.parametrize("name", ["reference", "alibaba"])
def test_shipped_profiles_load(name):
    profile = load_profile(name)
    assert profile.driver == "diskplugin.csi.alibabacloud.com"
    assert set(profile.storage_classes) == {"wait-for-first-consumer", "dynamic-zoneid"}
    assert profile.volume_zone_key in profile.topology_keys
    assert profile.run is not None and profile.source == name


def test_shipped_list_comes_from_package_data():
    assert shipped() == ["alibaba", "reference"]


def test_storage_class_rendering_expands_zones():
    sc = load_profile("reference").storage_class("dynamic-zoneid", "csi-disk-multizone", ["z1", "z2"])
    assert sc["metadata"]["name"] == "csi-disk-multizone"
    assert sc["provisioner"] == "diskplugin.csi.alibabacloud.com"
    assert sc["parameters"] == {"type": "cloud_ssd", "zoneId": "z1,z2"}
    assert sc["volumeBindingMode"] == "Immediate"
    wffc = load_profile("reference").storage_class("wait-for-first-consumer", "csi-disk-topology", ["z1"])
    assert wffc["volumeBindingMode"] == "WaitForFirstConsumer"
    pinned = load_profile("alibaba").storage_class("wait-for-first-consumer", "one", ["z1"], binding="Immediate",
                                                   allowed_zones=("z1",))
    assert pinned["volumeBindingMode"] == "Immediate"
    assert pinned["allowedTopologies"] == [{"matchLabelExpressions": [
        {"key": "topology.diskplugin.csi.alibabacloud.com/zone", "values": ["z1"]}]}]


@pytest.mark.parametrize("name", ["reference", "alibaba"])
def test_the_parameters_that_list_zones_are_those_templated_with_the_zones(name):
    assert load_profile(name).zone_parameters == ("zoneId",)


def test_alibaba_controller_command_renders_what_the_plugin_needs():
    run = load_profile("alibaba").run
    values = {"driver_binary": "/opt/plugin", "driver": "diskplugin.csi.alibabacloud.com",
              "endpoint": "unix:///tmp/c.sock", "kubeconfig": "/k", "ecs_endpoint": "127.0.0.1:9", "region": "r",
              "access_key_id": "id", "access_key_secret": "s"}
    args, env = render(run.controller, values)
    assert args == ["/opt/plugin", "--driver=diskplugin.csi.alibabacloud.com", "--endpoint=unix:///tmp/c.sock",
                    "--run-controller-service=true", "--run-node-service=false", "--kubeconfig=/k"]
    assert env["ECS_ENDPOINT"] == "127.0.0.1:9" and env["ALICLOUD_CLIENT_SCHEME"] == "http"
    assert env["ALIBABA_CLOUD_NO_ECS_METADATA"] == "1" and env["REGION_ID"] == "r"
    assert int(env["SERVICE_PORT"]) > 0  # a free port drawn for this process
    assert run.stand_in is not None and run.node_command is None
    assert set(run.stand_in.topology) == set(load_profile("alibaba").topology_keys)


def test_a_profile_that_runs_a_binary_refuses_to_start_without_one(tmp_path):
    profile = load_profile("alibaba")
    with pytest.raises(DriverError, match="pass --driver-binary PATH"):
        check_run_inputs(profile, None)
    not_executable = tmp_path / "plugin"
    not_executable.write_text("")
    with pytest.raises(DriverError, match="not an executable file"):
        check_run_inputs(profile, str(not_executable))
    not_executable.chmod(0o755)
    check_run_inputs(profile, str(not_executable))


def good():
    return yaml.safe_load(PROFILES.joinpath("reference.yaml").read_text())


def stand_in():
    data = good()
    data["run"]["node"] = {"stand_in": {"node_id": "{instance_id}", "topology": {
        k: "{zone}" for k in data["topology_keys"]}}}
    return data


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(colour="blue"), "unknown field\\(s\\) colour"),
    (lambda d: d.pop("driver"), "missing 'driver'"),
    (lambda d: d["storage_classes"].update(magic={"binding": "Immediate", "parameters": {}}), "unknown scheme 'magic'"),
    (lambda d: d["storage_classes"]["dynamic-zoneid"].update(binding="Later"), "binding must be one of"),
    (lambda d: d["static_disks"].update(via="carrier-pigeon"), "static_disks.via"),
    (lambda d: d.update(min_size_gib="twenty"), "'min_size_gib' must be int"),
    (lambda d: d.update(zone_policies=["nearest"]), "'zone_policies' has nearest"),
    (lambda d: d.update(disk_categories=[]), "'disk_categories' must be a non-empty list"),
    (lambda d: d["run"]["controller"]["command"].append("{cluster_secret}"),
     "unknown template variable\\(s\\) \\{cluster_secret\\}"),
    (lambda d: d["run"]["controller"]["command"].append("{zone}"), "unknown template variable\\(s\\) \\{zone\\}"),
    (lambda d: d["run"]["controller"]["command"].append("{driver_binary}"), "\\{driver_binary\\}"),
    (lambda d: d["run"]["node"].update(stand_in={}), "either 'command'"),
    # One process serves every node: a node's own values belong in each_node, not the command.
    (lambda d: d["run"]["node"]["command"].append("{instance_id}"), "node.command: unknown template .*instance_id"),
    (lambda d: d["run"]["node"]["command"].append("{endpoint}"), "node.command: unknown template .*endpoint"),
    (lambda d: d["run"]["node"]["each_node"].append("{rack}"), "node.each_node: unknown template .*rack"),
    (lambda d: d["run"]["node"].update(each_node=[]), "'each_node' must be a non-empty list"),
    (lambda d: d["run"].update(binary="maybe"), "binary: must be 'required'"),
    (lambda d: d["run"]["sidecars"].update(csi_resizer=[]), "sidecars: a mapping from"),
    (lambda d: d.update(delete_attached_volume="maybe"), "'delete_attached_volume' must be one of refused"),
    # The node plugin's DaemonSet.
    (lambda d: d["run"]["node_plugin"].update(privileged=True), "node_plugin: unknown field\\(s\\) privileged"),
    (lambda d: d["run"]["node_plugin"].update(image="docker.io/me/plugin"), "node_plugin.image must be one of"),
    (lambda d: d["run"]["node_plugin"]["command"].append("{driver_binary}"),
     "node_plugin.command: unknown template variable\\(s\\) \\{driver_binary\\}"),
    (lambda d: d["run"]["node_plugin"].update(image="driver-binary"), "image driver-binary needs 'binary: required'"),
    (lambda d: d["run"]["node_plugin"].update(mounts=[{"host_path": "etc", "mount_path": "/host/etc"}]),
     "mounts\\[0\\]: host_path and mount_path must be absolute"),
    (lambda d: d["run"]["node_plugin"].update(
        mounts=[{"host_path": "/etc", "mount_path": "/e", "propagation": "Both"}]),
     "mounts\\[0\\].propagation must be one of"),
    (lambda d: d["run"]["node_plugin"].update(metadata_service="yes"), "metadata_service: must be true or false"),
])
def test_bad_profiles_are_named(mutate, message):
    data = good()
    mutate(data)
    with pytest.raises(ProfileError, match=message):
        parse_profile(data, "custom.yaml")


def test_stand_in_topology_must_be_the_declared_keys():
    data = stand_in()
    parse_profile(data, "custom.yaml")
    data["run"]["node"]["stand_in"]["topology"].pop("topology.kubernetes.io/region")
    with pytest.raises(ProfileError, match="must be exactly the profile's topology_keys"):
        parse_profile(data, "custom.yaml")


def test_profile_file_by_path_records_its_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(good()))
    assert load_profile(str(path)).source == str(path.resolve())


def test_unknown_profile_lists_the_shipped_ones():
    with pytest.raises(ProfileError, match="shipped: alibaba, reference"):
        load_profile("netapp")


def test_unknown_scheme_on_render():
    with pytest.raises(ProfileError, match="no StorageClass for scheme 'static'"):
        load_profile("reference").storage_class("static", "x", ["z"])


def driver_info_file(tmp_path, **changes) -> str:
    (tmp_path / "sc.yaml").write_text(yaml.safe_dump({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "disk"},
        "provisioner": "diskplugin.csi.alibabacloud.com", "parameters": {"type": "cloud_essd,cloud_ssd"}}))
    data = {"ShortName": "ack-disk", "StorageClass": {"FromFile": "sc.yaml"}, "DriverInfo": {
        "Name": "diskplugin.csi.alibabacloud.com", "SupportedSizeRange": {"Min": "20Gi", "Max": "64Ti"},
        "TopologyKeys": ["topology.diskplugin.csi.alibabacloud.com/zone"], "Capabilities": {"topology": True}}}
    for key, value in changes.items():
        data["DriverInfo"][key] = value
    (tmp_path / "driver.yaml").write_text(yaml.safe_dump(data))
    return str(tmp_path / "driver.yaml")


def test_an_external_test_driver_file_is_a_profile(tmp_path):
    profile = load_profile(driver_info_file(tmp_path))
    assert (profile.name, profile.driver, profile.min_size_gib) == ("ack-disk", "diskplugin.csi.alibabacloud.com", 20)
    assert profile.volume_zone_key == "topology.diskplugin.csi.alibabacloud.com/zone"
    assert profile.disk_categories == ("cloud_essd", "cloud_ssd")
    assert profile.run is None and not profile.static_disks.allowed
    sc = profile.storage_class("wait-for-first-consumer", "x", ["z1"])
    assert sc["parameters"] == {"type": "cloud_essd,cloud_ssd"} and sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert "dynamic-zoneid" not in profile.storage_classes
    assert load_profile(driver_info_file(tmp_path, SupportedSizeRange={"Min": "500M"})).min_size_gib == 1


@pytest.mark.parametrize(("changes", "message"), [
    ({"Capabilities": {"topology": False}}, "Capabilities.topology: true and TopologyKeys"),
    ({"TopologyKeys": []}, "Capabilities.topology: true and TopologyKeys"),
    ({"TopologyKeys": ["kubernetes.io/hostname"]}, "names a zone"),
    ({"SupportedSizeRange": {"Min": "a lot"}}, "not a quantity"),
])
def test_a_driver_file_without_zones_is_refused(tmp_path, changes, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(driver_info_file(tmp_path, **changes))


def test_a_node_command_with_each_node_serves_every_node_from_one_process():
    run = load_profile("reference").run
    assert run.node_command.each_node == ("--node", "{instance_id}", "{zone}", "{endpoint}")
    data = good()
    del data["run"]["node"]["each_node"]
    data["run"]["node"]["command"] += ["--node-id", "{instance_id}", "--endpoint", "{endpoint}"]
    assert parse_profile(data, "custom.yaml").run.node_command.each_node == ()


def test_the_alibaba_node_plugin_runs_from_the_users_binary_as_the_upstream_chart_runs_it():
    plugin = load_profile("alibaba").run.node_plugin
    assert plugin.image == "driver-binary" and plugin.metadata_service
    args, env = render(plugin.command, {"driver_binary": "/usr/local/bin/csi-driver", "driver": "d",
                                        "endpoint": "unix:///csi/csi.sock", "node_name": "$(NODE_NAME)",
                                        "region": "r", "ecs_endpoint": "h:1", "access_key_id": "k",
                                        "access_key_secret": "s"})
    assert args[0] == "/usr/local/bin/csi-driver" and "--run-node-service=true" in args
    assert env["DISK_AD_CONTROLLER"] == "true" and env["IS_BDF"] == "false"  # the controller alone attaches
    assert "ALIBABA_CLOUD_NO_ECS_METADATA" not in env  # it asks the node's metadata service
    assert {m.mount_path for m in plugin.mounts} >= {"/host/etc", "/var/lib/container"}
