"""CSI Identity service."""

from __future__ import annotations

from zoneproof.csi.proto import load

csi, csi_grpc = load()

DRIVER_NAME = "diskplugin.csi.alibabacloud.com"
VERSION = "0.1.0"


class IdentityService(csi_grpc.IdentityServicer):
    def __init__(self, with_controller: bool):
        self.with_controller = with_controller

    def GetPluginInfo(self, request, context):
        return csi.GetPluginInfoResponse(name=DRIVER_NAME, vendor_version=VERSION)

    def GetPluginCapabilities(self, request, context):
        service = csi.PluginCapability.Service
        types = [service.VOLUME_ACCESSIBILITY_CONSTRAINTS]
        if self.with_controller:
            types.insert(0, service.CONTROLLER_SERVICE)
        return csi.GetPluginCapabilitiesResponse(capabilities=[
            csi.PluginCapability(service=service(type=t)) for t in types])

    def Probe(self, request, context):
        return csi.ProbeResponse()
