"""The error every cluster operation raises when the cluster is not in a state that
allows it (kept apart so that catching it loads no provider)."""


class ClusterError(RuntimeError):
    """The cluster is not in a state that allows the operation; the message says why."""
