"""Chaos Toolkit extension of zoneproof: the workload control, actions and probes its
experiments (``chaos/*.yaml``) call. Each function takes the experiment's
``configuration`` and reaches the cluster through zoneproof's providers."""
