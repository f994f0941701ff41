"""The zonal CSI rules, checked at the driver's own interface: gRPC to the controller of
the driver under test, over a fake ECS, with what each call did checked in the cloud.
csi-sanity checks the CSI calls' shapes; these check zones and attachment, each test naming
the rule of the CSI spec it checks. Run with ``zoneproof rules --profile NAME`` or
``pytest --pyargs zoneproof.rules``."""
