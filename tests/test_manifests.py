"""The article's objects render from parameters, and its original YAML is refused clearly."""

import re
from pathlib import Path

import pytest

from zoneproof import labels
from zoneproof.manifests import (BASES, ManifestError, load_manifests, pod_disruption_budget, service,
                                 static_pair, static_zone, statefulset, storage_class)
from zoneproof.profile import load_profile

ARTICLE = Path(__file__).resolve().parent.parent.parent / "shared" / "seed-article-zh.txt"
PROFILE = load_profile("reference")


def test_statefulset_is_apps_v1_with_the_template():
    sts = statefulset(6, "csi-disk-multizone", "30Gi")
    assert sts["apiVersion"] == "apps/v1"
    assert sts["spec"]["replicas"] == 6
    template = sts["spec"]["volumeClaimTemplates"][0]
    assert template["metadata"]["name"] == "disk-ssd"
    assert template["spec"]["storageClassName"] == "csi-disk-multizone"
    assert template["spec"]["resources"]["requests"]["storage"] == "30Gi"
    assert service()["spec"]["clusterIP"] == "None"


def test_storage_classes_use_the_articles_names():
    assert storage_class(PROFILE, "dynamic-zoneid", ["x", "y"])["metadata"]["name"] == "csi-disk-multizone"
    wffc = storage_class(PROFILE, "wait-for-first-consumer", ["x"])
    assert (wffc["metadata"]["name"], wffc["volumeBindingMode"]) == ("csi-disk-topology", "WaitForFirstConsumer")


def test_static_pairs_in_both_zone_styles():
    zones = ["z1", "z2", "z3"]
    assert [static_zone(zones, n) for n in range(4)] == ["z1", "z2", "z3", "z1"]
    affinity = static_pair(1, "z2", "r", "d-1", PROFILE, "nodeaffinity")
    assert affinity.pv["metadata"]["name"] == "pv-disk-ssd-web-1"
    assert affinity.pvc["metadata"]["name"] == "disk-ssd-web-1"
    assert affinity.pvc["spec"]["selector"]["matchLabels"] == {"alicloud-pvname": "pv-disk-ssd-web-1"}
    expr = affinity.pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert (expr["key"], expr["values"]) == (labels.DISK_ZONE, ["z2"])
    assert affinity.pv["spec"]["csi"]["volumeHandle"] == "d-1"
    zone_labels = static_pair(0, "z1", "r", "d-0", PROFILE, "zone-labels")
    assert zone_labels.pv["metadata"]["labels"][labels.ZONE_DEPRECATED] == "z1"
    assert zone_labels.pv["metadata"]["labels"][labels.REGION_DEPRECATED] == "r"
    assert "nodeAffinity" not in zone_labels.pv["spec"]
    with pytest.raises(ManifestError, match="static style 'magic'"):
        static_pair(0, "z1", "r", "d", PROFILE, "magic")


def test_nothing_in_the_manifests_names_a_zone():
    bases = [entry for entry in BASES.iterdir() if entry.name.endswith(".yaml")]
    assert len(bases) == 4, [entry.name for entry in bases]  # service, statefulset, static PV and PVC
    for entry in bases:
        assert not re.search(r"cn-[a-z]+-[a-z]\b", entry.read_text()), entry.name


@pytest.mark.skipif(not ARTICLE.exists(), reason="the article's text (shared/seed-article-zh.txt) is not beside "
                                                  "this checkout")
def test_the_articles_original_statefulset_is_refused_with_what_to_change():
    text = ARTICLE.read_text()
    # The article's complete example: its headless Service and StatefulSet, as published.
    start = text.index("apiVersion: v1\nkind: Service")
    end = text.index("\n\n", start)
    with pytest.raises(ManifestError, match="StatefulSet 'web' uses apiVersion apps/v1beta2, which Kubernetes "
                                            "removed in 1.16; change it to apps/v1$"):
        load_manifests(text[start:end], "article")


def test_a_removed_api_version_without_selector_says_to_add_one():
    with pytest.raises(ManifestError, match="add spec.selector.matchLabels"):
        load_manifests("apiVersion: apps/v1beta2\nkind: StatefulSet\nmetadata: {name: web}\nspec: {}\n")
    assert load_manifests("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\n")[0]["kind"] == \
        "StatefulSet"


def test_statefulset_pod_management_for_chaos_runs():
    assert "podManagementPolicy" not in statefulset(3, "sc")["spec"]  # the article's default, OrderedReady
    assert statefulset(3, "sc", pod_management="Parallel")["spec"]["podManagementPolicy"] == "Parallel"
    with pytest.raises(ManifestError, match="'Sometimes' is not one of OrderedReady, Parallel"):
        statefulset(3, "sc", pod_management="Sometimes")


def test_disruption_budget_selects_the_statefulsets_pods():
    pdb = pod_disruption_budget(1)
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == statefulset(3, "sc")["spec"]["selector"]
