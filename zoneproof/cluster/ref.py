"""Which cluster, as one value: a cluster zoneproof made (``local``, ``kind``) by name, or an
``existing`` one by kubeconfig and context. It is written as pytest options, as the chaos
experiments' configuration and as environment variables, and read back from each, here
and nowhere else; ``attach`` gives its provider."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zoneproof.cluster.errors import ClusterError
from zoneproof.cluster.spec import DEFAULT_CLUSTER_NAME

OWN = ("local", "kind")  # providers whose clusters zoneproof makes
PROVIDERS = (*OWN, "existing")


class ClusterRefError(ClusterError, ValueError):
    """Options that name no cluster; the message says which and why."""


@dataclass(frozen=True)
class ClusterRef:
    provider: str = "local"
    name: str = DEFAULT_CLUSTER_NAME
    kubeconfig: str = ""
    context: str = ""

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ClusterRefError(f"provider {self.provider!r} is not one of {', '.join(PROVIDERS)}")
        if self.owned and (self.kubeconfig or self.context):
            raise ClusterRefError("--kubeconfig and --context go with --provider existing")
        if not self.owned and not self.kubeconfig:
            raise ClusterRefError("--provider existing needs --kubeconfig PATH")

    @property
    def owned(self) -> bool:
        """Whether zoneproof made the cluster (and so may make, break and remove its nodes)."""
        return self.provider in OWN

    def __str__(self) -> str:
        if self.owned:
            return f"{self.provider} cluster {self.name!r}"
        return f"existing cluster of {self.kubeconfig}" + (f" (context {self.context})" if self.context else "")

    def attach(self):
        """The cluster's provider, its API checked to answer (ClusterError if it does not)."""
        if self.owned:
            from zoneproof.cluster import attach

            return attach(self.provider, self.name)
        from zoneproof.cluster.existing import ExistingProvider

        provider = ExistingProvider(self.kubeconfig, self.context or None)
        provider.up()
        return provider

    # ------------------------------------------------------------ pytest options
    def pytest_args(self) -> list[str]:
        if self.owned:
            return [f"--provider={self.provider}", f"--cluster-name={self.name}"]
        return ["--provider=existing", f"--kubeconfig={self.kubeconfig}",
                *([f"--context={self.context}"] if self.context else [])]

    @classmethod
    def from_pytest(cls, option: Callable[[str], object]) -> "ClusterRef":
        """From a pytest config's ``getoption``."""
        provider = option("--provider")
        if provider in OWN:
            return cls(provider, option("--cluster-name"))
        return cls(provider, kubeconfig=option("--kubeconfig") or "", context=option("--context") or "")

    # ------------------------------------------------------------ chaos configuration
    def chaos_configuration(self) -> dict[str, str]:
        if self.owned:
            return {"zoneproof_provider": self.provider, "zoneproof_cluster": self.name}
        return {"zoneproof_provider": "existing", "zoneproof_kubeconfig": self.kubeconfig,
                "zoneproof_context": self.context}

    @classmethod
    def from_chaos_configuration(cls, configuration: dict, environ: dict[str, str]) -> "ClusterRef":
        """From an experiment's configuration (``environ``'s KUBECONFIG for an existing
        cluster that names none)."""
        provider = configuration.get("zoneproof_provider") or "local"
        if provider in OWN:
            return cls(provider, configuration.get("zoneproof_cluster") or DEFAULT_CLUSTER_NAME)
        return cls(provider, kubeconfig=configuration.get("zoneproof_kubeconfig") or environ.get("KUBECONFIG", ""),
                   context=configuration.get("zoneproof_context") or "")

    def environment(self) -> dict[str, str]:
        """The variables the experiments' configuration reads (for `chaos run`);
        KUBERNETES_CONTEXT only to name a context (an empty one is an error to the client)."""
        if self.owned:
            return {"ZONEPROOF_PROVIDER": self.provider, "ZONEPROOF_CLUSTER": self.name}
        return {"ZONEPROOF_PROVIDER": "existing", **({"KUBERNETES_CONTEXT": self.context} if self.context else {})}
