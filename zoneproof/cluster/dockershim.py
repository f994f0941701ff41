"""`docker --privileged` spelled out for hosts that cannot grant it.

kind runs every node container with ``docker run --privileged`` and every node command
with ``docker exec --privileged``. On a host whose capability bounding set lacks some
capabilities (CAP_SYS_RESOURCE on some sandboxed machines) the runtime cannot grant "all"
and refuses. This shim, put first on kind's PATH as ``docker``, rewrites ``run
--privileged`` into what it means minus what the host cannot give: every capability but
the missing ones, unconfined system paths, access to every device, and the devices kind's
node image expects; ``exec`` loses ``--privileged`` (an exec'd process inherits the node
container's capabilities). Everything else goes to the real docker unchanged.

The real docker is named by ``ZONEPROOF_REAL_DOCKER``; ``ZONEPROOF_LIB_MODULES`` stands in
for a missing ``/lib/modules`` (kind mounts it read-only into every node).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

# Linux capabilities by bit number (include/uapi/linux/capability.h), as docker names them.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
NODE_DEVICES = ("/dev/kmsg", "/dev/fuse", "/dev/loop-control")
LIB_MODULES_MOUNT = "/lib/modules:/lib/modules:ro"


def missing_capabilities(status: str | None = None) -> list[str]:
    """Capabilities absent from this process's bounding set (``CapBnd`` of /proc/self/status)."""
    status = status if status is not None else Path("/proc/self/status").read_text()
    line = next((l for l in status.splitlines() if l.startswith("CapBnd:")), None)
    if line is None:
        raise ValueError("no CapBnd line in the process status")
    bounding = int(line.split(":", 1)[1].strip(), 16)
    return [name for bit, name in enumerate(CAPABILITIES) if not bounding >> bit & 1]


def privileged_flags(missing: list[str], devices: tuple[str, ...]) -> list[str]:
    """What ``--privileged`` grants, less the capabilities the host lacks."""
    flags = ["--cap-add", "ALL"]
    for name in missing:
        flags += ["--cap-drop", name]
    flags += ["--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm"]
    for device in devices:
        flags += ["--device", device]
    return flags


def rewrite(args: list[str], missing: list[str], devices: tuple[str, ...], lib_modules: str | None) -> list[str]:
    """docker's arguments as the shim passes them on."""
    if not args or args[0] not in ("run", "exec"):
        return list(args)
    out = [args[0]]
    for arg in args[1:]:
        if arg == "--privileged":
            if args[0] == "run":
                out += privileged_flags(missing, devices)
            continue  # exec: the container's own capabilities are inherited
        if arg == LIB_MODULES_MOUNT and lib_modules:
            out.append(f"{lib_modules}:/lib/modules:ro")
            continue
        out.append(arg)
    return out


def main() -> None:
    real = os.environ.get("ZONEPROOF_REAL_DOCKER")
    if not real:
        sys.exit("zoneproof docker shim: ZONEPROOF_REAL_DOCKER is not set (the path of the real docker)")
    devices = tuple(d for d in NODE_DEVICES if os.path.exists(d))
    lib_modules = None if os.path.isdir("/lib/modules") else os.environ.get("ZONEPROOF_LIB_MODULES")
    args = rewrite(sys.argv[1:], missing_capabilities(), devices, lib_modules)
    os.execv(real, [real, *args])


def install(directory: Path, real_docker: str, lib_modules: Path | None = None) -> Path:
    """Write the shim as ``directory/docker``; returns the directory, to put first on PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "docker"
    env = [f"ZONEPROOF_REAL_DOCKER={real_docker}"]
    if lib_modules is not None:
        env.append(f"ZONEPROOF_LIB_MODULES={lib_modules}")
    # kind runs docker dozens of times: run this file alone (standard library only, no site
    # packages), not the zoneproof package, so each call starts in milliseconds.
    command = " ".join(shlex.quote(part) for part in ("env", *env, sys.executable, "-I", "-S", __file__))
    script.write_text(f"#!/bin/sh\nexec {command} \"$@\"\n")
    script.chmod(0o755)
    return directory


if __name__ == "__main__":
    main()
