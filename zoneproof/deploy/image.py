"""The container images of node plugins, built here for clusters with kubelets: the
reference driver's, and one around a driver binary the user gives.

The reference driver's: Debian's python3 (a small mmdebstrap rootfs), the very Python packages this zoneproof runs
with (pinned to the versions installed beside it, so ``uv.lock`` in a checkout), installed
for the image's platform by uv, this zoneproof package itself, and the gRPC stubs it
generated (the image has no Go to fetch protos with). The node plugin and its registrar
run from it, and so does the fake instance metadata service beside a node plugin. The tag
carries a key over all of that, so an unchanged zoneproof reuses it.
"""

from __future__ import annotations

import compileall
import hashlib
import importlib.metadata
import logging
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from zoneproof import toolchain
from zoneproof.cluster.docker import Docker
from zoneproof.cluster.nodeimage import NodeImageError, cache_dir, debian_rootfs, docker_import
from zoneproof.csi import proto
from zoneproof.progress import step

log = logging.getLogger(__name__)

IMAGE_REPOSITORY = "zoneproof/driver"
# e2fsprogs: the node plugin formats block devices; iproute2: the fake metadata service
# puts its address on the node.
PACKAGES = ("python3", "mount", "util-linux", "e2fsprogs", "iproute2", "ca-certificates")
PYTHON_VERSION = "3.11"  # Debian bookworm's python3
PYTHON_PLATFORM = "x86_64-manylinux_2_36"  # bookworm's glibc
SITE = "/opt/zoneproof/site"
CACHE = "/opt/zoneproof/cache"
OWN_DISTRIBUTIONS = {"zoneproof", "zoneproof-chaos", "zoneproof_chaos"}


def _requirements() -> list[str]:
    """Every distribution installed beside zoneproof, pinned, but zoneproof's own."""
    pins = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower().replace("_", "-") not in {d.replace("_", "-") for d in OWN_DISTRIBUTIONS}:
            pins.add(f"{name}=={dist.version}")
    return sorted(pins, key=str.lower)


def _uv() -> str:
    """The uv that installs the image's packages: $ZONEPROOF_UV (the Makefile's pinned one),
    else the Makefile's install in the cache, else uv on PATH."""
    explicit = os.environ.get("ZONEPROOF_UV")
    if explicit:
        return explicit
    cached = sorted(toolchain.cache_root().glob("uv-*/bin/uv"))
    if cached:
        return str(cached[-1])
    found = shutil.which("uv")
    if found:
        return found
    raise NodeImageError("building the driver image needs uv: set ZONEPROOF_UV, or run through `make`")


def _package_dir() -> Path:
    return Path(str(resources.files("zoneproof")))


def _source_digest() -> str:
    h = hashlib.sha256()
    for root in (_package_dir(), toolchain.TOOLS_DIR):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def image_tag() -> str:
    h = hashlib.sha256()
    h.update("\n".join(_requirements()).encode())
    h.update(_source_digest().encode())
    h.update(" ".join(PACKAGES).encode())
    return f"{IMAGE_REPOSITORY}:{h.hexdigest()[:12]}"


def ensure_driver_image(docker: Docker) -> str:
    """The driver image's tag, built first unless the daemon has it."""
    tag = image_tag()
    if docker.has_image(tag):
        return tag
    with step(f"driver image {tag} (Debian python3, zoneproof and its pinned packages)"):
        work = Path(tempfile.mkdtemp(prefix="driver-image-", dir=cache_dir()))
        try:
            _build(docker, tag, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    docker.prune_repository(IMAGE_REPOSITORY, keep=tag)
    return tag


def _compile_bytecode(*dirs: Path) -> None:
    """Compile the image's modules once, here: without bytecode, every node plugin
    container compiles the kubernetes client and grpc at start, which on a small machine
    with a dozen containers starting at once took about a minute. Unchecked-hash pycs hold
    however the image's files are timestamped; the image's python3 must be this minor."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" != PYTHON_VERSION:
        log.info("not compiling the driver image's modules: this is Python %d.%d, the image's is %s",
                 sys.version_info.major, sys.version_info.minor, PYTHON_VERSION)
        return
    for directory in dirs:
        # A file that does not compile (a package's Python 2 test data) is left to the
        # import system, which never imports it; compileall names it on stdout.
        if not compileall.compile_dir(str(directory), quiet=1, workers=0,
                                      invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH):
            log.warning("some modules under %s did not compile; they compile at first import", directory)


def _build(docker: Docker, tag: str, work: Path) -> None:
    root = work / "root"
    root.mkdir()
    rootfs = debian_rootfs("driver", "minbase", PACKAGES)
    subprocess.run(["tar", "-C", str(root), "-xf", str(rootfs)], check=True)
    for junk in ("var/cache/apt", "var/lib/apt/lists"):
        shutil.rmtree(root / junk, ignore_errors=True)
    site = root / SITE.lstrip("/")
    requirements = work / "requirements.txt"
    requirements.write_text("\n".join(_requirements()) + "\n")
    proc = subprocess.run([_uv(), "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                           "--python-version", PYTHON_VERSION, "--python-platform", PYTHON_PLATFORM,
                           "--requirement", str(requirements)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NodeImageError(f"installing the driver image's packages failed: {proc.stderr[-3000:]}")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(_package_dir(), site / "zoneproof", ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(toolchain.TOOLS_DIR, site / "zoneproof" / "_tools", ignore=ignore, dirs_exist_ok=True)
    stubs = root / CACHE.lstrip("/") / proto.stubs_root().name
    for protocol in (proto.CSI, proto.PLUGIN_REGISTRATION):
        generated = proto.stubs_dir(protocol)
        shutil.copytree(generated, stubs / generated.name, ignore=ignore)
    _compile_bytecode(site, root / CACHE.lstrip("/"))
    docker_import(docker, root, tag, (
        f"ENV PYTHONPATH={SITE}", f"ENV ZONEPROOF_CACHE_DIR={CACHE}", "ENV PYTHONUNBUFFERED=1",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'ENTRYPOINT ["python3", "-m", "zoneproof.cli"]'))


# ---------------------------------------------------------------- a user's driver binary
BINARY_REPOSITORY = "zoneproof/driver-binary"
BINARY_IN_IMAGE = "/usr/local/bin/csi-driver"


def binary_image_tag(binary: Path, base: str) -> str:
    h = hashlib.sha256(base.encode())
    with open(binary, "rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            h.update(chunk)
    return f"{BINARY_REPOSITORY}:{h.hexdigest()[:12]}"


def ensure_binary_image(docker: Docker, binary: Path) -> str:
    """An image holding the user's driver binary (at ``BINARY_IN_IMAGE``), one layer over
    the reference driver's image, whose Debian has the tools a block driver's node plugin
    runs (mount, umount, nsenter, blkid, fsck, mkfs.ext4, resize2fs). Built here, nothing
    pulled; the tag carries a key over the binary, so a rebuilt binary gets a new image."""
    base = ensure_driver_image(docker)
    tag = binary_image_tag(binary, base)
    if docker.has_image(tag):
        return tag
    with step(f"node plugin image {tag} ({binary.name} over {base})"):
        work = Path(tempfile.mkdtemp(prefix="driver-binary-image-", dir=cache_dir()))
        try:
            shutil.copyfile(binary, work / "csi-driver")
            (work / "csi-driver").chmod(0o755)
            (work / "Dockerfile").write_text(f"FROM {base}\nCOPY csi-driver {BINARY_IN_IMAGE}\n"
                                             f'ENTRYPOINT ["{BINARY_IN_IMAGE}"]\n')
            # The classic builder: it takes a local base image as it is (nothing is pulled).
            proc = subprocess.run([shutil.which("docker") or "docker", "build", "-q", "-t", tag, str(work)],
                                  env=dict(docker.env(), DOCKER_BUILDKIT="0"), capture_output=True, text=True)
            if proc.returncode != 0:
                raise NodeImageError(f"building {tag} failed: {proc.stderr[-2000:]}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    docker.prune_repository(BINARY_REPOSITORY, keep=tag)
    return tag
