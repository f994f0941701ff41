"""The end-to-end run behind ``make e2e``: first the zonal CSI rules at the driver's
controller (``zoneproof rules``, seconds, over a fake ECS of their own); then one cluster
and one deployment of the driver under test shared by parallel pytest workers; then, in
one process and alone on the cluster, the chaos experiments (marked ``disruptive``) on
that deployment and the suites that make the cloud misbehave for everyone or redeploy the
driver (marked ``serial``); then one summary for people, with where the time went and the recovery time of each
experiment, and what the run left behind, which fails it.

The cluster is a local one (started here if it is not running) or an existing one (its
kubeconfig given; the driver is whatever runs there). The driver comes from its profile,
and every deployment's driver and sidecar logs are kept under ``reports/driver-logs/``:
``shared`` for the one made here, ``serial`` for those the serial phase makes.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from kubernetes import client

from zoneproof import leftovers, report, tally, toolchain
from zoneproof.cluster import OWN_PROVIDERS, ClusterSpec
from zoneproof.cluster.ref import ClusterRef
from zoneproof.deploy.driver import DriverDeployment, DriverError, check_run_inputs, parse_zone_categories
from zoneproof.profile import DriverProfile
from zoneproof.results import Results
from zoneproof.rules.run import run_rules

log = logging.getLogger(__name__)
# The suites' tests of each cluster phase (results.PHASES but the rules, in the order
# they run), as a pytest marker expression. Everything that must run alone runs in one
# process: a session's start-up costs seconds.
PHASE_MARKS = {"parallel": "not serial and not disruptive", "serial": "serial or disruptive"}
PLACEMENT_MODULES = ("test_placement", "test_placement_negative", "test_wait_for_first_consumer", "test_node_lifecycle",
                     "test_attach_limits")


@dataclass
class E2eOptions:
    profile: DriverProfile
    cluster: ClusterRef = ClusterRef()
    driver_binary: str | None = None
    zone_categories: tuple[str, ...] = ()
    static_disks: tuple[str, ...] = ()
    workers: int = 2
    reports: Path = Path("reports")
    seed: int | None = None  # one seed for every phase and worker; random when not given
    pytest_args: list[str] = field(default_factory=list)

    @property
    def results(self) -> Results:
        """The run's result files, under ``reports``."""
        return Results(self.reports)


def _pytest(args: list[str], env: dict[str, str]) -> int:
    # The suites travel inside the package: pytest finds them by import name, from any directory.
    # hypothesis's plugin (installed for the project's own tests) costs a second per process.
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "zoneproof.suites", "-p", "no:cacheprovider",
           "-p", "no:hypothesispytest",
           "-o", "log_cli=true", "--log-cli-level=INFO", *args]
    log.info("running %s", " ".join(cmd))
    return subprocess.run(cmd, env=env).returncode


def chaos_summary(entries: list[dict]) -> str:
    """One line per chaos experiment: its longest recovery and its wall time."""
    if not entries:
        return "chaos: no experiment ran"
    lines = ["chaos experiments (recovery = fault or repair -> every pod Running in its disk's zone):"]
    for entry in entries:
        seconds = entry["seconds"]
        lines.append(f"  {entry['experiment']:<20} recovery {entry['recovery']:6.1f}s   "
                     f"wall time {seconds.get('wall time', 0):6.1f}s")
    return "\n".join(lines)


def skip_reasons(cases: list[report.run.Case]) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for case in cases:
        if case.outcome == "skipped":
            reason = case.message.removeprefix("Skipped: ")
            reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def check_static_disks(values: tuple[str, ...], zones: tuple[str, ...]) -> None:
    """``--static-disk ZONE=DISK_ID`` options, refused before anything starts."""
    for value in values:
        zone, sep, disk_id = value.partition("=")
        if not sep or not disk_id or zone not in zones:
            raise DriverError(f"--static-disk {value!r}: write ZONE=DISK_ID with ZONE one of {', '.join(zones)}")


def without_marks(args: list[str]) -> tuple[list[str], str]:
    """The pytest arguments without their ``-m`` expression, and that expression ("" if
    none; the last one, as pytest keeps)."""
    rest, marks, args = [], "", list(args)
    while args:
        arg = args.pop(0)
        if arg == "-m" and args:
            marks = args.pop(0)
        elif arg.startswith("-m") and len(arg) > 2 and not arg.startswith("--"):
            marks = arg[2:].removeprefix("=")
        else:
            rest.append(arg)
    return rest, marks


def phase_marks(phase: str, user_marks: str) -> str:
    """A phase's marker expression, narrowed by the user's own ``-m`` where given (pytest
    keeps only the last ``-m``, so the phase's would silently replace the user's)."""
    return f"({user_marks}) and ({PHASE_MARKS[phase]})" if user_marks else PHASE_MARKS[phase]


def _pytest_options(opts: E2eOptions, phase: str) -> list[str]:
    reports = opts.results
    args = [f"--driver-profile={opts.profile.source}", f"--alluredir={reports.allure_results}",
            f"--seed={opts.seed}", f"--junitxml={reports.junit(phase)}", f"--driver-logs={reports.driver_logs / phase}"]
    args += opts.cluster.pytest_args()
    args += [f"--driver-binary={opts.driver_binary}"] if opts.driver_binary else []
    args += [f"--zone-categories={v}" for v in opts.zone_categories]
    args += [f"--static-disk={v}" for v in opts.static_disks]
    return [*args, *without_marks(opts.pytest_args)[0]]


PACKAGES = ("zoneproof", "pytest", "allure-pytest", "chaostoolkit-lib", "kubernetes")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # chaostoolkit-lib comes with the optional chaos extra
        return "not installed"


def environment(opts: E2eOptions, api: client.ApiClient, spec) -> dict:
    """What the run ran on, for the report (and allure's environment)."""
    tool_sets = dict(toolchain.TOOL_SETS)
    if opts.cluster.provider != "kind":
        tool_sets.pop("kind")
    found = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provider": opts.cluster.provider, "cluster": spec.name, "zones": ", ".join(spec.zones),
        "kubernetes": client.VersionApi(api).get_code().git_version,
        "profile": opts.profile.name, "driver": opts.profile.driver,
        "driver binary": opts.driver_binary or ("reference" if opts.cluster.owned else "as deployed"),
        "seed": opts.seed, "workers": opts.workers,
        "tools": {name: ts.version for name, ts in tool_sets.items()} if opts.cluster.owned else {},
        "packages": {name: _version(name) for name in PACKAGES},
    }
    if opts.cluster.owned:
        found["nodes per zone"] = spec.nodes_per_zone
        found["timings"] = asdict(spec.timings.scaled())
    return found


def run_e2e(opts: E2eOptions) -> int:
    started = time.monotonic()
    if opts.seed is None:
        opts.seed = random.SystemRandom().randrange(1 << 31)
    # Bad input is refused before a cluster starts and before an old run's reports are touched.
    ref = opts.cluster
    if not ref.owned:
        cluster = ref.attach()
        check_static_disks(opts.static_disks, cluster.spec.zones)
        where = f"existing cluster {cluster.spec.name!r}"
    else:
        check_run_inputs(opts.profile, opts.driver_binary)
        cls = OWN_PROVIDERS[ref.provider]
        provider = cls(ClusterSpec(name=ref.name))
        if provider.capabilities.runs_kubelets and opts.profile.run.node_plugin is None:
            raise DriverError(f"profile {opts.profile.name!r} has no node_plugin, so its driver cannot run on "
                              f"{ref.provider} nodes, whose kubelets register node plugins")
        own_cluster = not (provider.exists() and provider.is_up())
        zones = provider.spec.zones if own_cluster else ref.attach().spec.zones
        categories = parse_zone_categories(opts.zone_categories, zones)
        check_static_disks(opts.static_disks, zones)
        where = str(ref)
    reports = opts.results
    reports.clear()
    env = dict(os.environ, **reports.env())
    user_marks = without_marks(opts.pytest_args)[1]
    phases = {"parallel": ["-m", phase_marks("parallel", user_marks),
                           *(["-n", str(opts.workers), "--dist", "load"] if opts.workers > 1 else ["-p", "no:xdist"])],
              "serial": ["-p", "no:xdist", "-m", phase_marks("serial", user_marks)]}
    codes, timed = [], {}

    @contextmanager
    def timing(step: str):
        begun = time.monotonic()
        try:
            yield
        finally:
            timed[step] = round(time.monotonic() - begun, 1)

    def run_phase(phase: str) -> None:
        with timing(phase):
            codes.append(_pytest([*_pytest_options(opts, phase), *phases[phase]], env))

    if not ref.owned:
        ran_on = environment(opts, cluster.api_client, cluster.spec)
        print("rules: not run (the driver of an existing cluster is yours: zoneproof runs no controller of it; "
              "`zoneproof rules --profile ...` checks one it runs)")
        for phase in phases:
            run_phase(phase)
        return finish(opts, where, codes, time.monotonic() - started, ran_on, timed, {})
    driver = None
    try:
        if own_cluster:
            with timing("bring-up"):
                provider.up()
        provider = ref.attach()
        ran_on = environment(opts, provider.api_client, provider.spec)
        # The deployment parallel workers share, so it is made here, once; the chaos
        # experiments and the serial phase's other first tests find it running with the
        # policy they need.
        policy = "topology" if "topology" in opts.profile.zone_policies else opts.profile.zone_policies[0]
        driver = DriverDeployment(provider, opts.profile, zone_policy=policy, driver_binary=opts.driver_binary,
                                  zone_categories=categories, logs=reports.driver_logs / "shared")
        if driver.running() is not None:
            driver.down()
        # The zonal CSI rules first: seconds, at the controller, over a fake ECS of their own.
        with timing("rules"):
            codes.append(run_rules(opts.profile.source, driver_binary=opts.driver_binary,
                                   kubeconfig=str(provider.kubeconfig), zones=",".join(provider.spec.zones),
                                   region=provider.spec.region, junit=reports.junit("rules"),
                                   extra=("--alluredir", str(reports.allure_results))))
        with timing("driver up"):
            driver.up()
        run_phase("parallel")
        # The serial phase runs its tests of the same policy (the chaos experiments among
        # them) on this deployment first, then replaces it with the other policy's
        # (zoneproof.pytest_plugin orders them so).
        run_phase("serial")
        left = leftovers.in_cluster(provider.api_client)
    finally:
        with timing("tear-down"):
            if driver is not None:
                driver.down()
            if own_cluster:
                provider.down()
    left.update(leftovers.in_cloud(reports.driver_logs))
    reports.write_leftovers(left)
    return finish(opts, where, codes, time.monotonic() - started, ran_on, timed, left)


def finish(opts: E2eOptions, where: str, codes: list[int], elapsed: float, ran_on: dict,
           timed: dict[str, float], left: dict[str, list[str]]) -> int:
    """The summary, then the reports people open (index.html, the allure report). What the
    run left behind fails it: every test cleans up after itself, even when it fails."""
    code = summarise(opts, where, codes, elapsed, timed)
    if any(left.values()):
        print("error: the run left behind:\n" + "\n".join(leftovers.lines(left)), file=sys.stderr)
        code = code or 1
    elif left:
        print("left behind: nothing (namespaces, volumes, disks, stopped instances)")
    ran_on.update(seconds=round(elapsed, 1), phases=timed)
    opts.results.write_environment(ran_on)
    try:
        built = report.build(opts.reports)
    except (report.ReportError, report.allure.AllureError) as err:
        print(f"error: no report: {err}", file=sys.stderr)
        return code or 1
    for regression in built.regressions:
        print(f"  slower than before: {regression}")
    print(f"report: {built.page.resolve()}" + (f"; allure report: {built.allure_report.resolve()}"
                                               if built.allure_report else ""))
    return code


SLOWEST = 5  # scenarios named in the summary's time breakdown


def time_breakdown(timed: dict[str, float], cases: list[report.run.Case]) -> list[str]:
    """Where the run's time went: each step and phase, then the slowest scenarios."""
    by_phase = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in timed.items())
    slowest = sorted(cases, key=lambda c: -c.seconds)[:SLOWEST]
    return [f"time by phase: {by_phase}",
            "slowest scenarios: " + ", ".join(f"{c.id.split('::', 1)[-1]} {c.seconds:.0f}s" for c in slowest)]


def summarise(opts: E2eOptions, where: str, codes: list[int], elapsed: float, timed: dict[str, float]) -> int:
    reports = opts.results
    try:
        cases = report.run.read(reports.dir).cases
    except report.ReportError:
        cases = []  # no phase left results: said below
    outcomes = [c.outcome for c in cases]
    failed = outcomes.count("failed") + outcomes.count("error")
    placed = tally.total(reports.verdicts())
    placement_ran = sum(1 for c in cases
                        if c.outcome != "skipped" and c.module.removesuffix(".py") in PLACEMENT_MODULES)
    print(f"\nzoneproof e2e on the {where}, driver profile {opts.profile.name!r} ({opts.profile.driver}): "
          f"scenarios {len(cases)} ({outcomes.count('passed')} passed, {failed} failed, "
          f"{outcomes.count('skipped')} skipped), placement verdicts {placed['verdicts']}, "
          f"pods checked {placed['pods checked']}, violations {placed['violations']}, "
          f"time {elapsed:.0f}s ({opts.workers} worker{'s' if opts.workers > 1 else ''})"
          + (f"; driver logs in {reports.driver_logs}" if opts.cluster.owned else ""))
    for line in time_breakdown(timed, cases):
        print(f"  {line}")
    reasons = skip_reasons(cases)
    for reason, count in sorted(reasons.items(), key=lambda r: -r[1]):
        print(f"  skipped {count}: {reason}")
    print(chaos_summary(reports.chaos()))
    if not cases:
        print("error: no scenario ran", file=sys.stderr)
        return 1
    if not placement_ran:
        print("error: no placement case ran, so nothing about placement was proven"
              + (" (see the skip reasons above)" if reasons else ""), file=sys.stderr)
        return 1
    # A phase that selected nothing (pytest's 5) is fine as long as some scenario ran.
    return next((c for c in codes if c not in (0, 5)), 0)
