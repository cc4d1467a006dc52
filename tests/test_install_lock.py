"""The lock: constraints.txt pins every dependency, within pyproject's bounds, and both the README's
first command and CI install through it from wheels only."""

from __future__ import annotations

from importlib import metadata
import os
from pathlib import Path
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != "fcm-harness"]


def test_every_declared_dependency_is_pinned_within_its_bounds():
    pins = lock()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared in pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]} outside pyproject's {req.specifier}"


def test_model_wheels_are_pinned_in_the_lock_too():
    pins = lock()
    for line in (ROOT / ".ci" / "model-wheels.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            assert pins.get(canonicalize_name(name)) == version, f"{line} differs from constraints.txt"


def test_readme_and_ci_install_from_the_lock_with_wheels_only():
    readme_first = next(line for line in (ROOT / "README.md").read_text().splitlines() if "pip install" in line)
    ci = (ROOT / ".ci" / "run").read_text()
    for text, where in ((readme_first, "README's first command"), (ci, ".ci/run")):
        assert re.search(r"--only-binary[ =]:all:", text), f"{where} may build from source"
        assert "-c constraints.txt" in text, f"{where} does not install from the lock"


def test_this_environment_matches_the_lock_where_it_matters():
    """The packages whose new releases have broken us before are the locked ones (always so in CI;
    a developer's hand-made environment may differ, and is then told so)."""
    pins = lock()
    differ = []
    for name in ("typer", "click", "numpy", "pandas", "compressai", "torch"):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if installed != pins[name]:
            differ.append(f"{name} {installed} (lock: {pins[name]})")
    if differ and not os.environ.get("CI"):
        pytest.skip("this environment was not installed from constraints.txt: " + ", ".join(differ))
    assert not differ, "installed versions differ from constraints.txt: " + ", ".join(differ)


def test_every_package_folder_is_in_the_wheel():
    """A sub-package missing from [tool.setuptools] packages works in an editable install and is
    absent from a wheel (harness.analysis once was)."""
    import tomllib
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    folders = {name: Path(path) for name, path in setuptools["package-dir"].items()}
    missing = []
    for name, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in parts and ".".join((name, *parts)) not in listed:
                missing.append(".".join((name, *parts)))
    assert missing == []
    assert (ROOT / "harness" / "py.typed").is_file()
    assert "py.typed" in setuptools["package-data"]["harness"]
