"""Who a node plugin is, when it runs in a cluster: its Node names its instance (the
``alibabacloud.com/ecs-instance-id`` label, else the providerID, as a cloud's node
controller records it) and ECS describes that instance. The zone and the instance type come
from the cloud, never from a label, as on ECS."""

from __future__ import annotations

import os

from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.nodes import instance_of
from zoneproof.ecsapi import EcsApi, EcsSettings


class NodeIdentityError(RuntimeError):
    """The node's instance cannot be found; the message says why."""


def driver_cloud(ecs_endpoint: str, region: str) -> EcsApi:
    """The driver's ECS client, with the credentials of its environment (those the fake
    ECS accepts by default when none are set)."""
    from zoneproof.ecs.server import DEFAULT_CREDENTIALS

    default_id, default_secret = next(iter(DEFAULT_CREDENTIALS.items()))
    return EcsApi(EcsSettings(endpoint=ecs_endpoint, region=region,
                              access_key_id=os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID", default_id),
                              access_key_secret=os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", default_secret)))


def described_instance(node_name: str, cloud: EcsApi) -> dict:
    """ECS's description of the instance of the Node this process runs on (read with the
    pod's in-cluster credentials)."""
    from kubernetes import client, config

    config.load_incluster_config()
    node = client.CoreV1Api().read_node(node_name)
    try:
        instance = instance_of(node)
    except ClusterError as err:
        raise NodeIdentityError(str(err)) from None
    described = cloud.describe_instance(instance)
    if described is None:
        raise NodeIdentityError(f"ECS has no instance {instance} (node {node_name})")
    return described
