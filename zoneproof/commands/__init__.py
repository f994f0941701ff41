"""The commands of `zoneproof`, a module per group; each parses its options and calls a
function of the module that does the work."""
