"""Static PVs made ready for their claims: a claim that selects its PV by label, as the
article's do, binds at once when made after `workloads.create_static_pvs`. Made before the
PV controller has taken its PV in, it may wait for the controller's next resync (15 s)."""

import pytest
from kubernetes.client.exceptions import ApiException

from zoneproof import manifests, workloads
from zoneproof.profile import load_profile
from zoneproof.waiting import wait_for

pytestmark = pytest.mark.cluster

# Each claim made right after its PV, as a test makes them: without the wait about one in
# four waited for the resync here, so twenty show it nearly always.
PAIRS = 20


def test_claims_made_after_their_static_pvs_are_taken_in_bind_at_once(cluster, namespace):
    profile = load_profile("reference")
    zone = cluster.spec.zones[0]
    pairs = [manifests.static_pair(n, zone, cluster.spec.region, f"d-binding-{n}", profile, "zone-labels",
                                   pv_prefix=f"{namespace.rsplit('-', 1)[-1]}-") for n in range(PAIRS)]
    try:
        for pair in pairs:
            workloads.create_static_pvs(cluster.core, [pair.pv])
            cluster.core.create_namespaced_persistent_volume_claim(namespace, pair.pvc)
            claim = pair.pvc["metadata"]["name"]

            def bound():
                phase = cluster.core.read_namespaced_persistent_volume_claim(claim, namespace).status.phase
                return phase == "Bound", phase
            # Well under the resync: a claim still unbound by then waits for it.
            wait_for(bound, what=f"claim {claim} bound to its static PV", timeout=5)
    finally:
        cluster.core.delete_collection_namespaced_persistent_volume_claim(namespace)
        for pair in pairs:
            try:
                cluster.core.delete_persistent_volume(pair.pv["metadata"]["name"])
            except ApiException as err:
                if err.status != 404:  # one that was never made
                    raise
