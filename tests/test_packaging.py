"""Packaging: the test tools are pinned in one place, and under CI the suite
runs against the installed manylinux wheel, not the source tree."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import bytecache

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_test_requirement_is_pinned_once() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["test"]
    pins: dict[str, list[str]] = {}
    for line in (ROOT / "ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pins.setdefault(_name(line), []).append(line)
    for requirement in extra:
        assert _name(requirement) == requirement.lower().replace("_", "-"), (
            f"{requirement}: versions belong in ci/constraints.txt")
        assert len(pins.get(_name(requirement), [])) == 1, f"{requirement} is not pinned once"
    assert all("==" in p for found in pins.values() for p in found)


@pytest.mark.skipif(not os.environ.get("BYTECACHE_TEST_WHEEL"),
                    reason="ci/test.sh sets BYTECACHE_TEST_WHEEL when it tests the built wheel")
def test_the_suite_runs_against_the_installed_manylinux_wheel() -> None:
    here = Path(bytecache.__file__).resolve()
    assert ROOT / "python" not in here.parents, f"bytecache imported from the source tree: {here}"
    dist = metadata.distribution("bytecache")
    wheel = (dist.read_text("WHEEL") or "").splitlines()
    tags = [line.split(": ", 1)[1] for line in wheel if line.startswith("Tag: ")]
    assert tags and all("manylinux_2_17_x86_64" in t or "manylinux2014" in t for t in tags), tags
