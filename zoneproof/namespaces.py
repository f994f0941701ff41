"""Namespaces made for one test or experiment, labelled so that leftovers can be found."""

from __future__ import annotations

import re

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from zoneproof.waiting import wait_for

TEST_LABEL = "zoneproof.dev/test"


def create_namespace(core: client.CoreV1Api, name: str, test: str = "") -> str:
    """Create a namespace labelled with the test that owns it, and wait until it takes pods."""
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={TEST_LABEL: re.sub(r"[^A-Za-z0-9_.-]", "_", test)[-63:].strip("_.-") or "manual"})))

    # Pods are refused until the ServiceAccount controller has made the default account.
    def has_default_account():
        try:
            core.read_namespaced_service_account("default", name)
            return True, "default ServiceAccount present"
        except ApiException as err:
            if err.status == 404:
                return False, "no default ServiceAccount yet"
            raise

    wait_for(has_default_account, what=f"namespace {name} to be usable", timeout=30)
    return name


def delete_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.delete_namespace(name)
    except ApiException as err:
        if err.status != 404:
            raise
