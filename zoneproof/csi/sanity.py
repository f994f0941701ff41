"""Run csi-sanity (kubernetes-csi/csi-test) against a CSI endpoint and summarise the
ginkgo report: what passed, what failed and why, and every skipped group with its reason."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from zoneproof import toolchain


@dataclass
class SanityResult:
    returncode: int
    passed: int = 0
    failed: list[str] = field(default_factory=list)  # "spec name: message"
    skipped: Counter = field(default_factory=Counter)  # (group, reason) -> specs
    output: str = ""

    def summary(self) -> str:
        lines = [f"csi-sanity: {self.passed} passed, {len(self.failed)} failed, {sum(self.skipped.values())} skipped"]
        lines += [f"  FAILED {f}" for f in self.failed]
        lines += [f"  skipped {n:>2} in {group}: {reason}" for (group, reason), n in sorted(self.skipped.items())]
        return "\n".join(lines)


def run_sanity(endpoint: str, *, controller_endpoint: str | None = None, volume_size_gib: int = 20,
               parameters: dict[str, str] | None = None, timeout: float = 900) -> SanityResult:
    with tempfile.TemporaryDirectory(prefix="zp-sanity-") as tmp:
        work = Path(tmp)
        report = work / "report.json"
        args = [str(toolchain.binary("csi-sanity")), f"--csi.endpoint={endpoint}",
                f"--csi.testvolumesize={volume_size_gib << 30}", f"--csi.stagingdir={work / 'staging'}",
                f"--csi.mountdir={work / 'mount'}", f"--ginkgo.json-report={report}", "--ginkgo.no-color"]
        if controller_endpoint:
            args.append(f"--csi.controllerendpoint={controller_endpoint}")
        if parameters:
            params_file = work / "parameters.yaml"
            params_file.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in parameters.items()))
            args.append(f"--csi.testvolumeparameters={params_file}")
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        result = SanityResult(returncode=proc.returncode, output=proc.stdout[-20000:] + proc.stderr[-5000:])
        if not report.exists():
            result.failed.append(f"no report written (exit {proc.returncode})")
            return result
        for suite in json.loads(report.read_text()):
            for spec in suite.get("SpecReports") or []:
                if spec.get("LeafNodeType") != "It":
                    continue
                name = " ".join([*(spec.get("ContainerHierarchyTexts") or []), spec.get("LeafNodeText", "")])
                message = ((spec.get("Failure") or {}).get("Message") or "").strip().splitlines()
                if spec["State"] == "passed":
                    result.passed += 1
                elif spec["State"] in ("skipped", "pending"):
                    group = " ".join((spec.get("ContainerHierarchyTexts") or [])[-1:]) or name
                    result.skipped[(group, message[0] if message else spec["State"])] += 1
                else:
                    result.failed.append(f"{name}: {message[0] if message else spec['State']}")
    return result
