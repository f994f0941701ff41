"""Driver profiles load, render StorageClasses, and reject bad files by name."""

import pytest
import yaml

from zoneproof.profile import PROFILES_DIR, ProfileError, load_profile, parse_profile


@pytest.mark.parametrize("name", ["reference", "alibaba"])
def test_shipped_profiles_load(name):
    profile = load_profile(name)
    assert profile.driver == "diskplugin.csi.alibabacloud.com"
    assert set(profile.storage_classes) == {"wait-for-first-consumer", "dynamic-zoneid"}
    assert profile.volume_zone_key in profile.topology_keys


def test_storage_class_rendering_expands_zones():
    sc = load_profile("reference").storage_class("dynamic-zoneid", "csi-disk-multizone", ["z1", "z2"])
    assert sc["metadata"]["name"] == "csi-disk-multizone"
    assert sc["provisioner"] == "diskplugin.csi.alibabacloud.com"
    assert sc["parameters"] == {"type": "cloud_ssd", "zoneId": "z1,z2"}
    assert sc["volumeBindingMode"] == "Immediate"
    wffc = load_profile("reference").storage_class("wait-for-first-consumer", "csi-disk-topology", ["z1"])
    assert wffc["volumeBindingMode"] == "WaitForFirstConsumer"


def good():
    return yaml.safe_load((PROFILES_DIR / "reference.yaml").read_text())


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(colour="blue"), "unknown field\\(s\\) colour"),
    (lambda d: d.pop("driver"), "missing 'driver'"),
    (lambda d: d.update(deployment="cloud"), "deployment 'cloud'"),
    (lambda d: d["storage_classes"].update(magic={"binding": "Immediate", "parameters": {}}), "unknown scheme 'magic'"),
    (lambda d: d["storage_classes"]["dynamic-zoneid"].update(binding="Later"), "binding must be one of"),
    (lambda d: d["static_disks"].update(via="carrier-pigeon"), "static_disks.via"),
    (lambda d: d.update(min_size_gib="twenty"), "'min_size_gib' must be int"),
])
def test_bad_profiles_are_named(mutate, message):
    data = good()
    mutate(data)
    with pytest.raises(ProfileError, match=message):
        parse_profile(data, "custom.yaml")


def test_unknown_profile_lists_the_shipped_ones():
    with pytest.raises(ProfileError, match="shipped: alibaba, reference"):
        load_profile("netapp")


def test_unknown_scheme_on_render():
    with pytest.raises(ProfileError, match="no StorageClass for scheme 'static'"):
        load_profile("reference").storage_class("static", "x", ["z"])
