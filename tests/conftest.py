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
# scripts/test runs the suite with ``-n N --dist loadfile --no-loadscope-reorder``: each test
# module goes whole to one worker, so a module- or class-scoped fixture (one dockerd, one lab
# host with a rootless daemon) is set up once and its tests run in their written order.
# (``--dist loadgroup`` would split modules finer, but with pytest 9 xdist 3.8 ignores the
# ``xdist_group`` marks: it renames ``item._nodeid``, which pytest 9 no longer reads.)
# Every fixture is worker-safe: own temp dirs, free ports, lab hosts with their own random
# names and reserved subnets.
#
# Workers take modules in collection order, so under xdist the most expensive modules are
# collected first (a longest-first schedule): no lab-heavy module is left to start when the
# cheap ones have run out.  A test's cost is guessed from what it uses (_COSTS), which needs
# nothing kept between runs.

# Fixtures and markers that make a test expensive, with a rough cost (seconds on an idle
# 2-core machine); anything else counts as 1.
_COSTS = {"rootless": 120.0, "lab": 40.0, "slow": 20.0, "bao": 6.0, "dockerd": 4.0, "sshd": 3.0}


def _cost(item: pytest.Item) -> float:
    names = set(getattr(item, "fixturenames", ())) | {m.name for m in item.iter_markers()}
    return max((cost for name, cost in _COSTS.items() if name in names), default=1.0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist only: the modules in falling order of expected cost, each kept whole."""
    if not hasattr(config, "workerinput"):
        return  # a plain (serial) run keeps the written order
    modules: dict[str, float] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        modules[module] = modules.get(module, 0.0) + _cost(item)
    # A stable sort: the same order in every worker (xdist checks it), a module's tests in order.
    items.sort(key=lambda item: -modules[item.nodeid.split("::", 1)[0]])


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
