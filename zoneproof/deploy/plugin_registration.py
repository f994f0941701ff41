"""The node-driver-registrar's job, for nodes with a kubelet: serve the kubelet's plugin
registration API on a socket in the plugin watcher's directory, so that the kubelet finds
the node plugin, asks it NodeGetInfo and writes CSINode and the topology labels itself.

Why not the upstream ``node-driver-registrar``: the Go module proxy does not serve
``github.com/kubernetes-csi/node-driver-registrar`` at any version, and zoneproof builds
every third-party tool from that proxy. What the registrar does is small and fixed by the
kubelet's ``pluginregistration/v1`` API (stubs generated from the kubelet module's own
proto): answer ``GetInfo`` with the driver's name, the node plugin's socket as the kubelet
sees it and the CSI versions, and hear ``NotifyRegistrationStatus``. Everything after that
(plugin watcher, NodeGetInfo, CSINode, node labels) is the real kubelet's.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent import futures
from pathlib import Path

import grpc

from zoneproof.csi.proto import load, load_registration

log = logging.getLogger(__name__)
registration, registration_grpc = load_registration()

CSI_PLUGIN_TYPE = "CSIPlugin"
SUPPORTED_VERSIONS = ("1.0.0",)


class RegistrationService(registration_grpc.RegistrationServicer):
    def __init__(self, driver: str, endpoint: str, registered_mark: Path | None = None):
        self.driver = driver
        self.endpoint = endpoint
        self.registered_mark = registered_mark
        self.outcome = threading.Event()
        self.error = ""

    def GetInfo(self, request, context):
        log.info("kubelet asked for plugin info: %s at %s", self.driver, self.endpoint)
        return registration.PluginInfo(type=CSI_PLUGIN_TYPE, name=self.driver, endpoint=self.endpoint,
                                       supported_versions=list(SUPPORTED_VERSIONS))

    def NotifyRegistrationStatus(self, request, context):
        if request.plugin_registered:
            log.info("kubelet registered %s", self.driver)
            if self.registered_mark is not None:  # the kubelet has asked NodeGetInfo and written CSINode
                self.registered_mark.write_text(self.driver)
        else:
            self.error = request.error or "no reason given"
            log.error("kubelet refused %s: %s", self.driver, self.error)
            self.outcome.set()
        return registration.RegistrationStatusResponse()


def registration_socket(registry_dir: Path, driver: str) -> Path:
    """Where the kubelet's plugin watcher looks: ``<plugins_registry>/<driver>-reg.sock``."""
    return registry_dir / f"{driver}-reg.sock"


def plugin_name(csi_address: str, poll: float = 1.0) -> str:
    """The node plugin's name from its GetPluginInfo, once it answers: registering a plugin
    that does not listen yet would only have the kubelet refuse it."""
    csi, csi_grpc = load()
    announced = False
    with grpc.insecure_channel(f"unix://{csi_address}") as channel:
        while True:
            try:
                grpc.channel_ready_future(channel).result(timeout=poll * 10)
                return csi_grpc.IdentityStub(channel).GetPluginInfo(csi.GetPluginInfoRequest(), timeout=10).name
            except (grpc.FutureTimeoutError, grpc.RpcError) as err:
                if not announced:
                    log.info("waiting for the node plugin at %s (%s)", csi_address, type(err).__name__)
                    announced = True


def serve(csi_address: str, endpoint: str, registry_dir: Path, registered_mark: Path | None = None,
          refusal_log: Path | None = None) -> int:
    """Register the node plugin listening at ``csi_address`` (``endpoint`` as the kubelet
    sees it) and serve until the kubelet refuses it (exit 1, as the upstream registrar
    does, so the pod restarts) or the process is stopped. ``registered_mark``, if given, is
    written once the kubelet says it registered the plugin (for a readiness probe);
    ``refusal_log``, if given, gets the kubelet's refusal (a pod's termination message)."""
    driver = plugin_name(csi_address)
    path = registration_socket(registry_dir, driver)
    registry_dir.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        os.unlink(path)  # the socket of a previous run of this container
    if registered_mark is not None:
        registered_mark.unlink(missing_ok=True)
    service = RegistrationService(driver, endpoint, registered_mark)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    registration_grpc.add_RegistrationServicer_to_server(service, server)
    server.add_insecure_port(f"unix://{path}")
    server.start()
    log.info("registration socket %s serves %s (node plugin at %s)", path, driver, endpoint)
    try:
        service.outcome.wait()
    finally:
        server.stop(grace=1).wait()
        path.unlink(missing_ok=True)
    if refusal_log is not None:
        refusal_log.write_text(f"the kubelet refused {driver}: {service.error}")
    return 1
