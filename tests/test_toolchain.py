"""Tool builds are cached by version and content: a second build is a no-op, a changed
pin builds afresh. Uses a real `go build` of a tiny module."""

import os
import re
import uuid

import pytest

from zoneproof import toolchain

pytestmark = pytest.mark.toolchain

HELLO_GO = 'package main\n\nimport "example.com/greet"\n\nfunc main() { println(greet.Word) }\n'
# The pinned requirement (what names the build's version) is a local module, so no download.
GO_MOD = """module example.com/hello

go 1.22

require example.com/greet v1.2.3

replace example.com/greet => ./greet
"""


@pytest.fixture
def hello_tool(tmp_path, monkeypatch):
    tools_dir = tmp_path / "tools"
    (tools_dir / "hello").mkdir(parents=True)
    (tools_dir / "hello" / "go.mod").write_text(GO_MOD)
    (tools_dir / "hello" / "greet").mkdir()
    (tools_dir / "hello" / "greet" / "go.mod").write_text("module example.com/greet\n\ngo 1.22\n")
    (tools_dir / "hello" / "greet" / "greet.go").write_text('package greet\n\nconst Word = "hello"\n')
    (tools_dir / "hello" / "main.go").write_text(HELLO_GO)
    monkeypatch.setattr(toolchain, "TOOLS_DIR", tools_dir)
    monkeypatch.setenv("ZONEPROOF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GOFLAGS", "")
    return toolchain.GoToolSet(name="hello", main_module="example.com/greet", package=".", binaries=("hello",))


def test_second_build_is_a_no_op(hello_tool, tmp_path):
    bin_dir = toolchain.build(hello_tool)
    binary = bin_dir / "hello"
    assert os.access(binary, os.X_OK)
    assert str(bin_dir).startswith(str(tmp_path / "cache" / "tools"))
    first_mtime = binary.stat().st_mtime_ns
    assert toolchain.build(hello_tool) == bin_dir
    assert "-v1.2.3-" in bin_dir.parent.name
    assert binary.stat().st_mtime_ns == first_mtime


def test_changed_sources_build_into_a_new_directory(hello_tool):
    first = toolchain.build(hello_tool)
    (toolchain.TOOLS_DIR / "hello" / "main.go").write_text(HELLO_GO + "// changed\n")
    second = toolchain.build(hello_tool)
    assert second != first
    assert (second / "hello").is_file()


def test_broken_module_fails_with_the_compiler_message(hello_tool):
    (toolchain.TOOLS_DIR / "hello" / "main.go").write_text("package main\nfunc main() { undefined() }\n")
    with pytest.raises(toolchain.ToolchainError, match="undefined"):
        toolchain.build(hello_tool)
    # A failed build leaves no half-made install behind.
    assert toolchain.installed(hello_tool, toolchain.go_version()) is None


def test_version_comes_from_the_pinned_requirement():
    assert toolchain.TOOL_SETS["kubernetes"].version == toolchain.KUBERNETES_VERSION
    assert toolchain.TOOL_SETS["kwok"].version.startswith("v0.")
    assert toolchain.TOOL_SETS["etcd"].version.startswith("v3.")
    assert toolchain.TOOL_SETS["kind"].version == "v0.33.0"


def test_unknown_binary_is_named():
    with pytest.raises(toolchain.ToolchainError, match="'kube-apiserverr'"):
        toolchain.binary("kube-apiserverr")


def test_node_image_tool_sets_are_pinned_and_apart_from_the_local_providers():
    # The kind node image's extra binaries are not built for a local-only run.
    assert not set(toolchain.NODE_IMAGE_TOOL_SETS) & set(toolchain.TOOL_SETS)
    assert toolchain.NODE_IMAGE_TOOL_SETS["kubernetes-node"].version == toolchain.KUBERNETES_VERSION
    binaries = {b for ts in toolchain.ALL_TOOL_SETS.values() for b in ts.binaries}
    assert {"kubelet", "kubeadm", "kube-proxy", "coredns", "crictl"} <= binaries


def test_a_build_counts_the_packages_it_compiles(hello_tool, caplog):
    # Sources no build has seen, so that both packages of the module must be compiled.
    word = uuid.uuid4().hex
    (toolchain.TOOLS_DIR / "hello" / "greet" / "greet.go").write_text(f'package greet\n\nconst Word = "{word}"\n')
    with caplog.at_level("INFO", logger="zoneproof.toolchain"):
        toolchain.build(hello_tool)
    (counted,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("go build of hello: ")]
    compiled, total = re.match(r"go build of hello: (\d+) of at most (\d+) packages compiled", counted).groups()
    assert int(compiled) >= 2 and int(total) >= int(compiled), counted  # greet and main, and what they import
