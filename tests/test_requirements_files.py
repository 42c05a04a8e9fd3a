"""requirements/*.txt: every package pinned with its hashes, within pyproject.toml's ranges.

CI and `make venv` install requirements/dev.txt with ``--require-hashes`` (then citygate
itself with ``--no-deps``); a Raspberry Pi installs requirements/gateway.txt the same way.
`make requirements` regenerates them (pip-tools). These checks catch a pyproject.toml edit
without that step, and files that drifted apart.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)")


def pins(name: str) -> dict[str, tuple[str, int]]:
    """package -> (version, number of hashes) of one requirements file."""
    out: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in (REQUIREMENTS / f"{name}.txt").read_text().splitlines():
        if m := PIN.match(line):
            current = canonicalize_name(m[1])
            out[current] = (m[2], 0)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            version, n = out[current]
            out[current] = (version, n + 1)
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"{name}.txt: unexpected line {line!r}")
    return out


def direct(extra: str) -> list[Requirement]:
    """pyproject.toml's requirements of an extra, with the core ones and the extras it names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    seen: set[str] = set()
    reqs = [Requirement(r) for r in project["dependencies"]]

    def add(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for text in project["optional-dependencies"][name]:
            r = Requirement(text)
            if canonicalize_name(r.name) == "citygate":
                for e in r.extras:
                    add(e)
            else:
                reqs.append(r)

    add(extra)
    return reqs


@pytest.mark.parametrize("extra", ["gateway", "cloud", "dev"])
def test_every_requirement_is_pinned_hashed_and_in_range(extra: str) -> None:
    pinned = pins(extra)
    assert "citygate" not in pinned  # installed from the checkout with --no-deps
    unhashed = [p for p, (_, n) in pinned.items() if n == 0]
    assert not unhashed, f"{extra}.txt: no hashes for {unhashed}"
    for r in direct(extra):
        name = canonicalize_name(r.name)
        assert name in pinned, f"{extra}.txt lacks {r}: run `make requirements`"
        version = pinned[name][0]
        assert r.specifier.contains(version, prereleases=True), (
            f"{extra}.txt pins {name}=={version}, outside pyproject.toml's {r}: run `make requirements`"
        )
    text = (REQUIREMENTS / f"{extra}.txt").read_text()
    assert "file:" not in text and "\n-e " not in text


def test_the_files_agree_on_every_version() -> None:
    dev = pins("dev")
    for extra in ("gateway", "cloud"):
        for name, (version, _) in pins(extra).items():
            assert dev[name][0] == version, f"{name}: {extra}.txt {version}, dev.txt {dev[name][0]}"


def test_the_build_backend_is_pinned_for_the_editable_install() -> None:
    # make venv installs citygate with --no-build-isolation: hatchling comes from dev.txt.
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    dev = pins("dev")
    for text in build:
        r = Requirement(text)
        assert r.specifier.contains(dev[canonicalize_name(r.name)][0])
