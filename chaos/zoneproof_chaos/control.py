"""The workload control: every experiment lists it under ``controls``.

Before the experiment it deploys the article's disk-follows-pod workload (a
WaitForFirstConsumer StorageClass over all the cluster's zones, the Service and the
StatefulSet, and optionally a PodDisruptionBudget) into a fresh namespace, waits until
every pod runs in its disk's zone, and names what the activities aim at in the
configuration: ``namespace``, ``replicas``, ``target_zone`` and ``target_node`` (where
``web-0`` runs) and ``other_zone`` (another zone).

During the method it turns a failed activity into an interruption: Chaos Toolkit
otherwise records a failed method activity and carries on, and an experiment whose
checks failed would still end "completed". Rollbacks still run (strategy ``always``).

After the experiment, rollbacks done, it deletes the workload, waits until every disk
it provisioned is detached and deleted, and deletes the namespace: also after a failure
or Ctrl-C.
"""

from __future__ import annotations

import logging
import random
import uuid

from chaoslib.exceptions import InterruptExecution
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from zoneproof import data, manifests, workloads
from zoneproof.namespaces import create_namespace, delete_namespace
from zoneproof.oracle import settled
from zoneproof.waiting import WaitTimeout, wait_for
from zoneproof_chaos.context import Target, check_kubeconfig_matches, log, target
from zoneproof_chaos.running import DATA_PROBLEMS

# What this run made, so that clean-up removes exactly that (one experiment at a time).
_made: dict = {}
_in_method = False


def configure_control(**_) -> None:
    """Under the ``chaos`` command, show zoneproof's own progress (what a wait is waiting
    for) on Chaos Toolkit's console and log file; under pytest, logging is pytest's."""
    ours, root = logging.getLogger("zoneproof"), logging.getLogger()
    if not ours.handlers and not root.handlers:
        for handler in logging.getLogger("chaostoolkit").handlers:
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)


def _fail(message: str) -> None:
    log.error("%s", message)
    raise InterruptExecution(message)


def before_experiment_control(context: dict, configuration: dict = None, replicas: int = 3,
                              pod_disruption_budget: int = 0, min_zones: int = 1, min_nodes_per_zone: int = 1,
                              settle_timeout: float = 180, **_) -> None:
    """Deploy the workload and wait until it is placed; interrupt the experiment if not,
    or if the cluster is too small for it (``min_zones``, ``min_nodes_per_zone``)."""
    global _in_method
    _in_method = False
    _made.clear()
    try:
        t = target(configuration)
        spec = t.provider.spec
        if len(spec.zones) < int(min_zones) or spec.nodes_per_zone < int(min_nodes_per_zone):
            _fail(f"this experiment needs at least {min_zones} zone(s) of {min_nodes_per_zone} node(s); cluster "
                  f"{spec.name!r} has {len(spec.zones)} zone(s) of {spec.nodes_per_zone} node(s)")
        _seed(configuration)
        _deploy(t, configuration, int(replicas), int(pod_disruption_budget), float(settle_timeout))
    except InterruptExecution:
        raise
    except Exception as err:  # noqa: BLE001 - Chaos Toolkit swallows any other exception from a control
        _fail(f"zoneproof workload control: could not deploy the workload: {err}")


def _seed(configuration: dict) -> None:
    """chaostoolkit-kubernetes picks random pods with Python's ``random``: seed it, and say
    the seed, so a run can be repeated."""
    given = str(configuration.get("seed") or "")
    if given and not given.lstrip("-").isdigit():
        _fail(f"seed must be an integer, got {given!r}")
    seed = int(given) if given else random.SystemRandom().randrange(1 << 31)
    random.seed(seed)
    configuration["seed"] = seed
    log.info("random seed %d (rerun with ZONEPROOF_SEED=%d)", seed, seed)


def _deploy(t: Target, configuration: dict, replicas: int, pdb: int, settle_timeout: float) -> None:
    if replicas < 1:
        _fail(f"zoneproof workload control: replicas must be at least 1, got {replicas}")
    check_kubeconfig_matches(t)
    core, apps, storage = client.CoreV1Api(t.api), client.AppsV1Api(t.api), client.StorageV1Api(t.api)
    ns = configuration.get("namespace")
    if not ns:
        ns = create_namespace(core, f"zp-chaos-{uuid.uuid4().hex[:8]}", "chaos")
        _made["namespace"] = ns
    elif apps.list_namespaced_stateful_set(ns).items:
        _fail(f"zoneproof workload control: namespace {ns} already has a StatefulSet; give an empty namespace")
    configuration["namespace"] = ns
    _made["workload_namespace"] = ns
    sc = manifests.storage_class(t.profile, "wait-for-first-consumer", t.provider.spec.zones,
                                 name=f"zp-chaos-wffc-{ns.rsplit('-', 1)[-1]}")
    storage.create_storage_class(sc)
    _made["storage_class"] = sc["metadata"]["name"]
    core.create_namespaced_service(ns, manifests.service())
    if pdb:
        client.PolicyV1Api(t.api).create_namespaced_pod_disruption_budget(ns, manifests.pod_disruption_budget(pdb))
    sts = manifests.statefulset(replicas, sc["metadata"]["name"], pod_management="Parallel")
    # On nodes with kubelets the containers run: they stamp their volumes (zoneproof.data).
    apps.create_namespaced_stateful_set(ns, data.for_cluster(t.provider, sts))
    log.info("workload: %d replicas of the article's StatefulSet (WaitForFirstConsumer) in %s", replicas, ns)
    wait_for(lambda: settled(t.verdict(ns), replicas), what=f"the {replicas} pods of {ns} to run in their disks' "
             "zones", timeout=settle_timeout)
    pod = core.read_namespaced_pod(f"{manifests.STATEFULSET}-0", ns)
    zones = {s.name: s.zone for s in t.provider.node_states()}
    configuration.update(replicas=replicas, target_node=pod.spec.node_name, target_zone=zones[pod.spec.node_name],
                         other_zone=next(z for z in t.provider.spec.zones if z != zones[pod.spec.node_name])
                         if len(t.provider.spec.zones) > 1 else "")
    if t.provider.capabilities.runs_kubelets:  # what each volume holds before the fault, read back after it
        _made["ledger"] = data.DataLedger()
        _made["ledger"].check(core, ns, expected=replicas, timeout=settle_timeout)
    audit = t.ecs.audit()
    configuration["audit_after"] = audit[-1]["seq"] if audit else 0
    log.info("targets: web-0 runs on %s in %s", configuration["target_node"], configuration["target_zone"])


def before_method_control(context: dict, **_) -> None:
    global _in_method
    _in_method = True


def after_method_control(context: dict, **_) -> None:
    global _in_method
    _in_method = False


def after_activity_control(context: dict, state: dict = None, **_) -> None:
    """A method activity that failed (a check that did not hold, an action that could not
    act) ends the experiment here, as interrupted: the run must not pass."""
    if _in_method and state and state.get("status") == "failed":
        error = "".join(state.get("exception") or [])[-600:] or "no detail"
        _fail(f"activity {context.get('name')!r} failed: {error}")


def _check_data(t: Target, ledger: data.DataLedger, ns: str, replicas: int, journal: dict) -> None:
    """After the rollbacks, every volume must hold what its pod wrote before the fault; a
    volume that does not is recorded in the journal as a problem of the run."""
    try:
        wait_for(lambda: settled(t.verdict(ns), replicas), what=f"the {replicas} pods of {ns} to run again",
                 timeout=180)
        ledger.check(t.provider.core, ns, expected=replicas)
    except (data.DataLost, WaitTimeout) as err:
        log.error("zoneproof workload control: %s", err)
        journal.setdefault(DATA_PROBLEMS, []).append(str(err))


def after_experiment_control(context: dict, state: dict = None, configuration: dict = None,
                             **_) -> None:
    """Remove the workload, its disks and the namespace this run made."""
    global _in_method
    _in_method = False
    ns = _made.get("workload_namespace")
    if not ns:
        return
    t = target(configuration)
    ledger = _made.get("ledger")
    if ledger is not None and state is not None:
        # As many pods as the StatefulSet now asks for: experiments may have scaled it.
        replicas = client.AppsV1Api(t.api).read_namespaced_stateful_set(manifests.STATEFULSET, ns).spec.replicas
        _check_data(t, ledger, ns, replicas, state)
    try:
        workloads.remove_workload(t.api, ns)
        wait_for(lambda: (not (left := workloads.disks_created_for(t.cloud, ns)),
                          f"disks left: {[d['DiskId'] for d in left]}"),
                 what=f"the disks of {ns} to be deleted", timeout=60)
    except (WaitTimeout, ApiException) as err:
        log.error("zoneproof workload control: clean-up of %s incomplete: %s", ns, err)
    finally:
        if _made.get("storage_class"):
            try:
                client.StorageV1Api(t.api).delete_storage_class(_made["storage_class"])
            except ApiException as err:
                if err.status != 404:
                    log.error("could not delete StorageClass %s: %s", _made["storage_class"], err)
        if _made.get("namespace"):
            delete_namespace(t.provider.core, _made["namespace"])
            log.info("deleted namespace %s", _made["namespace"])
        _made.clear()
