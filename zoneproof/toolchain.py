"""Build the third-party Go tools the local cluster runs, and cache them outside git.

Each tool set is a small Go module of ours under ``tools/<name>/`` whose ``go.mod``
and ``go.sum`` pin every dependency (that pair is the lock). A build lands in
``<cache>/tools/<name>-<version>-<digest>/bin``; the digest covers the module files,
the link flags and the Go version, so a changed pin or toolchain builds afresh while
an unchanged one is found again and nothing runs.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from zoneproof.progress import step

log = logging.getLogger(__name__)


def _tools_dir() -> Path:
    """The Go modules of the tool sets: $ZONEPROOF_TOOLS_DIR; else those an installed wheel
    carries (package data); else, in a source checkout, the repository's ``tools/``."""
    explicit = os.environ.get("ZONEPROOF_TOOLS_DIR")
    if explicit:
        return Path(explicit)
    shipped = resources.files("zoneproof") / "_tools"
    if shipped.is_dir():
        return Path(str(shipped))
    return Path(__file__).resolve().parent.parent / "tools"


TOOLS_DIR = _tools_dir()


class ToolchainError(RuntimeError):
    """A tool could not be found or built."""


def cache_root() -> Path:
    """Where built tools live: $ZONEPROOF_CACHE_DIR, else the user cache directory."""
    explicit = os.environ.get("ZONEPROOF_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zoneproof"


@dataclass(frozen=True)
class GoToolSet:
    """One Go module of ours that builds one or more binaries."""

    name: str
    main_module: str  # the required module whose version names the build
    package: str  # what `go build` compiles: "tool" (the go.mod tool directives) or "."
    binaries: tuple[str, ...]
    ldflags: tuple[str, ...] = ()

    @property
    def module_dir(self) -> Path:
        return TOOLS_DIR / self.name

    @property
    def version(self) -> str:
        go_mod = (self.module_dir / "go.mod").read_text()
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(self.main_module)}\s+(v\S+)", go_mod, re.M)
        if not match:
            raise ToolchainError(f"{self.module_dir}/go.mod does not require {self.main_module}")
        return match.group(1)

    def digest(self, go_version: str) -> str:
        h = hashlib.sha256()
        for path in sorted(self.module_dir.iterdir()):
            if path.is_file() and path.suffix in {".mod", ".sum", ".go"}:
                h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        h.update(" ".join(self.ldflags).encode() + b"\0" + go_version.encode())
        return h.hexdigest()[:12]

    def install_dir(self, go_version: str) -> Path:
        return cache_root() / "tools" / f"{self.name}-{self.version}-{self.digest(go_version)}"


def _kube_version_flags(version: str) -> tuple[str, ...]:
    # Without these the binaries report v0.0.0-master, which kwokctl (and users) misread.
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


KUBERNETES_VERSION = "v1.37.2"

TOOL_SETS: dict[str, GoToolSet] = {
    "kubernetes": GoToolSet(
        name="kubernetes",
        main_module="k8s.io/kubernetes",
        package="tool",
        binaries=("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"),
        ldflags=_kube_version_flags(KUBERNETES_VERSION),
    ),
    "etcd": GoToolSet(name="etcd", main_module="go.etcd.io/etcd/server/v3", package=".", binaries=("etcd",)),
    "kwok": GoToolSet(name="kwok", main_module="sigs.k8s.io/kwok", package="tool", binaries=("kwok", "kwokctl")),
    # The CSI sidecars and csi-sanity; named after the provisioner's version, the digest
    # covers the attacher's and csi-test's pins too.
    "csi": GoToolSet(name="csi", main_module="github.com/kubernetes-csi/external-provisioner/v6", package="tool",
                     binaries=("csi-provisioner", "csi-attacher", "csi-sanity")),
    # kind, for the kind provider (multi-node clusters of containers with real kubelets).
    "kind": GoToolSet(name="kind", main_module="sigs.k8s.io/kind", package="tool", binaries=("kind",)),
}

# What a kind node image carries beyond the control plane above: built only when the kind
# provider needs a node image of its own (see zoneproof.cluster.nodeimage).
NODE_IMAGE_TOOL_SETS: dict[str, GoToolSet] = {
    "kubernetes-node": GoToolSet(
        name="kubernetes-node",
        main_module="k8s.io/kubernetes",
        package="tool",
        binaries=("kubelet", "kubeadm", "kube-proxy"),
        ldflags=_kube_version_flags(KUBERNETES_VERSION),
    ),
    # kubeadm's default DNS add-on, and the CRI client kind uses to load images.
    "coredns": GoToolSet(name="coredns", main_module="github.com/coredns/coredns", package="tool", binaries=("coredns",)),
    "crictl": GoToolSet(name="crictl", main_module="sigs.k8s.io/cri-tools", package="tool", binaries=("crictl",)),
}
# Alibaba Cloud's official Go SDKs as clients of the fake ECS: built on first use by the
# test that drives the fake with them (tests/test_ecs_go_sdks.py).
CLIENT_TOOL_SETS: dict[str, GoToolSet] = {
    "ecs-clients": GoToolSet(name="ecs-clients", main_module="github.com/alibabacloud-go/ecs-20140526/v7",
                             package=".", binaries=("ecs-clients",)),
}
ALL_TOOL_SETS: dict[str, GoToolSet] = {**TOOL_SETS, **NODE_IMAGE_TOOL_SETS, **CLIENT_TOOL_SETS}


def go_version() -> str:
    """The Go version builds use; asked once per GOTOOLCHAIN setting, not on every lookup."""
    return _go_version(os.environ.get("GOTOOLCHAIN", ""), os.environ.get("PATH", ""))


@functools.lru_cache(maxsize=8)
def _go_version(toolchain_setting: str, path: str) -> str:  # noqa: ARG001 - the cache key
    try:
        out = subprocess.run(["go", "env", "GOVERSION"], check=True, capture_output=True, text=True, env=go_env())
    except FileNotFoundError as err:
        raise ToolchainError("the `go` command is not on PATH; install Go 1.26 or newer") from err
    except subprocess.CalledProcessError as err:
        raise ToolchainError(f"`go env GOVERSION` failed: {err.stderr.strip()}") from err
    return out.stdout.strip()


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    # go.sum is the lock: never let a build rewrite it. No VCS stamping: the same
    # sources give the same binary whether or not the checkout is clean.
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly -buildvcs=false").strip()
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def installed(tool_set: GoToolSet, go_ver: str) -> Path | None:
    """The bin directory of a finished build, or None."""
    bin_dir = tool_set.install_dir(go_ver) / "bin"
    if all((bin_dir / b).is_file() for b in tool_set.binaries):
        return bin_dir
    return None


def build(tool_set: GoToolSet, *, force: bool = False) -> Path:
    """Build one tool set unless an identical build is cached; return its bin directory."""
    go_ver = go_version()
    target = tool_set.install_dir(go_ver)
    target.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time per tool set (xdist workers and parallel `make` share the cache).
    with open(target.parent / f".{tool_set.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = installed(tool_set, go_ver)
        if found and not force:
            log.debug("%s %s is cached at %s", tool_set.name, tool_set.version, found)
            return found
        log.info("building %s %s with %s into %s; a cold build takes minutes",
                 tool_set.name, tool_set.version, go_ver, target)
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix=f".{tool_set.name}-", dir=target.parent))
        try:
            (staging / "bin").mkdir()
            cmd = ["go", "build", "-v", "-trimpath", "-ldflags", " ".join(("-s", "-w", *tool_set.ldflags)),
                   "-o", str(staging / "bin") + "/", tool_set.package]
            if tool_set.package == ".":
                cmd[cmd.index("-o") + 1] = str(staging / "bin" / tool_set.binaries[0])
            _go_build(cmd, tool_set)
            missing = [b for b in tool_set.binaries if not (staging / "bin" / b).is_file()]
            if missing:
                raise ToolchainError(f"building {tool_set.name} produced no {', '.join(missing)}")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("built %s in %.0f s", tool_set.name, time.monotonic() - started)
        return target / "bin"


class _BuildCount:
    """Packages compiled so far by a ``go build -v`` (which names each one as it compiles it,
    and is silent about those the build cache holds, so a warm build ends short of the total)."""

    def __init__(self, total: int):
        self.total, self.compiled = total, 0

    def __str__(self) -> str:
        share = f" ({100 * self.compiled // self.total}%)" if self.total else ""
        return f"{self.compiled} of at most {self.total or '?'} packages compiled{share}"


def _go_build(cmd: list[str], tool_set: GoToolSet) -> None:
    """Run the build, counting the packages it compiles for the progress lines."""
    listing = subprocess.run(["go", "list", "-deps", tool_set.package], cwd=tool_set.module_dir, env=go_env(),
                             capture_output=True, text=True)
    count = _BuildCount(len(listing.stdout.split()) if listing.returncode == 0 else 0)
    other: list[str] = []  # what is not a package name: the compiler's messages
    with step(f"go build of {tool_set.name} {tool_set.version} ({', '.join(tool_set.binaries)})", status=count.__str__):
        proc = subprocess.Popen(cmd, cwd=tool_set.module_dir, env=go_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            if line.strip() and " " not in line.strip() and not line.startswith("#"):
                count.compiled += 1
            else:
                other.append(line)
        proc.wait()
    if proc.returncode != 0:
        raise ToolchainError(f"building {tool_set.name} failed:\n{''.join(other)[-4000:]}")
    log.info("go build of %s: %s", tool_set.name, count)


def build_all(*, force: bool = False) -> dict[str, Path]:
    return {name: build(ts, force=force) for name, ts in TOOL_SETS.items()}


def binary(name: str) -> Path:
    """Path of a built binary (e.g. "kube-apiserver"); builds its tool set if needed."""
    for tool_set in ALL_TOOL_SETS.values():
        if name in tool_set.binaries:
            return build(tool_set) / name
    raise ToolchainError(f"no tool set provides a binary named {name!r}")
