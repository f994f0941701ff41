"""zoneproof: conformance and chaos tests for zonal block storage."""
