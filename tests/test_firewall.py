"""The firewall step, without a firewall: parsing what the probe prints, planning the rules,
the add/remove scripts (run by a real sh), and the CLI's refusals.

The lab tests (tests/test_lab_firewall.py) prove the same against a real ufw.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from support import cli_json, cli_ok, run_certkit

from certkit.errors import OperationError, UsageError
from certkit.host.firewall import (
    NOT_CHECKED,
    FirewallState,
    check_sources,
    describe,
    open_script,
    parse_probe,
    plan_firewall,
    remove_script,
    rich_rule,
    ufw_allowed,
    with_rules,
)
from certkit.host.hostfiles import HostFiles
from certkit.host.local import run_sh
from certkit.host.options import InstallOptions
from certkit.host.plan import plan_install
from certkit.origins import ServerOrigin
from certkit.paths import system_paths
from certkit.server import installed_options
from certkit.store import CAStore

UFW_ACTIVE = """Status: active

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW       Anywhere
2376/tcp                   ALLOW       10.0.0.1                   # certkit
2376/tcp                   ALLOW       192.168.5.0/24             # someone else
22/tcp (v6)                ALLOW       Anywhere (v6)
"""

NFT_DROP = """table inet filter {
\tchain forward {
\t\ttype filter hook forward priority filter; policy drop;
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t}
}
"""


def probe(tool: str, text: str) -> list[str]:
    return [f"CERTKIT-FW {tool} {line}" for line in text.splitlines()]


# ---------------------------------------------------------------- detection


def test_ufw_active_wins_over_the_nft_tables_it_loads() -> None:
    state = parse_probe(probe("ufw", UFW_ACTIVE) + probe("nft", NFT_DROP))
    assert state.manager == "ufw"


def test_inactive_ufw_and_stopped_firewalld_are_none() -> None:
    lines = [*probe("ufw", "Status: inactive"), "CERTKIT-FW firewalld-state not running"]
    assert parse_probe(lines) == FirewallState("none")
    assert parse_probe([]) == FirewallState("none")


def test_a_probe_not_run_as_root_tells_nothing() -> None:
    # ufw status as a user prints only an error: that is not "no firewall".
    assert parse_probe(["CERTKIT-FW uid 1000"]) is None
    assert parse_probe(["CERTKIT-FW uid 0", *probe("ufw", UFW_ACTIVE)]) is not None


def test_firewalld_running_gives_its_zone_and_rich_rules() -> None:
    rule = 'rule family="ipv4" source address="10.0.0.0/24" port port="2376" protocol="tcp" accept'
    lines = [
        "CERTKIT-FW firewalld-state running",
        "CERTKIT-FW firewalld-zone public",
        f"CERTKIT-FW firewalld {rule}",
    ]
    assert parse_probe(lines) == FirewallState("firewalld", "public", (rule,))


def test_nftables_counts_only_an_input_chain_that_drops() -> None:
    assert parse_probe(probe("nft", NFT_DROP)) == FirewallState(
        "nftables", chain="inet filter input"
    )
    accepting = NFT_DROP.replace(
        "input priority filter; policy drop", "input priority 0; policy accept"
    )
    assert parse_probe(probe("nft", accepting)).manager == "none"


# ---------------------------------------------------------------- planning


def test_sources_are_normalised_and_bad_ones_refused() -> None:
    assert check_sources(["10.0.0.5", "10.0.0.0/24", "10.0.0.5/32"]) == (
        "10.0.0.5/32",
        "10.0.0.0/24",
    )
    assert check_sources(["ANY"]) == ("any",)
    # A whole family stays that family: 0.0.0.0/0 never opens IPv6, ::/0 never IPv4.
    assert check_sources(["0.0.0.0/0", "::/0"]) == ("0.0.0.0/0", "::/0")
    assert rich_rule("::/0", 2376).startswith('rule family="ipv6" source address="::/0"')
    # An IPv6 zone id is refused: its text went into firewalld's rule verbatim, quotes and all
    # ('::%x" address="::/0' was stored as ::/0, and `firewall remove` could not find it).
    for zoned in ['::%x" address="::/0', "fe80::1%eth0", "fe80::/64%eth0"]:
        with pytest.raises(UsageError, match="is not an address or CIDR"):
            check_sources([zoned])
    with pytest.raises(UsageError, match="is not an address or CIDR"):
        check_sources(["docker.example.com"])
    with pytest.raises(UsageError, match="already allows everyone"):
        check_sources(["any", "10.0.0.1"])


def test_ufw_adds_only_the_missing_sources_and_never_touches_other_rules() -> None:
    state = parse_probe(probe("ufw", UFW_ACTIVE))
    plan, warnings = plan_firewall(state, ["10.0.0.1", "10.0.0.2", "192.168.5.0/24"], 2376)
    assert warnings == []
    assert plan is not None and plan.manager == "ufw"
    # Someone else's rule already allows 192.168.5.0/24: certkit neither adds nor owns it.
    assert plan.present == ["10.0.0.1/32", "192.168.5.0/24"]
    assert plan.owned == ["10.0.0.1/32", "10.0.0.2/32"]
    assert plan.drop == []
    assert [" ".join(r.add) for r in plan.rules] == [
        "ufw allow from 10.0.0.2/32 to any port 2376 proto tcp comment certkit"
    ]
    assert plan.rules[0].remove[:3] == ["ufw", "delete", "allow"]


def test_ufw_drops_only_certkits_rules_for_sources_no_longer_asked_for() -> None:
    state = parse_probe(probe("ufw", UFW_ACTIVE))
    plan, _ = plan_firewall(state, ["10.0.0.2"], 2376)
    assert plan is not None
    # 10.0.0.1's rule is certkit's (# certkit) and goes; 192.168.5.0/24's is not and stays.
    assert [" ".join(r.remove) for r in plan.drop] == [
        "ufw delete allow from 10.0.0.1/32 to any port 2376 proto tcp"
    ]
    assert plan.commands() == [
        "ufw allow from 10.0.0.2/32 to any port 2376 proto tcp comment certkit",
        "ufw delete allow from 10.0.0.1/32 to any port 2376 proto tcp",
    ]
    assert plan.to_json()["remove"][0]["source"] == "10.0.0.1/32"
    # Without --allow-from nothing is planned at all: certkit's rule is left alone.
    assert plan_firewall(state, [], 2376)[0] is None


RICH = 'rule family="ipv4" source address="{}" port port="2376" protocol="tcp" accept'


def test_firewalld_drops_only_the_rich_rules_certkit_recorded_adding() -> None:
    rules = tuple(RICH.format(s) for s in ("10.0.0.1/32", "10.0.0.3/32", "10.0.0.4/32"))
    state = FirewallState("firewalld", "internal", rules)
    # certkit added 10.0.0.1 and 10.0.0.9 (gone since); 10.0.0.3 and .4 are the admin's.
    plan, _ = plan_firewall(state, ["10.0.0.2", "10.0.0.3"], 2376, ["10.0.0.1", "10.0.0.9"])
    assert plan is not None
    assert plan.present == ["10.0.0.3/32"]
    assert plan.owned == ["10.0.0.2/32"]
    add, rm = RICH.format("10.0.0.2/32"), RICH.format("10.0.0.1/32")
    assert plan.commands() == [
        f"firewall-cmd --zone=internal '--add-rich-rule={add}'",
        f"firewall-cmd --permanent --zone=internal '--add-rich-rule={add}'",
        f"firewall-cmd --zone=internal '--remove-rich-rule={rm}'",
        f"firewall-cmd --permanent --zone=internal '--remove-rich-rule={rm}'",
    ]
    # A source certkit added and still wants stays owned; nothing to do.
    again, _ = plan_firewall(state, ["10.0.0.1"], 2376, ["10.0.0.1"])
    assert again is not None and again.commands() == [] and again.owned == ["10.0.0.1/32"]


def test_firewalld_rules_go_to_the_zone_at_runtime_and_permanently_never_a_reload() -> None:
    """A reload drops every runtime-only rule (an SSH port opened at runtime, fail2ban's
    bans): certkit adds its rule to both configurations instead."""
    state = FirewallState("firewalld", "internal")
    plan, _ = plan_firewall(state, ["any"], 2376)
    assert plan is not None
    rule = '\'--add-rich-rule=rule port port="2376" protocol="tcp" accept\''
    assert plan.commands() == [
        f"firewall-cmd --zone=internal {rule}",
        f"firewall-cmd --permanent --zone=internal {rule}",
    ]
    assert "--reload" not in open_script(plan) + remove_script(plan.rules)
    v6, _ = plan_firewall(state, ["fd00::/64"], 2376)
    assert v6 is not None and 'family="ipv6" source address="fd00::/64"' in v6.rules[0].add[-1]


def test_without_allow_from_the_warning_names_the_manager_and_the_fix() -> None:
    for state, fix in (
        (FirewallState("ufw"), "`ufw allow from CIDR to any port 2376 proto tcp`"),
        (FirewallState("firewalld", "public"), "firewall-cmd --permanent --zone=public"),
        (
            FirewallState("nftables", chain="inet filter input"),
            "`nft insert rule inet filter input tcp dport 2376 ip saddr CIDR accept`",
        ),
    ):
        plan, warnings = plan_firewall(state, [], 2376)
        assert plan is None
        assert len(warnings) == 1
        assert warnings[0].startswith(
            f"port 2376/tcp is blocked by {state.manager} on the host and certkit changed nothing"
        )
        assert fix in warnings[0]


def test_no_firewall_says_the_port_is_open_and_never_enables_one() -> None:
    plan, warnings = plan_firewall(FirewallState("none"), [], 2376)
    assert plan is None
    assert "open to every network" in warnings[0] and "--allow-from" in warnings[0]
    plan, warnings = plan_firewall(FirewallState("none"), ["10.0.0.1"], 2376)
    assert plan is None and "certkit never enables a firewall" in warnings[0]


def test_nftables_rules_and_port_2375_are_refused() -> None:
    nft = FirewallState("nftables", chain="inet filter input")
    with pytest.raises(UsageError, match="certkit does not write nftables rules") as e:
        plan_firewall(nft, ["10.0.0.1", "2001:db8::/64"], 2376)
    # The exact commands, one per source (ip or ip6), to run on the host.
    assert (
        "run `nft insert rule inet filter input tcp dport 2376 ip saddr 10.0.0.1/32 accept` and "
        "`nft insert rule inet filter input tcp dport 2376 ip6 saddr 2001:db8::/64 accept` there"
    ) in e.value.message
    with pytest.raises(UsageError, match="tcp dport 2376 accept`"):
        plan_firewall(nft, ["any"], 2376)
    with pytest.raises(UsageError, match="certkit never opens it"):
        plan_firewall(FirewallState("ufw"), ["10.0.0.1"], 2375)


def test_the_install_plan_carries_the_rules_and_reports_them_in_json(tmp_path: Path) -> None:
    hf = HostFiles(firewall=parse_probe(probe("ufw", UFW_ACTIVE)))
    options = InstallOptions(allow_from=("10.0.0.9/32",))
    plan = plan_install(hf, system_paths(str(tmp_path)), options, b"ca", b"cert", b"key")
    add = "ufw allow from {} to any port 2376 proto tcp comment certkit"
    remove = "ufw delete allow from {} to any port 2376 proto tcp"
    # --allow-from is the whole set: certkit's rule for 10.0.0.1 goes once the install succeeded.
    assert plan.to_json()["firewall"] == {
        "manager": "ufw",
        "port": 2376,
        "add": [
            {"source": s, "add": add.format(s), "remove": remove.format(s)} for s in ["10.0.0.9/32"]
        ],
        "remove": [
            {"source": s, "add": add.format(s), "remove": remove.format(s)} for s in ["10.0.0.1/32"]
        ],
        "present": [],
        "owned": ["10.0.0.9/32"],
        "left": None,
    }
    assert InstallOptions.from_json(options.to_json()) == options


# ---------------------------------------------------------------- the scripts, run by sh


@pytest.fixture
def fake_firewall_cmd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in firewall-cmd logging its arguments, refusing to add 10.0.0.2 and to remove
    10.0.0.3: a real firewalld (tests/test_lab_firewall.py) accepts every well-formed rule
    certkit writes, so a refusal halfway through can only be produced by a stand-in."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    tool = bin_dir / "firewall-cmd"
    refuse = 'case "$*" in *add*10.0.0.2*|*remove*10.0.0.3*) exit 1;; esac'
    tool.write_text(f'#!/bin/sh\necho "$*" >> {log}\n{refuse}\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_a_refused_rule_removes_the_ones_added_before_it(fake_firewall_cmd: Path) -> None:
    plan, _ = plan_firewall(FirewallState("firewalld", "public"), ["10.0.0.1", "10.0.0.2"], 2376)
    with pytest.raises(OperationError, match=r"firewalld refused the rule for 10\.0\.0\.2/32"):
        with_rules(plan, run_sh, lambda: True)
    calls = fake_firewall_cmd.read_text().splitlines()
    # 10.0.0.1 at runtime and permanently, 10.0.0.2 refused; 10.0.0.1 removed from both.
    assert [c.split(" --")[-1][:10] for c in calls] == [
        "add-rich-r", "add-rich-r", "add-rich-r", "remove-ric", "remove-ric"
    ]  # fmt: skip
    assert all("10.0.0.1/32" in c for c in calls[3:])
    assert "--permanent" not in calls[3] and "--permanent" in calls[4]


def test_a_rule_that_will_not_go_is_named_with_the_command_to_run(
    fake_firewall_cmd: Path, tmp_path: Path
) -> None:
    state = FirewallState("firewalld", "public", (RICH.format("10.0.0.3/32"),))
    hf = HostFiles(firewall=state)
    options = InstallOptions(allow_from=("10.0.0.1/32",), firewall_added=("10.0.0.3/32",))
    pems = (b"ca", b"cert", b"key")
    install = plan_install(hf, system_paths(str(tmp_path)), options, *pems)
    plan = install.firewall
    assert plan is not None
    # The install went through: it stands, and the rule left behind is named with its command.
    assert with_rules(plan, run_sh, lambda: True) is True
    assert plan.left is not None and "could not all be removed: firewall-cmd" in plan.left
    assert "--remove-rich-rule=" in plan.left and "10.0.0.3/32" in plan.left
    assert describe(plan, False)[-1] == f"Firewall (firewalld): {plan.left}"
    calls = fake_firewall_cmd.read_text().splitlines()
    assert ["add-rich-rule" in c for c in calls[:2]] == [True, True]
    assert ["remove-rich-rule" in c for c in calls[2:]] == [True, True]
    assert not any("--reload" in c for c in calls)
    # The record keeps the source whose rule stayed, so the next run tries again ...
    recorded = installed_options(options, install)
    assert recorded.firewall_added == ("10.0.0.1/32", "10.0.0.3/32")
    # ... and, once firewall-cmd removes it, forgets it.
    tool = Path(shutil.which("firewall-cmd") or "")
    tool.write_text(f'#!/bin/sh\necho "$*" >> {fake_firewall_cmd}\n')
    state = FirewallState("firewalld", "public", (RICH.format("10.0.0.1/32"), *state.rules))
    again = plan_install(HostFiles(firewall=state), system_paths(str(tmp_path)), recorded, *pems)
    assert again.firewall is not None and [r.source for r in again.firewall.drop] == ["10.0.0.3/32"]
    assert with_rules(again.firewall, run_sh, lambda: True) is True
    assert again.firewall.left is None
    assert installed_options(recorded, again).firewall_added == ("10.0.0.1/32",)
    last = fake_firewall_cmd.read_text().splitlines()[-2:]
    assert all("--remove-rich-rule=" in c and "10.0.0.3/32" in c for c in last)


# ---------------------------------------------------------------- the CLI


def test_cli_refuses_allow_from_without_install_and_bad_sources(tmp_path: Path) -> None:
    cli_ok("init-ca")
    r = run_certkit("issue-server", "docker1", "--allow-from", "10.0.0.1")
    assert r.returncode == 2
    assert r.stderr.strip().endswith(
        "--allow-from only applies with --install or --ssh: add --install."
    )
    root = str(tmp_path / "root")
    r = run_certkit("issue-server", "docker1", "--install", "--root", root, "--allow-from", "nope")
    assert r.returncode == 2 and "is not an address or CIDR" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "root").exists()


def test_a_sandbox_install_records_allow_from_but_adds_no_rule(tmp_path: Path) -> None:
    cli_ok("init-ca")
    root = str(tmp_path / "root")
    r = run_certkit(
        "issue-server", "docker1", "--install", "--root", root, "--allow-from", "10.0.0.1"
    )
    assert r.returncode == 0, r.stderr
    assert NOT_CHECKED in r.stderr
    records = CAStore().inventory().find("server", "docker1")
    origins = [r.leaf_origin for r in records]
    assert [o.install.allow_from for o in origins if isinstance(o, ServerOrigin) and o.install] == [
        ("10.0.0.1/32",)
    ]


def test_the_fleet_reads_certkit_allow_from_per_host() -> None:
    from certkit.fleet.action import spec_from

    hostvars = {"inventory_hostname": "docker1"}
    spec = spec_from({"allow_from": ["10.0.0.1", "10.1.0.0/16"]}, hostvars)
    assert spec.options.allow_from == ("10.0.0.1/32", "10.1.0.0/16")
    assert spec_from({"allow_from": []}, hostvars).options.allow_from == ()
    with pytest.raises(UsageError, match="is not an address or CIDR"):
        spec_from({"allow_from": "10.0.0.300"}, hostvars)


def recorded_options(name: str = "docker1") -> InstallOptions | None:
    record = CAStore().inventory().newest_active("server", name)[("server", name)]
    origin = record.leaf_origin
    assert isinstance(origin, ServerOrigin)
    return origin.install


def test_renew_keeps_the_recorded_sources_and_a_new_allow_from_replaces_them(
    tmp_path: Path,
) -> None:
    cli_ok("init-ca")
    root = str(tmp_path / "root")
    cli_ok("issue-server", "docker1", "--install", "--root", root, "--allow-from", "10.0.0.1")
    cli_ok("renew", "server", "docker1")
    assert (opts := recorded_options()) is not None and opts.allow_from == ("10.0.0.1/32",)
    dry = cli_json("renew", "server", "docker1", "--allow-from", "10.0.0.2", "--dry-run")
    assert NOT_CHECKED in dry["notes"]
    assert (opts := recorded_options()) is not None and opts.allow_from == ("10.0.0.1/32",)
    cli_ok("renew", "server", "docker1", "--allow-from", "10.0.0.2", "--allow-from", "10.1.0.0/16")
    assert (opts := recorded_options()) is not None
    assert opts.allow_from == ("10.0.0.2/32", "10.1.0.0/16")
    r = run_certkit("renew", "server", "docker1", "--no-install", "--allow-from", "10.0.0.3")
    assert r.returncode == 2 and "--allow-from only applies when the server is" in r.stderr
    r = run_certkit("renew", "server", "docker1", "--allow-from", "10.0.0.300")
    assert r.returncode == 2 and "is not an address or CIDR" in r.stderr


def test_firewall_show_and_remove_on_a_sandbox_and_unknown_names(tmp_path: Path) -> None:
    cli_ok("init-ca")
    root = str(tmp_path / "root")
    cli_ok("issue-server", "docker1", "--install", "--root", root, "--allow-from", "10.0.0.1")
    shown = cli_json("firewall", "show", "docker1")
    assert (shown["manager"], shown["rules"], shown["recorded"]) == (None, [], ["10.0.0.1/32"])
    assert "was not checked" in cli_ok("firewall", "show", "docker1")
    cli_ok("firewall", "remove", "docker1", "--dry-run")
    assert (opts := recorded_options()) is not None and opts.allow_from == ("10.0.0.1/32",)
    removed = cli_json("firewall", "remove", "docker1")
    assert removed["removed"] is False and removed["rules"] == []
    assert (opts := recorded_options()) is not None and opts.allow_from == ()
    r = run_certkit("firewall", "show", "nope", "--json")
    assert r.returncode == 2 and "has no server certificate named 'nope'" in r.stdout
    cli_ok("issue-server", "handed-out")
    r = run_certkit("firewall", "show", "handed-out")
    assert r.returncode == 2 and "was not installed by certkit" in r.stderr


def test_one_ufw_parser_serves_the_install_and_doctor() -> None:
    from certkit.host.exposure import ufw_sources
    from certkit.host.firewall import UfwRule, parse_ufw, ufw_allowed

    # ufw 0.36's own layout ("%-26s %-12s%-26s%s%s"), verbose: ALLOW IN, and a log attribute.
    verbose = [
        "Default: deny (incoming), allow (outgoing), disabled (routed)",
        f"{'2376/tcp':<26} {'ALLOW IN':<12}{'10.0.0.1':<26} # certkit",
        f"{'2000:2400/tcp on eth0':<26} {'LIMIT IN':<12}{'192.0.2.0/24':<26} (log)",
        f"{'2376/tcp (v6)':<26} {'DENY IN':<12}{'Anywhere (v6)':<26}",
    ]
    allows, rules = parse_ufw(verbose)
    assert allows is False
    assert rules == [
        UfwRule("2376/tcp", "ALLOW IN", "10.0.0.1", False, "certkit"),
        UfwRule("2000:2400/tcp on eth0", "LIMIT IN", "192.0.2.0/24 (log)", False, None),
        UfwRule("2376/tcp", "DENY IN", "Anywhere", True, None),
    ]
    assert [r.covers(2376) for r in rules] == [True, True, True]
    # The install counts certkit's plain ALLOW rule for exactly 2376/tcp; doctor every
    # ALLOW or LIMIT whose ports cover 2376 (a DENY lets nobody in).
    assert ufw_allowed(FirewallState("ufw", rules=tuple(verbose)), 2376) == {"10.0.0.1/32": True}
    assert ufw_sources(verbose, 2376) == ["10.0.0.1/32", "192.0.2.0/24"]


def test_firewall_on_this_machine_without_root_says_so_for_the_firewall_command(
    tmp_path: Path, certkit_home: Path
) -> None:
    import dataclasses
    import shutil
    import subprocess
    import sys
    import tempfile

    from certkit.host.options import HostRef

    cli_ok("init-ca")
    root = str(tmp_path / "root")
    cli_ok("issue-server", "docker1", "--install", "--root", root, "--allow-from", "10.0.0.1")
    # The record of an install on this machine itself (not a sandbox): written here as root,
    # then read by an unprivileged user (nobody), which is what a user without sudo is.
    with CAStore().transaction() as inv:
        (rec,) = [r for r in inv.find("server", "docker1")]
        rec.origin = dataclasses.replace(rec.leaf_origin, target=HostRef())
    home = Path(tempfile.mkdtemp(prefix="certkit-fw-"))
    try:
        shutil.copytree(certkit_home, home / "h")
        os.chmod(home, 0o755)
        for p in [home / "h", *(home / "h").rglob("*")]:
            os.chown(p, 65534, 65534)
        for command in ("show", "remove"):
            r = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 sys.executable, "-m", "certkit", "firewall", command, "docker1"],
                env={**os.environ, "CERTKIT_HOME": str(home / "h"), "HOME": str(home)},
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert r.returncode == 2, r.stdout + r.stderr
            verb = "changing" if command == "remove" else "reading"
            assert r.stderr.strip().splitlines() == [
                f"certkit: error: {verb} this machine's firewall needs root: run certkit "
                f"firewall {command} as root (with sudo)."
            ], r.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_ufw_anywhere_keeps_its_family() -> None:
    """``Anywhere`` on an IPv4 line is 0.0.0.0/0, on a (v6) line ::/0; both are ``any``:
    --allow-from 0.0.0.0/0 must neither count as nor open IPv6."""
    v4 = "2376/tcp                   ALLOW       Anywhere"
    v6 = "2376/tcp (v6)              ALLOW       Anywhere (v6)"
    only_v4 = FirewallState("ufw", rules=("Status: active", v4))
    assert ufw_allowed(only_v4, 2376) == {"0.0.0.0/0": False}
    plan, _ = plan_firewall(only_v4, ["::/0"], 2376)
    assert plan is not None and [" ".join(r.add) for r in plan.rules] == [
        "ufw allow from ::/0 to any port 2376 proto tcp comment certkit"
    ]
    both = FirewallState("ufw", rules=("Status: active", v4, v6))
    assert ufw_allowed(both, 2376) == {"any": False}
    plan, _ = plan_firewall(both, ["any"], 2376)
    assert plan is not None and plan.rules == [] and plan.present == ["any"]
