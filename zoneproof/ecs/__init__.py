"""A fake Alibaba Cloud ECS: disks and instances with real zone rules, on the real wire protocol."""
