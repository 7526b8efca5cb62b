"""The floors pyproject.toml declares for the security-relevant dependencies (issue 12, item
11): each has one, with its reason in a comment right above it, the known-vulnerable
releases fall below it, and the installed versions meet every declared floor."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

# Package -> releases with a published advisory that the floor must exclude.
VULNERABLE = {
    "pyjwt": ["2.10.0", "2.11.0", "2.3.0"],  # CVE-2024-53861, CVE-2026-32597, CVE-2022-29217
    "cryptography": ["43.0.0", "44.0.0", "46.0.6", "48.0.0", "49.0.0"],
    "starlette": ["0.39.2", "0.48.0", "1.0.0"],  # CVE-2024-47874, CVE-2025-62727, CVE-2026-48710
    "fastapi": ["0.109.0"],  # CVE-2024-24762
    "uvicorn": ["0.11.6"],  # CVE-2020-7694, CVE-2020-7695
    "h11": ["0.14.0", "0.15.0"],  # CVE-2025-43859
    "httpx": ["0.22.0"],  # CVE-2021-41945
    "redis": ["4.5.3", "4.4.3"],  # CVE-2023-28858, CVE-2023-28859
    "sqlalchemy": ["1.2.17"],  # CVE-2019-7164, CVE-2019-7548
    "argon2-cffi": [],  # no advisory known: a floor all the same
}


def requirements() -> dict[str, Requirement]:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return {canonicalize_name(r.name): r for r in map(Requirement, deps)}


def test_pyjwt_floor_excludes_the_iss_substring_release() -> None:
    spec = requirements()["pyjwt"].specifier
    assert not spec.contains("2.10.0") and spec.contains("2.15.1")
    assert all(not spec.contains(v) for v in ("2.9.0", "2.10.0", "2.10.1", "2.11.0"))


@pytest.mark.parametrize("name", sorted(VULNERABLE))
def test_each_security_dependency_has_a_floor_above_its_advisories(name: str) -> None:
    requirement = requirements().get(name)
    assert requirement is not None, f"{name} is not a declared dependency"
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert floors, f"{name} has no >= floor"
    for release in VULNERABLE[name]:
        assert not requirement.specifier.contains(release), f"{name} {release} is allowed"


@pytest.mark.parametrize("name", sorted(VULNERABLE))
def test_each_floor_gives_its_reason_in_a_comment(name: str) -> None:
    lines = PYPROJECT.read_text().splitlines()
    (index,) = [
        i
        for i, line in enumerate(lines)
        if re.match(rf'\s*"{re.escape(name)}(\[[^\]]*\])?>=', line, re.IGNORECASE)
    ]
    comment = []
    for line in reversed(lines[:index]):
        if not line.strip().startswith("#"):
            break
        comment.append(line)
    text = " ".join(comment)
    assert comment, f"no comment above the {name} floor"
    assert re.search(r"CVE-\d{4}-\d+|GHSA-|no advisory known", text), text


def test_installed_versions_meet_the_declared_floors() -> None:
    short = []
    for name, requirement in requirements().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            short.append(f"{name}: not installed")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            short.append(f"{name} {installed} does not meet {requirement.specifier}")
    assert not short, short
