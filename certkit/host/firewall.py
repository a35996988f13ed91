"""The firewall step of an install: which manager guards the host, and certkit's rules in it.

Detection (read-only) runs in the same round trip as the read of the host's
files (:data:`PROBE`, appended to the read script over SSH and in the fleet,
run with ``sh`` on this machine): ``ufw status``, ``firewall-cmd --state``
(and the active zone's permanent rich rules) and ``nft list ruleset``.  The
first that holds wins, in this order (ufw and firewalld themselves load nft
tables, so plain nftables is only considered without them):

* **ufw**: ``ufw status`` says ``Status: active``;
* **firewalld**: ``firewall-cmd --state`` says ``running``; its active zone
  is the one the default route's interface is bound to, else the default zone;
* **nftables**: a base chain hooked on ``input`` with ``policy drop``;
* **none**: nothing of the above (a host whose rules come from legacy
  iptables only is reported as none).

Without ``--allow-from`` certkit changes nothing on the firewall: the
install's warnings name the manager that blocks the TLS port and give the
command that opens it (or say that the port is open to every network).

With ``--allow-from CIDR`` (repeatable, ``any`` for everyone; the whole set)
and an active manager, certkit adds one rule per source that no rule allows
yet, before dockerd's files are written; when the write or the restart fails
the rules it just added are removed again.  Once the install succeeded, its
own rules for sources no longer in the set are removed (:attr:`FirewallPlan.drop`).
It never enables a firewall, never touches a rule it did not add, and never
opens port 2375.  What it adds, how it knows its own, and how to undo it by
hand (docs/firewall/*.md):

* ufw: ``ufw allow from CIDR to any port 2376 proto tcp comment certkit``
  (persistent: ufw saves its rules); its own are the ones commented
  ``certkit``.  Undo: ``ufw delete allow from CIDR to any port 2376 proto tcp``
  (``ufw status numbered`` lists them, marked ``# certkit``).
* firewalld: in the active zone, the rich rule ``rule family="ipv4" source
  address="CIDR" port port="2376" protocol="tcp" accept`` (no family or
  source for ``any``), added twice: to the running firewall and to the
  permanent configuration.  Never ``firewall-cmd --reload``: a reload throws
  away every runtime-only rule (an SSH port opened only at runtime, fail2ban's
  bans), so it could cut the very connection the install runs on.  Rich rules
  carry no mark, so the sources certkit added are recorded with the
  certificate (``InstallOptions.firewall_added``) and only those are removed.
  Undo: ``firewall-cmd --zone=ZONE --remove-rich-rule='…'``, then the same
  with ``--permanent``.
* nftables: not written by certkit: an ``accept`` in a table of certkit's own
  cannot override another base chain's ``drop``, and a rule in the host's own
  chain does not survive ``systemctl reload nftables`` unless saved in
  /etc/nftables.conf, which is the administrator's file.  The warning gives
  the ``nft`` command and says to add it to /etc/nftables.conf.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import OperationError, UsageError
from ..names import DOCKER_PLAIN_PORT
from .ssh import sh_quote

NOT_CHECKED = (
    "the firewall was not checked (a --root sandbox, or not root on the host): no rule added"
)
MANAGERS = ("ufw", "firewalld", "nftables", "none")
ANY = "any"
COMMENT = "certkit"
_TAG = "CERTKIT-FW "

# Read-only: prints each tool's answer, every line tagged, for parse_probe.
PROBE = "\n".join(
    [
        'fwtag() { while IFS= read -r l; do printf \'CERTKIT-FW %s %s\\n\' "$1" "$l"; done; }',
        'echo "CERTKIT-FW uid $(id -u)"',
        "if command -v ufw >/dev/null 2>&1; then ufw status 2>/dev/null | fwtag ufw; fi",
        "if command -v firewall-cmd >/dev/null 2>&1; then",
        '  st=$(firewall-cmd --state 2>/dev/null); echo "CERTKIT-FW firewalld-state $st"',
        '  if [ "$st" = running ]; then',
        "    z=$(firewall-cmd --get-default-zone 2>/dev/null)",
        # The active zone: the one the default route's interface is bound to, if any.
        "    i=$(ip -o route show default 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')",
        "    i=${i%%[[:space:]]*}",
        '    if [ -n "$i" ]; then',
        '      iz=$(firewall-cmd --get-zone-of-interface="$i" 2>/dev/null) || iz=',
        '      [ -n "$iz" ] && z=$iz',
        "    fi",
        '    echo "CERTKIT-FW firewalld-zone $z"',
        '    firewall-cmd --permanent --zone="$z" --list-rich-rules 2>/dev/null | fwtag firewalld',
        "  fi",
        "fi",
        "if command -v nft >/dev/null 2>&1; then nft list ruleset 2>/dev/null | fwtag nft; fi",
        "",
    ]
)


@dataclass(frozen=True)
class FirewallState:
    """The host's active firewall manager and what certkit needs to know of its rules.

    ``rules``: ufw's status lines, firewalld's permanent rich rules in ``zone``;
    ``chain``: for nftables, the ``family table chain`` that drops input.
    """

    manager: str = "none"
    zone: str | None = None
    rules: tuple[str, ...] = ()
    chain: str | None = None


def parse_probe(lines: Sequence[str]) -> FirewallState | None:
    """The :class:`FirewallState` in :data:`PROBE`'s output (other lines are ignored);
    None when the probe did not run as root (the tools then cannot tell)."""
    got: dict[str, list[str]] = {}
    for line in lines:
        if line.startswith(_TAG):
            tool, _, rest = line[len(_TAG) :].partition(" ")
            got.setdefault(tool, []).append(rest)
    if [u.strip() for u in got.get("uid", ["0"])] != ["0"]:
        return None
    ufw = got.get("ufw", [])
    if any(ln.strip() == "Status: active" for ln in ufw):
        return FirewallState("ufw", rules=tuple(ln.rstrip() for ln in ufw))
    if [s.strip() for s in got.get("firewalld-state", [])] == ["running"]:
        zone = (got.get("firewalld-zone") or [""])[0].strip() or None
        return FirewallState(
            "firewalld", zone, tuple(r.strip() for r in got.get("firewalld", []) if r.strip())
        )
    chain = _nft_drop_chain(got.get("nft", []))
    if chain is not None:
        return FirewallState("nftables", chain=chain)
    return FirewallState()


def _nft_drop_chain(lines: list[str]) -> str | None:
    """``family table chain`` of the first base chain on input with policy drop."""
    table = chain = None
    for line in lines:
        s = line.strip()
        if m := re.match(r"^table (\S+) (\S+) \{", s):
            table = f"{m.group(1)} {m.group(2)}"
        elif m := re.match(r"^chain (\S+) \{", s):
            chain = m.group(1)
        elif table and chain and re.search(r"\bhook input\b.*\bpolicy drop\b", s):
            return f"{table} {chain}"
    return None


def network_or_any(value: str) -> str | None:
    """The source ``value`` names: ``any`` for everyone of both families, else its network
    (``10.0.0.5`` -> ``10.0.0.5/32``; ``0.0.0.0/0`` stays IPv4 only and ``::/0`` IPv6
    only); None when it names none.  An IPv6 zone id (``fe80::1%eth0``) is no source:
    ``ipaddress`` keeps the text after ``%`` verbatim, quotes included, and a rule built
    from it would say something else than the one certkit records."""
    value = value.strip().lower()
    if value == ANY:
        return ANY
    if "%" in value:
        return None
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return None


def check_sources(sources: Sequence[str]) -> tuple[str, ...]:
    """``--allow-from`` values normalised (``10.0.0.5`` -> ``10.0.0.5/32``; ``any``)."""
    out: list[str] = []
    for raw in sources:
        value = network_or_any(raw)
        if value is None:
            raise UsageError(
                f"--allow-from {raw!r} is not an address or CIDR (e.g. 10.0.0.0/24) nor 'any'."
            )
        if value not in out:
            out.append(value)
    if ANY in out and len(out) > 1:
        raise UsageError("--allow-from any already allows everyone: drop the other sources.")
    return tuple(out)


@dataclass
class FirewallRule:
    """One rule certkit adds: for ``source``, the commands that add and remove it
    (``add``/``remove``: the persistent one; firewalld's ``runtime`` pair changes the
    running firewall as well, since certkit never reloads it)."""

    source: str
    add: list[str]
    remove: list[str]
    runtime: tuple[list[str], list[str]] | None = None  # (add, remove) at runtime

    def adds(self) -> list[list[str]]:
        """The commands adding the rule, in order (runtime first)."""
        return [self.runtime[0], self.add] if self.runtime else [self.add]

    def removes(self) -> list[list[str]]:
        """The commands removing the rule, in order (runtime first)."""
        return [self.runtime[1], self.remove] if self.runtime else [self.remove]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "add": " && ".join(map(_q, self.adds())),
            "remove": " && ".join(map(_q, self.removes())),
        }


@dataclass
class FirewallPlan:
    """The firewall step of an install: the rules to add (only missing ones) and the rules
    certkit added earlier for sources no longer asked for (``drop``, removed once the install
    succeeded)."""

    manager: str
    port: int
    rules: list[FirewallRule] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # sources already allowed
    drop: list[FirewallRule] = field(default_factory=list)
    owned: list[str] = field(default_factory=list)  # sources whose rule certkit added
    left: str | None = None  # set when a rule in ``drop`` would not go (the commands to run)

    def to_json(self) -> dict[str, Any]:
        return {
            "manager": self.manager,
            "port": self.port,
            "add": [r.to_json() for r in self.rules],
            "remove": [r.to_json() for r in self.drop],
            "present": self.present,
            "owned": self.owned,
            "left": self.left,
        }

    def recorded(self) -> tuple[str, ...]:
        """The sources to record as certkit's: those whose rule it added and still wants,
        and, when a dropped rule would not go (``left``), the dropped ones too, so that the
        next run or ``certkit firewall remove`` removes them."""
        kept = [r.source for r in self.drop if r.source not in self.owned] if self.left else []
        return (*self.owned, *kept)

    def commands(self) -> list[str]:
        """The commands that change the firewall, as a shell would run them (for --dry-run)."""
        cmds = [c for r in self.rules for c in r.adds()]
        cmds += [c for r in self.drop for c in r.removes()]
        return [_q(c) for c in cmds]


def _q(cmd: list[str]) -> str:
    return " ".join(map(sh_quote, cmd))


def _ufw_rule(source: str, port: int) -> FirewallRule:
    spec = ["from", source, "to", "any", "port", str(port), "proto", "tcp"]
    return FirewallRule(
        source, ["ufw", "allow", *spec, "comment", COMMENT], ["ufw", "delete", "allow", *spec]
    )


def ports_cover(spec: str, port: int) -> bool:
    """Does a port spec (``2376``, ``2376/tcp``, ``2000:3000/tcp``, ``22,2376/tcp``,
    ``2000-3000``) cover ``port``/tcp?"""
    ports, _, proto = spec.partition("/")
    if proto and proto != "tcp":
        return False
    for part in ports.split(","):
        m = re.fullmatch(r"(\d+)(?:[:-](\d+))?", part.strip())
        if m and int(m.group(1)) <= port <= int(m.group(2) or m.group(1)):
            return True
    return False


@dataclass(frozen=True)
class UfwRule:
    """One rule line of ``ufw status`` (plain: ``ALLOW``; verbose: ``ALLOW IN``)."""

    to: str  # the To column without (v6): ``2376/tcp``, ``22/tcp on eth0``, ``Anywhere``
    action: str  # ``ALLOW``, ``ALLOW IN``, ``LIMIT IN``, ``DENY``, ...
    source: str  # the From column without (v6) and the comment: ``10.0.0.1``, ``Anywhere``
    v6: bool
    comment: str | None  # the text after ``#`` (None: no comment)

    def covers(self, port: int) -> bool:
        """Does the rule's To cover ``port``/tcp (any interface; Anywhere: every port)?"""
        to = re.sub(r" on \S+", "", self.to).split()
        return bool(to) and (to[-1] == "Anywhere" or ports_cover(to[-1], port))


def parse_ufw(lines: Iterable[str]) -> tuple[bool, list[UfwRule]]:
    """``ufw status`` (plain or verbose) read: does the default policy allow incoming
    traffic (verbose only), and its rule lines.  ufw prints a rule as
    ``%-26s %-12s%-26s`` (To, Action, From) then `` (log)`` and `` # COMMENT``: the
    columns are two or more spaces apart, but for a To of 26 characters or more."""
    default_allows, rules = False, []
    for line in lines:
        if line.startswith("Default:") and re.search(r"\b(allow|accept) \(incoming\)", line):
            default_allows = True
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) < 3 or not parts[1].startswith(("ALLOW", "LIMIT", "DENY", "REJECT")):
            continue
        source, hashed, comment = "  ".join(parts[2:]).partition("#")
        v6 = "(v6)" in parts[0] or "(v6)" in source
        to, source = (" ".join(c.replace("(v6)", "").split()) for c in (parts[0], source))
        rules.append(UfwRule(to, parts[1], source, v6, comment.strip() if hashed else None))
    return default_allows, rules


def ufw_allowed(state: FirewallState, port: int) -> dict[str, bool]:
    """Sources ``ufw status`` allows ``port``/tcp from, each True when the rule is certkit's
    (commented ``# certkit``).  ``Anywhere`` is ``0.0.0.0/0`` on an IPv4 line and ``::/0``
    on a ``(v6)`` line; both together are ``any`` (what ``ufw allow from any`` writes)."""
    found: dict[str, bool] = {}
    for rule in parse_ufw(state.rules)[1]:
        if rule.to != f"{port}/tcp" or rule.action not in ("ALLOW", "ALLOW IN"):
            continue
        if rule.source == "Anywhere":
            src: str | None = "::/0" if rule.v6 else "0.0.0.0/0"
        else:
            src = network_or_any(rule.source)
        if src is None:
            continue
        found[src] = found.get(src, False) or rule.comment == COMMENT
    if "0.0.0.0/0" in found and "::/0" in found:
        v4, v6 = found.pop("0.0.0.0/0"), found.pop("::/0")
        found[ANY] = v4 and v6
    return found


def rich_rule(source: str, port: int) -> str:
    """The firewalld rich rule that accepts ``port``/tcp from ``source``."""
    ports = f'port port="{port}" protocol="tcp" accept'
    if source == ANY:
        return f"rule {ports}"
    family = "ipv6" if ":" in source else "ipv4"
    return f'rule family="{family}" source address="{source}" {ports}'


def _firewalld_rule(source: str, port: int, zone: str) -> FirewallRule:
    """The rule at runtime and permanently: never a reload (it drops runtime-only rules)."""
    now = ["firewall-cmd", f"--zone={zone}"]
    base = ["firewall-cmd", "--permanent", f"--zone={zone}"]
    rule = rich_rule(source, port)
    add, remove = f"--add-rich-rule={rule}", f"--remove-rich-rule={rule}"
    return FirewallRule(source, [*base, add], [*base, remove], ([*now, add], [*now, remove]))


def describe(plan: FirewallPlan, dry_run: bool) -> list[str]:
    """What the firewall step changes (or would change), one line each."""
    lines = [
        f"Firewall ({plan.manager}): port {plan.port}/tcp already allowed from {s}"
        for s in plan.present
    ]
    verb = "would run" if dry_run else "ran"
    lines += [f"Firewall ({plan.manager}): {verb} {cmd}" for cmd in plan.commands()]
    return lines + ([f"Firewall ({plan.manager}): {plan.left}"] if plan.left else [])


def nft_command(state: FirewallState, port: int, source: str = "CIDR") -> str:
    """The ``nft`` command that accepts ``port``/tcp from ``source`` (``any``: everyone) in
    the host's input chain that drops."""
    family, table, chain = (state.chain or "inet filter input").split(" ")
    saddr = "" if source == ANY else f"{'ip6' if ':' in source else 'ip'} saddr {source} "
    return f"nft insert rule {family} {table} {chain} tcp dport {port} {saddr}accept"


def _open_command(state: FirewallState, port: int) -> str:
    """The command that would open ``port`` to CIDR with the host's own tool."""
    if state.manager == "ufw":
        return f"ufw allow from CIDR to any port {port} proto tcp"
    if state.manager == "firewalld":
        zone = state.zone or "public"
        add = f"--add-rich-rule='{rich_rule('CIDR', port).replace('ipv6', 'ipv4')}'"
        return f"firewall-cmd --zone={zone} {add} && firewall-cmd --permanent --zone={zone} {add}"
    return nft_command(state, port)


def plan_firewall(
    state: FirewallState | None,
    sources: Sequence[str],
    port: int,
    added: Sequence[str] = (),
) -> tuple[FirewallPlan | None, list[str]]:
    """The rules to add for ``sources`` on a host whose firewall is ``state``, and the
    warnings to show (None: the firewall was not read, e.g. a sandbox root).

    With ``sources``, certkit's rules for other sources are dropped: ufw's are
    the ones commented ``certkit``; firewalld's rich rules carry no mark, so
    only those for ``added`` (the sources certkit recorded adding) count."""
    allow = check_sources(sources)
    if allow and port == DOCKER_PLAIN_PORT:
        raise UsageError(
            f"--allow-from opens port {port}, Docker's plain-HTTP port: certkit never opens it."
        )
    if state is None:
        return None, ([NOT_CHECKED] if allow else [])
    if state.manager == "none":
        what = (
            "so --allow-from added no rule (certkit never enables a firewall)"
            if allow
            else "limit it with a host firewall and --allow-from CIDR"
        )
        return None, [
            f"no host firewall is active (ufw, firewalld, nftables checked): port {port}/tcp is "
            f"open to every network that reaches the host; {what}"
        ]
    if not allow:
        return None, [
            f"port {port}/tcp is blocked by {state.manager} on the host and certkit changed "
            f"nothing there: open it to your clients with `{_open_command(state, port)}` "
            "(or re-run with --allow-from CIDR)"
        ]
    if state.manager == "nftables":
        cmds = " and ".join(f"`{nft_command(state, port, s)}`" for s in allow)
        raise UsageError(
            f"port {port}/tcp is blocked by nftables on the host and certkit does not write "
            f"nftables rules: run {cmds} there, add the same to /etc/nftables.conf, then run "
            "again without --allow-from."
        )
    return _rules_for(state, allow, port, check_sources(added)), []


def certkit_rules(state: FirewallState, port: int, added: Sequence[str] = ()) -> list[FirewallRule]:
    """certkit's rules for ``port`` on the host: ufw's commented ``certkit``, firewalld's rich
    rules (in the active zone) for the ``added`` sources that are still there."""
    if state.manager == "ufw":
        return [_ufw_rule(s, port) for s, mine in ufw_allowed(state, port).items() if mine]
    if state.manager == "firewalld":
        zone = state.zone or "public"
        there = [s for s in added if rich_rule(s, port) in state.rules]
        return [_firewalld_rule(s, port, zone) for s in there]
    return []


def _rules_for(
    state: FirewallState, allow: tuple[str, ...], port: int, added: tuple[str, ...]
) -> FirewallPlan:
    ours = [r.source for r in certkit_rules(state, port, added)]
    drop = [r for r in certkit_rules(state, port, added) if r.source not in allow]
    if state.manager == "ufw":
        there = list(ufw_allowed(state, port))
        rules = [_ufw_rule(s, port) for s in allow if s not in there]
    else:
        zone = state.zone or "public"
        there = [s for s in allow if rich_rule(s, port) in state.rules]
        rules = [_firewalld_rule(s, port, zone) for s in allow if s not in there]
    owned = [s for s in allow if s in ours or s not in there]
    present = [s for s in allow if s in there]
    return FirewallPlan(state.manager, port, rules, present, drop, owned)


def open_script(plan: FirewallPlan) -> str:
    """The script adding ``plan``'s rules; on a failure it removes those it added."""
    steps = [
        (r, add, rm) for r in plan.rules for add, rm in zip(r.adds(), r.removes(), strict=True)
    ]
    undo = [f'  [ "$a{i}" = 1 ] && {_q(rm)} >/dev/null 2>&1' for i, (_, _, rm) in enumerate(steps)]
    s = [f"a{i}=0" for i in range(len(steps))]
    s += ["fwundo() {", *undo, "  return 0", "}"]
    for i, (r, add, _) in enumerate(steps):
        s.append(
            f"{_q(add)} </dev/null >&2 && a{i}=1 || {{ fwundo; "
            f"echo 'CERTKIT-ERROR {plan.manager} refused the rule for {r.source} "
            f"(port {plan.port}/tcp); no firewall rule was left behind.'; exit 3; }}"
        )
    s.append("echo CERTKIT-FW-OPEN")
    return "\n".join(s) + "\n"


def remove_script(rules: Sequence[FirewallRule]) -> str:
    """The script removing ``rules``; prints CERTKIT-FW-CLOSED when all went."""
    s = ["ok=1", *[f"{_q(c)} </dev/null >&2 || ok=0" for r in rules for c in r.removes()]]
    s.append('[ "$ok" = 1 ] && echo CERTKIT-FW-CLOSED')
    return "\n".join(s) + "\n"


def remove_rules(
    manager: str, port: int, rules: Sequence[FirewallRule], run: Callable[[str], list[str]]
) -> None:
    """Remove ``rules`` with ``run``; an error naming the commands left to run by hand."""
    try:
        closed = "CERTKIT-FW-CLOSED" in run(remove_script(rules))
    except OperationError:
        closed = False
    if not closed:
        raise OperationError(
            f"The {manager} rules certkit added for port {port} could not all be removed: "
            f"{'; '.join(_q(c) for r in rules for c in r.removes())}"
        )


def with_rules(
    plan: FirewallPlan | None, run: Callable[[str], list[str]], write: Callable[[], bool]
) -> bool:
    """Add ``plan``'s rules with ``run`` (runs a script on the host, returns its output
    lines), then ``write``; when ``write`` fails, remove the rules again.  Once ``write``
    succeeded, remove the rules certkit no longer needs (``plan.drop``); when one will not
    go, the install still stands and ``plan.left`` says what to run by hand."""
    if plan is None or not (plan.rules or plan.drop):
        return write()
    if plan.rules and "CERTKIT-FW-OPEN" not in run(open_script(plan)):
        raise OperationError(f"Adding the {plan.manager} rules stopped halfway; check the host.")
    try:
        done = write()
    except BaseException as e:
        if plan.rules:
            try:
                remove_rules(plan.manager, plan.port, plan.rules, run)
            except OperationError as left:
                raise OperationError(f"{e} {left}") from None
        raise
    if plan.drop:
        try:
            remove_rules(plan.manager, plan.port, plan.drop, run)
        except OperationError as e:
            plan.left = f"{e.message} Run them on the host."
    return done
