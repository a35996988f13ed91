"""Fixtures shared by every test: an isolated environment and a real dockerd."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Dockerd, cli_ok, dockerd_available, short_tempdir, start_dockerd

from certkit.store import CAStore

# Variables that would make a test talk to, or read from, the developer's setup.
_SCRUB = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "CERTKIT_CA_PASSPHRASE",
    "CERTKIT_BUNDLE",
    "GITHUB_ENV",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


# -------------------------------------------------- running in parallel (pytest-xdist)
#
# scripts/test runs the suite with ``-n N --dist loadgroup``: each test goes to whichever
# worker is free, except the tests of a module that share a module- or class-scoped fixture
# (one dockerd, one lab host with a rootless daemon): those are kept together on one worker
# (an ``xdist_group`` named after the module, added below), so the fixture is set up once
# and its tests still run in their written order.  Every fixture is worker-safe: own temp
# dirs, free ports, lab hosts with their own random names and reserved subnets.
#
# The workers also send the expensive tests first (a longest-first schedule), so that no
# lab boot is left to start when the cheap tests have run out: the expected cost of a test
# is guessed from what it uses (see _COSTS), which needs nothing to be kept between runs.

# Fixtures and markers that make a test expensive, with a rough cost (seconds on an idle
# 2-core machine); anything else counts as 1.
_COSTS = {"rootless": 120.0, "lab": 40.0, "slow": 20.0, "bao": 6.0, "dockerd": 4.0, "sshd": 3.0}


def _shared_scope(item: pytest.Item) -> bool:
    """True when ``item`` uses a module- or class-scoped fixture defined by the tests."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        for fixturedef in defs:
            if fixturedef.scope in ("module", "class", "package") and fixturedef.baseid:
                return True
    return False


def _cost(item: pytest.Item) -> float:
    names = set(getattr(item, "fixturenames", ())) | {m.name for m in item.iter_markers()}
    return max((cost for name, cost in _COSTS.items() if name in names), default=1.0)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist only: group the tests sharing a module fixture, expensive tests first."""
    if not hasattr(config, "workerinput"):
        return  # a plain (serial) run keeps the written order
    groups: dict[str, float] = {}
    for item in items:
        if _shared_scope(item):
            module = item.nodeid.split("::", 1)[0]
            item.add_marker(pytest.mark.xdist_group(module))
            groups[module] = groups.get(module, 0.0) + _cost(item)

    def key(item: pytest.Item) -> float:
        module = item.nodeid.split("::", 1)[0]
        return -groups.get(module, 0.0) if module in groups else -_cost(item)

    # A stable sort: the same order in every worker (xdist checks), a group's tests in order.
    items.sort(key=key)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Every test gets its own CERTKIT_HOME and DOCKER_CONFIG; nothing leaks in."""
    home = tmp_path / "certkit-home"
    docker_config = tmp_path / "docker-config"
    monkeypatch.setenv("CERTKIT_HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    for var in _SCRUB:
        monkeypatch.delenv(var, raising=False)
    return {"home": home, "docker_config": docker_config}


@pytest.fixture
def certkit_home(isolated_env: dict[str, Path]) -> Path:
    return isolated_env["home"]


@pytest.fixture
def docker_config(isolated_env: dict[str, Path]) -> Path:
    return isolated_env["docker_config"]


def _require(tool: str, env_var: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get(env_var) == "1":
            pytest.fail(f"{tool} is required ({env_var}=1) but not installed")
        pytest.skip(f"{tool} is not installed")


@pytest.fixture
def store(isolated_env: dict[str, Path]) -> CAStore:
    """The default CA, made with the real ``certkit init-ca``."""
    cli_ok("init-ca")
    return CAStore("default")


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A short-path temp dir (unix socket paths must stay short), removed afterwards."""
    base = short_tempdir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def dockerd(sandbox: Path) -> Iterator[Any]:
    """Factory: ``dockerd(config_file=..., args=..., unix_socket=..., tcp=[...])``.

    Starts real dockerd processes (own data-root, exec-root, pidfile) and stops
    every one of them, with their containerd, at teardown.  Skipped when
    dockerd is missing, unless CERTKIT_REQUIRE_DOCKERD=1.
    """
    _require("dockerd", "CERTKIT_REQUIRE_DOCKERD")
    started: list[Dockerd] = []

    def start(**kwargs: Any) -> Dockerd:
        kwargs.setdefault("base", sandbox)
        d = start_dockerd(**kwargs)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def require_dockerd() -> None:
    _require("dockerd", "CERTKIT_REQUIRE_DOCKERD")
    assert dockerd_available()


@pytest.fixture
def require_sshd() -> None:
    _require("sshd", "CERTKIT_REQUIRE_SSHD")
