"""Running an experiment from Python (what the suites and the benchmark do) the way
``chaos run`` does, with rollbacks always played, and reading its journal."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator

from chaoslib.experiment import ensure_experiment_is_valid, run_experiment
from chaoslib.loader import load_experiment
from chaoslib.types import Schedule, Strategy
from kubernetes.config import kube_config

from zoneproof.journal import RECOVERY_PREFIX, settle_spans

__all__ = ["RECOVERY_PREFIX", "experiment", "experiments", "kubeconfig", "metrics", "problems", "recovery_seconds",
           "run"]

EXPERIMENTS = resources.files("zoneproof_chaos") / "experiments"


@contextmanager
def kubeconfig(path: Path, context: str | None = None) -> Iterator[None]:
    """Point chaostoolkit-kubernetes at a cluster for a while, in this process: $KUBECONFIG
    (and $KUBERNETES_CONTEXT, which it reads for the context), and the default the
    kubernetes client computed from $KUBECONFIG at import time (which
    chaostoolkit-kubernetes' load_kube_config() falls back on)."""
    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", "KUBERNETES_CONTEXT")}
    saved_default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    os.environ["KUBECONFIG"] = kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
    if context:
        os.environ["KUBERNETES_CONTEXT"] = context
    else:
        os.environ.pop("KUBERNETES_CONTEXT", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved_default


def experiments() -> list[Path]:
    """The experiment files shipped with the extension (package data)."""
    return sorted(Path(str(entry)) for entry in EXPERIMENTS.iterdir() if entry.name.endswith(".yaml"))


def experiment(name: str) -> Path:
    """A shipped experiment by name (``zone-loss``)."""
    found = {p.stem: p for p in experiments()}
    if name not in found:
        raise ValueError(f"no experiment {name!r}; known: {', '.join(found)}")
    return found[name]


def run(path: Path, configuration: dict[str, object]) -> dict:
    """Load, validate and run one experiment with ``configuration`` overriding its own;
    returns the journal.

    Chaos Toolkit turns Ctrl-C (or SIGTERM) into an "interrupted" journal after playing the
    rollbacks, and returns as if nothing happened; the caller (a test run) must stop too, so
    once the rollbacks are done the interruption is raised again as KeyboardInterrupt."""
    experiment = load_experiment(str(path))
    experiment.setdefault("configuration", {}).update(configuration)
    ensure_experiment_is_valid(experiment)
    settings = {"runtime": {"rollbacks": {"strategy": "always"}, "hypothesis": {"strategy": "default"}}}
    received: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def remember(signum, frame):
        received.append(signum)
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        raise KeyboardInterrupt

    for sig in previous:
        signal.signal(sig, remember)
    try:
        journal = run_experiment(experiment, settings=settings, strategy=Strategy.DEFAULT, schedule=Schedule())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt(f"{signal.Signals(received[0]).name} during {path.name}; its rollbacks were played")
    return journal


# Journal key under which the workload control records volumes that lost their data.
DATA_PROBLEMS = "zoneproof_data_problems"


def problems(journal: dict) -> list[str]:
    """Everything in a journal that makes the run a failure, in words."""
    found = []
    if journal.get("status") != "completed":
        found.append(f"experiment ended {journal.get('status')!r}")
    if journal.get("deviated"):
        found.append("the steady state deviated after the method")
    for phase in ("before", "after"):
        state = (journal.get("steady_states") or {}).get(phase)
        if state is not None and not state.get("steady_state_met"):
            found.append(f"steady state not met {phase} the method")
    found += [f"data: {problem}" for problem in journal.get(DATA_PROBLEMS) or []]
    for section in ("run", "rollbacks"):
        for entry in journal.get(section) or []:
            if entry.get("status") != "succeeded":
                error = "".join(entry.get("exception") or [])[-800:]
                found.append(f"{section[:-1] if section == 'rollbacks' else 'activity'} "
                             f"{entry['activity']['name']!r} {entry.get('status')}: {error}")
    return found


def metrics(journal: dict) -> dict[str, float]:
    """Seconds measured in a run. A probe that waits for the workload to settle is timed
    from the start of the action before it to the moment it saw every pod placed
    (zoneproof.journal): for a probe named "recovery…" that is the recovery time (from the
    fault where the workload can recover while it lasts, as for a pod deletion or a drain;
    from the repair where it cannot, as for a zone loss). Power cuts report how long
    Kubernetes took to notice."""
    out: dict[str, float] = {}
    settled = {id(entry): end - start for entry, start, end in settle_spans(journal)}

    def put(label: str, value: float) -> None:
        n, base = 2, label
        while label in out:  # a probe repeated in a loop gets numbered labels
            label, n = f"{base} #{n}", n + 1
        out[label] = round(value, 2)

    for entry in journal.get("run") or []:
        output, activity = entry.get("output"), entry["activity"]
        if id(entry) in settled:
            put(activity["name"], max(0.0, settled[id(entry)]))
        elif isinstance(output, dict) and "not_ready_after_s" in output:
            put(f"{activity['name']} (NotReady after)", output["not_ready_after_s"])
    out["wall time"] = round(float(journal.get("duration") or 0), 1)
    return out


def recovery_seconds(measured: dict[str, float]) -> float:
    """The longest recovery of a run (the figure the benchmark reports per experiment)."""
    return max((v for k, v in measured.items() if k.startswith(RECOVERY_PREFIX)), default=0.0)
