"""A kind node image built here, for hosts that cannot pull kind's own.

kind's stock node image comes from a registry. Where none is reachable, this builds an
equivalent from parts that are: a Debian rootfs (``mmdebstrap``), kind's own node files
(the ``images/base/files`` of the pinned kind module) with the few edits listed in
:data:`NODE_FILE_EDITS`, the Kubernetes binaries the local provider already builds plus the
kubelet, kubeadm and kube-proxy, and the control-plane images kubeadm asks for
(``kubeadm config images list``), each a tiny rootfs around its binary, preloaded into the
node's containerd so that nothing is pulled at run time.

The image tag carries a key over every input (tool builds, kind version, Debian package
list, this module), so an unchanged input set reuses the image and a changed one builds
afresh. A cold build takes minutes; progress is logged with elapsed time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from zoneproof import toolchain
from zoneproof.cluster.docker import Docker
from zoneproof.progress import step

log = logging.getLogger(__name__)

DEBIAN_SUITE = "bookworm"
# What kind's base image installs, with Debian's containerd, runc and CNI plugins in place
# of the ones kind downloads.
NODE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "conntrack", "iptables", "nftables", "iproute2", "ethtool", "util-linux",
    "mount", "kmod", "libseccomp2", "pigz", "bash", "ca-certificates", "curl", "jq", "procps", "containerd", "runc",
    "containernetworking-plugins", "e2fsprogs", "socat", "iputils-ping", "less",
)
# kube-proxy needs the iptables and conntrack userland in its image.
PROXY_PACKAGES = ("iptables", "conntrack", "nftables", "kmod")
BUSYBOX = "/bin/busybox"  # Debian's busybox-static, for small images of our own
BUSYBOX_PACKAGE = "busybox-static"
IMAGE_REPOSITORY = "zoneproof/kind-node"
# Bump when the assembly below changes what lands in the image; the key covers the rest.
NODE_IMAGE_LAYOUT = 1


@dataclass(frozen=True)
class Edit:
    """A change to one of kind's node files: ``old`` must occur exactly once."""

    path: str
    old: str
    new: str
    why: str


NODE_FILE_EDITS = (
    Edit("etc/containerd/config.toml",
         '[proxy_plugins]\n# fuse-overlayfs is used for rootless\n[proxy_plugins."fuse-overlayfs"]\n'
         '  type = "snapshot"\n  address = "/run/containerd-fuse-overlayfs.sock"\n', "",
         "the fuse-overlayfs snapshotter is for rootless nodes and is not installed"),
    Edit("etc/containerd/config.toml", "restrict_oom_score_adj = false", "restrict_oom_score_adj = true",
         "a negative oom_score_adj needs CAP_SYS_RESOURCE, which some hosts cannot grant a node"),
    Edit("etc/systemd/system/containerd.service", "ExecStart=/usr/local/bin/containerd", "ExecStart=/usr/bin/containerd",
         "Debian's containerd lives in /usr/bin"),
    Edit("etc/systemd/system/containerd.service", "ExecStartPre=-/sbin/modprobe overlay\n", "",
         "a node cannot load kernel modules; overlay is the host's"),
    Edit("etc/systemd/system/containerd.service", "OOMScoreAdjust=-999\n", "",
         "a negative OOM score needs CAP_SYS_RESOURCE"),
    Edit("etc/default/kubelet", "--runtime-cgroups=/system.slice/containerd.service",
         "--runtime-cgroups=/system.slice/containerd.service --fail-cgroupv1=false",
         "kubelet 1.37 refuses cgroup v1 hosts unless told otherwise"),
    Edit("usr/local/bin/entrypoint", "\nvalidate_userns\n", "\nremount_cgroups_writable\nvalidate_userns\n",
         "without --privileged docker mounts the cgroup hierarchies read-only (function defined below)"),
    Edit("usr/local/bin/entrypoint", "\n# validate state\n", """
# zoneproof: a node started without --privileged (capabilities spelled out instead) gets
# read-only cgroup mounts; systemd, containerd and the kubelet need them writable.
remount_cgroups_writable() {
  local target options
  while read -r target options; do
    case "$target" in /sys/fs/cgroup|/sys/fs/cgroup/*) ;; *) continue ;; esac
    case ",$options," in *,ro,*)
      log_info "remounting $target read-write"
      mount -o remount,bind,rw "$target" || log_warn "could not remount $target read-write" ;;
    esac
  done < <(findmnt -rn -o TARGET,OPTIONS)
  if [[ ! -e /dev/kmsg ]]; then
    ln -s /dev/console /dev/kmsg || true
  fi
}

# validate state
""", "the function the previous edit calls"),
)

# A StorageClass that provisions nothing and is not the default: kind applies this file at
# creation, and the suites must only ever see the classes they create.
STORAGE_MANIFEST = """apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
"""


class NodeImageError(RuntimeError):
    """The node image could not be built; the message says which step failed."""


def _run(cmd: list[str], *, what: str, cwd: Path | None = None, env: dict | None = None,
         input: bytes | None = None, timeout: float = 1800) -> bytes:
    proc = subprocess.run(cmd, cwd=cwd, env=env, input=input, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise NodeImageError(f"{what} failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace').strip()[-3000:]}")
    return proc.stdout


def module_dir(tool_set: str) -> Path:
    """Where the Go module cache holds a tool set's main module, at the version it pins."""
    tools = toolchain.ALL_TOOL_SETS[tool_set]
    ref = f"{tools.main_module}@{tools.version}"
    out = _run(["go", "mod", "download", "-json", ref], what=f"fetching {ref}", cwd=tools.module_dir,
               env=toolchain.go_env())
    return Path(json.loads(out)["Dir"])


def _need(command: str, package: str) -> str:
    found = shutil.which(command)
    if not found:
        raise NodeImageError(f"building a kind node image needs `{command}`; install Debian's `{package}` package")
    return found


def cache_dir() -> Path:
    return toolchain.cache_root() / "kind-node"


def debian_rootfs(name: str, variant: str, packages: tuple[str, ...]) -> Path:
    """A Debian rootfs tarball made by mmdebstrap, cached by its package list."""
    _need("mmdebstrap", "mmdebstrap")
    digest = hashlib.sha256(f"{DEBIAN_SUITE} {variant} {' '.join(packages)}".encode()).hexdigest()[:12]
    tarball = cache_dir() / f"{name}-rootfs-{DEBIAN_SUITE}-{digest}.tar"
    if tarball.is_file():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with step(f"Debian {DEBIAN_SUITE} rootfs for the {name} ({len(packages)} packages, mmdebstrap)"):
        partial = tarball.with_suffix(".partial")
        _run(["mmdebstrap", f"--variant={variant}", "--components=main",
              "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
              "--dpkgopt=path-include=/usr/share/doc/*/copyright", "--dpkgopt=path-exclude=/usr/share/locale/*",
              f"--include={','.join(packages)}", "--format=tar", DEBIAN_SUITE, str(partial)],
             what=f"mmdebstrap of the {name} rootfs")
        partial.rename(tarball)
    return tarball


def docker_import(docker: Docker, tree: Path, tag: str, changes: tuple[str, ...] = ()) -> None:
    """An image of one layer holding a directory tree."""
    tar = subprocess.Popen(["tar", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
    flags = [f for change in changes for f in ("--change", change)]
    proc = subprocess.run([shutil.which("docker") or "docker", "import", *flags, "-", tag], stdin=tar.stdout,
                          env=docker.env(), capture_output=True)
    tar.stdout.close()
    if tar.wait() != 0 or proc.returncode != 0:
        raise NodeImageError(f"docker import of {tag} failed: {proc.stderr.decode(errors='replace')[-2000:]}")


CONTROL_PLANE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd")
NODE_BINARIES = ("kubelet", "kubeadm", "kube-proxy", "coredns", "crictl")


class NodeImageBuilder:
    def __init__(self, docker: Docker):
        self.docker = docker
        self.cache = cache_dir()

    # --- inputs and the key over them ---
    @cached_property
    def binaries(self) -> dict[str, Path]:
        with step("Kubernetes, etcd, coredns and crictl binaries (cached after the first build)"):
            return {name: toolchain.binary(name) for name in (*CONTROL_PLANE_BINARIES, *NODE_BINARIES)}

    @cached_property
    def key(self) -> str:
        h = hashlib.sha256()
        for name, path in sorted(self.binaries.items()):
            h.update(f"{name}={path}\n".encode())  # tool install dirs carry their own digests
        h.update(f"kind={toolchain.TOOL_SETS['kind'].version}\nsuite={DEBIAN_SUITE}\n".encode())
        h.update(" ".join(NODE_PACKAGES + PROXY_PACKAGES).encode())
        h.update(f"layout={NODE_IMAGE_LAYOUT}\n{NODE_FILE_EDITS!r}\n{STORAGE_MANIFEST}".encode())
        h.update(Path(BUSYBOX).read_bytes() if Path(BUSYBOX).exists() else b"")
        return h.hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPOSITORY}:{toolchain.KUBERNETES_VERSION}-{self.key}"

    def ensure(self) -> str:
        """The image's tag, building it first unless the daemon already has it."""
        if self.docker.has_image(self.tag):
            log.info("kind node image %s is already built", self.tag)
            return self.tag
        for command, package in (("mmdebstrap", "mmdebstrap"), ("containerd", "containerd"), ("ctr", "containerd"),
                                 ("gcc", "gcc"), ("systemctl", "systemd"), (BUSYBOX, BUSYBOX_PACKAGE)):
            _need(command, package)
        started = time.monotonic()
        log.info("building kind node image %s: a cold build takes about 10 minutes after the tools", self.tag)
        self.cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="build-", dir=self.cache))
        try:
            self._build(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("kind node image %s built in %.0f s", self.tag, time.monotonic() - started)
        self.docker.prune_repository(IMAGE_REPOSITORY, keep=self.tag)
        return self.tag

    # --- the parts ---
    def _pause(self) -> Path:
        """kubeadm's sandbox binary, compiled from the C source in the Kubernetes module."""
        target = self.cache / f"pause-{toolchain.KUBERNETES_VERSION}"
        if target.is_file():
            return target
        source = module_dir("kubernetes") / "build" / "pause" / "linux" / "pause.c"
        with step("pause (C, static)"):
            partial = target.with_suffix(".partial")
            _run(["gcc", "-Os", "-static", "-o", str(partial), str(source), '-DVERSION="zoneproof"'],
                 what="compiling pause")
            _run(["strip", str(partial)], what="stripping pause")
            partial.rename(target)
        return target

    def _node_files(self, root: Path, pause_ref: str) -> None:
        """kind's node files with our edits, into the node rootfs."""
        source = module_dir("kind") / "images" / "base" / "files"
        shutil.copytree(source, root, dirs_exist_ok=True)
        for path in root.rglob("*"):
            if not path.is_symlink():  # the module cache is read-only; the copies must not be
                path.chmod(path.stat().st_mode | 0o200)
        sandbox = Edit("etc/containerd/config.toml", 'sandbox_image = "registry.k8s.io/pause:3.10"',
                       f'sandbox_image = "{pause_ref}"', "the pause image kubeadm lists, the one preloaded")
        for edit in (*NODE_FILE_EDITS, sandbox):
            target = root / edit.path
            text = target.read_text()
            if text.count(edit.old) != 1:
                raise NodeImageError(f"kind {toolchain.TOOL_SETS['kind'].version}'s {edit.path} no longer reads as "
                                     f"expected (looked for {edit.old[:60]!r} once, for: {edit.why})")
            target.write_text(text.replace(edit.old, edit.new))
        (root / "etc/systemd/system/containerd-fuse-overlayfs.service").unlink(missing_ok=True)
        (root / "kind/manifests").mkdir(parents=True, exist_ok=True)
        (root / "kind/manifests/default-storage.yaml").write_text(STORAGE_MANIFEST)
        for script in (root / "usr/local/bin/entrypoint", *(root / "kind/bin").glob("*.sh")):
            script.chmod(0o755)

    def _images(self) -> dict[str, str]:
        """Image reference kubeadm expects -> the binary it runs, from kubeadm itself."""
        out = _run([str(self.binaries["kubeadm"]), "config", "images", "list",
                    "--kubernetes-version", toolchain.KUBERNETES_VERSION], what="kubeadm config images list")
        refs = out.decode().split()
        wanted = {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns",
                  "pause"}
        by_name = {ref.rsplit("/", 1)[-1].split(":")[0]: ref for ref in refs}
        missing = wanted - by_name.keys()
        if missing:
            raise NodeImageError(f"kubeadm lists no image for {', '.join(sorted(missing))}: {refs}")
        return by_name

    def _component_tree(self, name: str, tree: Path) -> list[str]:
        """The rootfs of one control-plane image; returns its entrypoint."""
        if name == "kube-proxy":
            _run(["tar", "-C", str(tree), "-xf", str(debian_rootfs("kube-proxy", "essential", PROXY_PACKAGES))],
                 what="unpacking the kube-proxy rootfs")
            for junk in ("var/cache", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"):
                shutil.rmtree(tree / junk, ignore_errors=True)
        else:
            _glibc_base(tree)
        (tree / "usr/local/bin").mkdir(parents=True, exist_ok=True)
        if name == "pause":
            shutil.copy(self._pause(), tree / "pause")
            return ["/pause"]
        if name == "coredns":
            shutil.copy(self.binaries["coredns"], tree / "coredns")
            return ["/coredns"]
        shutil.copy(self.binaries[name], tree / "usr/local/bin" / name)
        return []

    def _build(self, work: Path) -> None:
        docker = self.docker
        root = work / "rootfs"
        root.mkdir()
        node_rootfs = debian_rootfs("node", "minbase", NODE_PACKAGES)
        images = self._images()
        with step("node filesystem (kind's node files, kubelet, kubeadm, kubectl, crictl)"):
            _run(["tar", "-C", str(root), "-xf", str(node_rootfs)], what="unpacking the node rootfs")
            self._node_files(root, images["pause"])
            for name in ("kubelet", "kubeadm", "kubectl"):
                shutil.copy(self.binaries[name], root / "usr/bin" / name)
            shutil.copy(self.binaries["crictl"], root / "usr/local/bin/crictl")
            (root / "kind/version").write_text(toolchain.KUBERNETES_VERSION)
            for folder in ("etc/kubernetes/manifests", "etc/cni/net.d", "opt/cni"):
                (root / folder).mkdir(parents=True, exist_ok=True)
            (root / "opt/cni/bin").unlink(missing_ok=True)
            (root / "opt/cni/bin").symlink_to("/usr/lib/cni")
            spec = json.loads(_run(["ctr", "oci", "spec"], what="ctr oci spec"))
            spec.setdefault("hooks", {}).setdefault("createContainer", []).append(
                {"path": "/kind/bin/mount-product-files.sh"})
            spec["process"].pop("rlimits", None)
            (root / "etc/containerd/cri-base.json").write_text(json.dumps(spec, indent=2))
            _trim_systemd(root)

        with step(f"{len(images) + 1} images preloaded into the node's containerd"):
            archives = work / "archives"
            archives.mkdir()
            refs = {}
            for name, ref in sorted(images.items()):
                tree = work / f"image-{name}"
                tree.mkdir()
                entrypoint = self._component_tree(name, tree)
                refs[name] = (ref, _docker_archive(docker, tree, name, entrypoint, archives))
            busybox_tree = work / "image-busybox"
            busybox_image(busybox_tree)
            refs["busybox"] = (BUSYBOX_IMAGE, _docker_archive(docker, busybox_tree, "busybox", [], archives))
            _preload(root / "var/lib/containerd", work, refs)

        with step("node image (docker import)"):
            for junk in ("var/cache/apt", "var/lib/apt/lists"):
                shutil.rmtree(root / junk, ignore_errors=True)
            flat = f"{IMAGE_REPOSITORY}-rootfs:{self.key}"
            docker_import(docker, root, flat)
            # `docker import --change` cannot set STOPSIGNAL on older daemons; a build step can.
            dockerfile = (f"FROM {flat}\nENV container=docker\nSTOPSIGNAL SIGRTMIN+3\n"
                          'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\n'
                          f"LABEL dev.zoneproof.node-image-key={self.key}\n")
            env = dict(docker.env(), DOCKER_BUILDKIT="0")
            try:
                _run([shutil.which("docker") or "docker", "build", "-q", "-t", self.tag, "-"], what="docker build",
                     env=env, input=dockerfile.encode())
            finally:
                docker.run("rmi", flat, check=False)


BUSYBOX_IMAGE = "docker.io/zoneproof/busybox:1"


def busybox_image(tree: Path) -> None:
    """A rootfs with Debian's static busybox and its applets: the pod-network agent's and the
    suites' small image."""
    (tree / "bin").mkdir(parents=True)
    (tree / "tmp").mkdir()
    shutil.copy(BUSYBOX, tree / "bin/busybox")
    applets = _run([BUSYBOX, "--list"], what="busybox --list").decode().split()
    for applet in applets:
        if applet != "busybox":
            (tree / "bin" / applet).symlink_to("busybox")


def _glibc_base(tree: Path) -> None:
    """The C library and loader a dynamically linked Go binary needs, and little else."""
    for folder in ("lib/x86_64-linux-gnu", "lib64", "etc", "tmp", "var/run"):
        (tree / folder).mkdir(parents=True, exist_ok=True)
    (tree / "tmp").chmod(0o1777)
    shutil.copy("/lib/x86_64-linux-gnu/libc.so.6", tree / "lib/x86_64-linux-gnu/libc.so.6")
    shutil.copy("/lib64/ld-linux-x86-64.so.2", tree / "lib64/ld-linux-x86-64.so.2")
    (tree / "etc/passwd").write_text("root:x:0:0:root:/root:/sbin/nologin\n")
    (tree / "etc/group").write_text("root:x:0:\n")
    (tree / "etc/nsswitch.conf").write_text("hosts: files dns\n")
    if Path("/etc/ssl/certs").is_dir():
        shutil.copytree("/etc/ssl/certs", tree / "etc/ssl/certs", symlinks=False, dirs_exist_ok=True,
                        ignore_dangling_symlinks=True)


def _trim_systemd(root: Path) -> None:
    """What kind's base image does to systemd: only the units a node needs start."""
    for pattern in ("lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
                    "lib/systemd/system/multi-user.target.wants/*", "etc/systemd/system/*.wants/*",
                    "lib/systemd/system/local-fs.target.wants/*", "lib/systemd/system/sockets.target.wants/*udev*",
                    "lib/systemd/system/sockets.target.wants/*initctl*", "lib/systemd/system/basic.target.wants/*"):
        for path in root.glob(pattern):
            path.unlink()
    with open(root / "etc/systemd/journald.conf", "a") as conf:
        conf.write("ReadKMsg=no\n")
    _run(["systemctl", f"--root={root}", "enable", "kubelet.service", "containerd.service",
          "undo-mount-hacks.service"], what="systemctl enable")
    _run(["systemctl", f"--root={root}", "mask", "systemd-binfmt.service"], what="systemctl mask")
    (root / "etc/machine-id").write_text("")
    init = root / "sbin/init"
    if not init.exists() and not init.is_symlink():
        init.symlink_to("/usr/lib/systemd/systemd")


def _docker_archive(docker: Docker, tree: Path, name: str, entrypoint: list[str], archives: Path) -> Path:
    """An image made from a directory tree, saved as a docker archive for containerd to import."""
    temporary = f"{IMAGE_REPOSITORY}-part-{name}:build"
    docker_import(docker, tree, temporary, (f"ENTRYPOINT {json.dumps(entrypoint)}",
                                            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
    archive = archives / f"{name}.tar"
    try:
        docker.run("save", "-o", str(archive), temporary)
    finally:
        docker.run("rmi", temporary, check=False)
    return archive


def _preload(store: Path, work: Path, refs: dict[str, tuple[str, Path]]) -> None:
    """Import image archives into a containerd store that becomes the node's, under the
    references kubeadm asks for, with a private containerd of the host's."""
    state = work / "containerd-state"
    socket = work / "containerd.sock"
    config = work / "containerd.toml"
    config.write_text(
        f'version = 2\nroot = "{store}"\nstate = "{state}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n'
        '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{work / "opt"}"\n')
    with open(work / "containerd.log", "wb") as out:
        daemon = subprocess.Popen(["containerd", "--config", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise NodeImageError(f"a private containerd for preloading did not start: "
                                     f"{(work / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]
        for name, (ref, archive) in sorted(refs.items()):
            _run([*ctr, "images", "import", "--snapshotter", "overlayfs", str(archive)], what=f"importing {name}")
            temporary = f"docker.io/{IMAGE_REPOSITORY}-part-{name}:build"
            _run([*ctr, "images", "tag", "--force", temporary, ref], what=f"tagging {ref}")
            _run([*ctr, "images", "rm", temporary], what=f"untagging {temporary}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    for leftover in ("tmpmounts", "io.containerd.runtime.v1.linux", "io.containerd.runtime.v2.task"):
        shutil.rmtree(store / leftover, ignore_errors=True)
    os.sync()
