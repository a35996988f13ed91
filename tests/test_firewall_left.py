"""A firewalld rule certkit could not remove stays in the record, so a later run removes it.

The install runs issue_server's real pipeline into a ``--root`` sandbox; the host's
firewall is a stand-in firewall-cmd keeping its rich rules in a file, because a real
firewalld (tests/test_lab_firewall.py) removes every rule certkit added: a rule that
will not go can only be produced by a stand-in.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from certkit.fleet.converge import record_firewall
from certkit.host.firewall import FirewallState, plan_firewall
from certkit.host.hostfiles import HostFiles
from certkit.host.local import LocalTarget
from certkit.host.options import InstallOptions
from certkit.origins import ServerOrigin
from certkit.paths import system_paths
from certkit.server import issue_server
from certkit.store import CAStore

RICH = 'rule family="ipv4" source address="{}" port port="2376" protocol="tcp" accept'

TOOL = """#!/bin/sh
echo "$*" >> {log}
[ -e {refuse} ] && case "$*" in *remove*10.0.0.3*) exit 1;; esac
for a; do
  case "$a" in
    --add-rich-rule=*) echo "${{a#--add-rich-rule=}}" >> {rules};;
    --remove-rich-rule=*) grep -vxF "${{a#--remove-rich-rule=}}" {rules} > {rules}.n;
                          mv {rules}.n {rules};;
  esac
done
"""


@dataclass
class FirewalldSandbox(LocalTarget):
    """A sandbox whose firewall is firewalld in zone public, its rules read from ``rules``
    (a sandbox is never probed: the stand-in's file is what firewall-cmd --list-rich-rules
    would print)."""

    rules: Path = Path()

    def read_files(self) -> HostFiles:
        hf = super().read_files()
        lines = self.rules.read_text().splitlines() if self.rules.exists() else []
        hf.firewall = FirewallState("firewalld", "public", tuple(lines))
        return hf


def recorded(store: CAStore) -> InstallOptions:
    record = store.inventory().newest_active("server", "fw.example.com")["server", "fw.example.com"]
    origin = record.leaf_origin
    assert isinstance(origin, ServerOrigin) and origin.install is not None
    return origin.install


def test_a_rule_that_would_not_go_stays_recorded_and_goes_next_time(
    store: CAStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, log, rules, refuse = (tmp_path / n for n in ("bin", "calls", "rules", "refuse"))
    bin_dir.mkdir()
    tool = bin_dir / "firewall-cmd"
    tool.write_text(TOOL.format(log=log, rules=rules, refuse=refuse))
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    target = FirewalldSandbox(system_paths(str(tmp_path / "root")), rules=rules)

    def run(*sources: str) -> InstallOptions:
        options = InstallOptions(allow_from=sources)
        result = issue_server(store, "fw.example.com", target, options=options)
        assert result.install is not None and result.install.plan.firewall is not None
        left = result.install.plan.firewall.left
        assert (left is not None) == refuse.exists()
        if left:  # the output names the command to run by hand
            assert "--remove-rich-rule=" in left and "10.0.0.3/32" in left
        return recorded(store)

    assert run("10.0.0.1/32", "10.0.0.3/32").firewall_added == ("10.0.0.1/32", "10.0.0.3/32")
    refuse.touch()
    # 10.0.0.3 is dropped but its rule stays: the record still names it as certkit's.
    again = run("10.0.0.1/32")
    assert again.allow_from == ("10.0.0.1/32",)
    assert again.firewall_added == ("10.0.0.1/32", "10.0.0.3/32")
    assert any("10.0.0.3/32" in r for r in rules.read_text().splitlines())
    refuse.unlink()
    # The next run removes it and forgets it.
    assert run("10.0.0.1/32").firewall_added == ("10.0.0.1/32",)
    assert [r for r in rules.read_text().splitlines() if "10.0.0.3/32" in r] == []


def test_the_fleet_keeps_a_rule_that_would_not_go_in_the_record_the_same_way(
    store: CAStore, tmp_path: Path
) -> None:
    target = LocalTarget(system_paths(str(tmp_path / "root")))
    serial = issue_server(store, "fw.example.com", target).serial
    state = FirewallState("firewalld", "public", (RICH.format("10.0.0.3/32"),))
    plan, _ = plan_firewall(state, ["10.0.0.1/32"], 2376, ["10.0.0.3/32"])
    assert plan is not None and [r.source for r in plan.drop] == ["10.0.0.3/32"]
    options = InstallOptions(allow_from=("10.0.0.1/32",))
    record_firewall(store, serial, options, plan)
    assert recorded(store).firewall_added == ("10.0.0.1/32",)
    plan.left = "The firewalld rules certkit added could not all be removed: firewall-cmd ..."
    record_firewall(store, serial, options, plan)
    assert recorded(store).firewall_added == ("10.0.0.1/32", "10.0.0.3/32")
