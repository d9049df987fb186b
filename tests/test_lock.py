"""constraints.txt (made by scripts/lock.py) pins everything pyproject.toml and the README's install block name."""

from __future__ import annotations

import importlib.util

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib")


@pytest.fixture(scope="module")
def lock():
    spec = importlib.util.spec_from_file_location("lock", REPO / "scripts" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constraints_pin_every_direct_requirement(lock):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = [x for x in (REPO / "constraints.txt").read_text().splitlines() if x and not x.startswith("#")]
    pinned = {canonicalize_name(name): version for name, version in (x.split("==") for x in lines)}
    assert canonicalize_name(project["name"]) not in pinned
    direct = [Requirement(x) for x in project["dependencies"]]
    direct += [Requirement(x) for extra in project["optional-dependencies"].values() for x in extra]
    direct += [req for req, _ in lock.roots(lock.install_block(REPO / "README.md"), project["name"])]
    unpinned = [str(req) for req in direct if lock.applies(req) and req.name != project["name"]
                and not req.specifier.contains(pinned.get(canonicalize_name(req.name), "0.0.0.dev0"), prereleases=True)]
    assert not unpinned, f"not pinned (or pinned outside the range) in constraints.txt: {unpinned}; " \
                         "run `python scripts/lock.py` where the suite passes"


def test_install_block_roots(lock):
    block = ('pip install -c constraints.txt torch==2.14.1 torchvision==0.29.1 && pip install -c constraints.txt '
             '-e ".[dev]"  # comment\n'
             "python -m pip install -U --index-url URL mcp 'av>=14' ; pip install --no-deps ultralytics\n"
             "echo pip install nothing")
    got = [(str(req), walk) for req, walk in lock.roots(block, "grounded")]
    assert got == [("torch==2.14.1", True), ("torchvision==0.29.1", True), ("grounded[dev]", True),
                   ("mcp", True), ("av>=14", True), ("ultralytics", False)]
