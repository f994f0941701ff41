"""Well-known label, annotation and taint keys that decide zonal placement."""

ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
ZONE_DEPRECATED = "failure-domain.beta.kubernetes.io/zone"
REGION_DEPRECATED = "failure-domain.beta.kubernetes.io/region"
DISK_ZONE = "topology.diskplugin.csi.alibabacloud.com/zone"
INSTANCE_ID = "alibabacloud.com/ecs-instance-id"
HOSTNAME = "kubernetes.io/hostname"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"  # what ACK nodes carry; node plugins read it

# Every key a node carries its zone under; all must agree.
NODE_ZONE_KEYS = (ZONE, ZONE_DEPRECATED, DISK_ZONE)

CONTROLLER_MANAGED_ATTACH_DETACH = "volumes.kubernetes.io/controller-managed-attach-detach"

TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"

# Our own: which simulated nodes are "powered". kwok manages (heartbeats, runs pods on)
# only nodes whose label says on; turning it off is a power cut as Kubernetes sees it.
POWER = "zoneproof.dev/power"
POWER_ON = "on"
POWER_OFF = "off"
