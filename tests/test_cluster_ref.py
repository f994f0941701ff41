"""Which cluster, as one value: written as pytest options and as chaos configuration, and
read back as the same value; bad combinations refused by name."""

from __future__ import annotations

import pytest

from zoneproof.cluster.ref import ClusterRef, ClusterRefError

REFS = [ClusterRef(), ClusterRef("kind", "zp-kind"), ClusterRef("existing", kubeconfig="/k/config"),
        ClusterRef("existing", kubeconfig="/k/config", context="staging")]


@pytest.mark.parametrize("ref", REFS, ids=str)
def test_a_ref_written_as_pytest_options_reads_back_the_same(ref):
    parsed = {"--provider": "local", "--cluster-name": "zoneproof", "--kubeconfig": None, "--context": None}
    for arg in ref.pytest_args():
        option, _, value = arg.partition("=")
        parsed[option] = value
    assert ClusterRef.from_pytest(parsed.__getitem__) == ref


@pytest.mark.parametrize("ref", REFS, ids=str)
def test_a_ref_written_as_chaos_configuration_reads_back_the_same(ref):
    assert ClusterRef.from_chaos_configuration(ref.chaos_configuration(), {}) == ref


def test_an_existing_cluster_without_a_kubeconfig_in_its_configuration_takes_the_environments():
    ref = ClusterRef.from_chaos_configuration({"zoneproof_provider": "existing"}, {"KUBECONFIG": "/env/config"})
    assert ref == ClusterRef("existing", kubeconfig="/env/config")


@pytest.mark.parametrize("kwargs, named", [
    ({"provider": "existing"}, "--provider existing needs --kubeconfig PATH"),
    ({"provider": "local", "kubeconfig": "/k"}, "--kubeconfig and --context go with --provider existing"),
    ({"provider": "kind", "context": "c"}, "--kubeconfig and --context go with --provider existing"),
    ({"provider": "minikube"}, "provider 'minikube' is not one of local, kind, existing"),
])
def test_options_that_name_no_cluster_are_refused_by_name(kwargs, named):
    with pytest.raises(ClusterRefError, match=named):
        ClusterRef(**kwargs)


def test_only_an_existing_cluster_is_not_zoneproofs_own():
    assert [ref.owned for ref in REFS] == [True, True, False, False]
    assert ClusterRef("existing", kubeconfig="/k", context="c").environment() == {
        "ZONEPROOF_PROVIDER": "existing", "KUBERNETES_CONTEXT": "c"}
