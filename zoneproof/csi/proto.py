"""The CSI v1 protocol stubs, generated from the spec's own ``csi.proto``.

The proto comes from the Go module ``github.com/container-storage-interface/spec`` at the
version ``tools/csi/go.mod`` pins (the CSI sidecars are built against it), fetched into the
Go module cache; the stubs are generated once per spec version into the zoneproof cache.
No copy of the proto lives in the repository.
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
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from zoneproof import toolchain

SPEC_MODULE = "github.com/container-storage-interface/spec"


def spec_version() -> str:
    go_mod = (toolchain.TOOLS_DIR / "csi" / "go.mod").read_text()
    match = re.search(rf"^\s*{re.escape(SPEC_MODULE)}\s+(v\S+)", go_mod, re.M)
    if not match:
        raise toolchain.ToolchainError(f"tools/csi/go.mod does not pin {SPEC_MODULE}")
    return match.group(1)


def _proto_dir(version: str) -> Path:
    proc = subprocess.run(["go", "mod", "download", "-json", f"{SPEC_MODULE}@{version}"],
                          capture_output=True, text=True, env=toolchain.go_env())
    if proc.returncode != 0:
        raise toolchain.ToolchainError(f"could not fetch {SPEC_MODULE}@{version}: {proc.stderr or proc.stdout}")
    return Path(json.loads(proc.stdout)["Dir"])


def stubs_dir() -> Path:
    """Directory holding csi_pb2.py and csi_pb2_grpc.py, generating them if needed."""
    version = spec_version()
    target = toolchain.cache_root() / "csi-stubs" / version
    if (target / "csi_pb2_grpc.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "csi_pb2_grpc.py").is_file():
            return target
        from grpc_tools import protoc  # imported late: only generation needs it

        well_known = Path(protoc.__file__).parent / "_proto"
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        try:
            source = _proto_dir(version)
            code = protoc.main(["protoc", f"-I{source}", f"-I{well_known}", f"--python_out={staging}",
                                f"--grpc_python_out={staging}", str(source / "csi.proto")])
            if code != 0:
                raise toolchain.ToolchainError(f"protoc failed ({code}) on {source / 'csi.proto'}")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@lru_cache(maxsize=1)
def load() -> tuple[ModuleType, ModuleType]:
    """(csi_pb2, csi_pb2_grpc)."""
    path = str(stubs_dir())
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module("csi_pb2"), importlib.import_module("csi_pb2_grpc")
