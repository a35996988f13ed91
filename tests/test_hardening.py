"""Hardening (issue 13, and issue 20's output-path class): each class tested as a rule.

Every test here plays the user's or the attacker's move against the real CLI
and checks the rule behind the defect, not only the one repro.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import cli_json, cli_ok, run_certkit


def snapshot(*roots: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and link (its target) under ``roots``: to prove nothing changed."""
    out: dict[str, bytes | str] = {}
    for root in roots:
        if not root.exists() and not root.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath, name)
                if p.is_symlink():
                    out[str(p)] = "-> " + os.readlink(p)
                elif p.is_file():
                    out[str(p)] = p.read_bytes()
                else:
                    out[str(p)] = "dir"
    return out


def refused(r: object, *words: str) -> None:
    """Exit 2, one sentence on stderr, no traceback, and ``words`` in it."""
    assert r.returncode == 2, f"exit {r.returncode}: {r.stdout}{r.stderr}"  # type: ignore[attr-defined]
    err = r.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err, err
    for word in words:
        assert word in err, err


# ---------------------------------------------------------------- 1. a half-present CA


@pytest.mark.parametrize("missing", ["ca-key.pem", "ca.pem"])
def test_half_present_ca_is_never_replaced_without_force(certkit_home: Path, missing: str) -> None:
    cli_ok("init-ca")
    ca_dir = certkit_home / "cas" / "default"
    (ca_dir / missing).rename(certkit_home / "offline.pem")
    before = snapshot(certkit_home)
    r = run_certkit("init-ca")
    refused(r, "--force", missing)
    assert snapshot(certkit_home) == before


@pytest.mark.parametrize("missing", ["ca-key.pem", "ca.pem"])
def test_half_present_ca_names_the_missing_file_when_issuing(
    certkit_home: Path, missing: str
) -> None:
    cli_ok("init-ca")
    (certkit_home / "cas" / "default" / missing).unlink()
    for args in (
        ("issue-server", "docker1", "--out", str(certkit_home.parent / "out")),
        ("client-context", "c1", "--host", "docker1"),
    ):
        r = run_certkit(*args)
        refused(r, missing)
        assert "init-ca" not in r.stderr


def test_init_ca_force_moves_a_half_present_ca_aside(certkit_home: Path) -> None:
    cli_ok("init-ca")
    cli_ok("issue-server", "docker1", "--out", str(certkit_home.parent / "out"))
    ca_dir = certkit_home / "cas" / "default"
    old = (ca_dir / "ca.pem").read_bytes()
    (ca_dir / "ca-key.pem").unlink()
    cli_ok("init-ca", "--force")
    aside = list((certkit_home / "cas").glob("default.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "ca.pem").read_bytes() == old
    assert (ca_dir / "ca.pem").read_bytes() != old
    # The old CA's certificates went aside with it: list no longer calls them valid.
    assert [r for r in cli_json("list") if r["kind"] == "server"] == []
