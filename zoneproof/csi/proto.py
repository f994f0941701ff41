"""gRPC stubs generated from the protocols' own ``.proto`` files.

- CSI v1 (``csi.proto``) from the Go module ``github.com/container-storage-interface/spec``
  at the version ``tools/csi/go.mod`` pins (the CSI sidecars are built against it);
- the kubelet's plugin registration API (``pluginregistration/v1/api.proto``) from
  ``k8s.io/kubelet`` at the version ``tools/kubernetes/go.mod`` pins (the kubelet is
  built against it).

Each proto is fetched into the Go module cache and its stubs are generated once per version
into the zoneproof cache. No copy of either proto lives in the repository.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from zoneproof import toolchain


@dataclass(frozen=True)
class Protocol:
    label: str
    module: str  # the Go module holding the proto
    pinned_by: str  # the tool set whose go.mod pins its version
    proto: str  # path of the .proto inside the module
    stem: str  # what protoc names the generated modules: <stem>_pb2, <stem>_pb2_grpc

    def version(self) -> str:
        go_mod = (toolchain.TOOLS_DIR / self.pinned_by / "go.mod").read_text()
        match = re.search(rf"^\s*{re.escape(self.module)}\s+(v\S+)", go_mod, re.M)
        if not match:
            raise toolchain.ToolchainError(f"tools/{self.pinned_by}/go.mod does not pin {self.module}")
        return match.group(1)


CSI = Protocol("csi", "github.com/container-storage-interface/spec", "csi", "csi.proto", "csi")
PLUGIN_REGISTRATION = Protocol("pluginregistration", "k8s.io/kubelet", "kubernetes",
                               "pkg/apis/pluginregistration/v1/api.proto", "api")


def _module_dir(protocol: Protocol, version: str) -> Path:
    ref = f"{protocol.module}@{version}"
    proc = subprocess.run(["go", "mod", "download", "-json", ref], capture_output=True, text=True,
                          env=toolchain.go_env())
    if proc.returncode != 0:
        raise toolchain.ToolchainError(f"could not fetch {ref}: {proc.stderr or proc.stdout}")
    return Path(json.loads(proc.stdout)["Dir"])


def stubs_root() -> Path:
    return toolchain.cache_root() / "grpc-stubs"


def stubs_dir(protocol: Protocol = CSI) -> Path:
    """Directory holding the protocol's ``_pb2`` and ``_pb2_grpc`` modules, generating them if needed."""
    version = protocol.version()
    target = stubs_root() / f"{protocol.label}-{version}"
    done = target / f"{protocol.stem}_pb2_grpc.py"
    if done.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.is_file():
            return target
        from grpc_tools import protoc  # imported late: only generation needs it

        well_known = Path(protoc.__file__).parent / "_proto"
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        try:
            source = _module_dir(protocol, version)
            proto = source / protocol.proto
            code = protoc.main(["protoc", f"-I{proto.parent}", f"-I{well_known}", f"--python_out={staging}",
                                f"--grpc_python_out={staging}", str(proto)])
            if code != 0:
                raise toolchain.ToolchainError(f"protoc failed ({code}) on {proto}")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _import(protocol: Protocol) -> tuple[ModuleType, ModuleType]:
    path = str(stubs_dir(protocol))
    if path not in sys.path:
        sys.path.insert(0, path)
    return (importlib.import_module(f"{protocol.stem}_pb2"), importlib.import_module(f"{protocol.stem}_pb2_grpc"))


@lru_cache(maxsize=1)
def load() -> tuple[ModuleType, ModuleType]:
    """(csi_pb2, csi_pb2_grpc)."""
    return _import(CSI)


@lru_cache(maxsize=1)
def load_registration() -> tuple[ModuleType, ModuleType]:
    """The kubelet's plugin registration API: (api_pb2, api_pb2_grpc)."""
    return _import(PLUGIN_REGISTRATION)
