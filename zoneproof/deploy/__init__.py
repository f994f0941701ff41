"""The deployment of any profile's driver beside a cluster zoneproof made: the fake ECS, the
driver's processes as its profile says, the real CSI sidecars, and its node side (a
DaemonSet registered by the kubelets on kind, or zoneproof's registrar standing in for the
kubelet on kwok nodes). Kept apart from the reference driver (zoneproof.csi), which is one
driver among those it deploys."""
