"""The reference disk CSI driver (``diskplugin.csi.alibabacloud.com``) on the ECS API: one
file per CSI service, the zone policies and StorageClass parameters apart. zoneproof
deploys it as any other driver (zoneproof.deploy)."""
