"""What ``scripts/bench`` times, grouped: the cases of a group run round-robin.

A round runs every case of its group once, in turn, so a case and its
yardstick (``certkit status`` and ``python -c "import typer"``, ``certkit
setup`` and the openssl recipe, ``issue-client --count 100`` and the cfssl
loop) see the same machine: a ratio taken round by round stays meaningful
when the machine's speed drifts.  A case with fewer ``runs`` than its group's
rounds takes part in the first rounds only.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import tools as t


@dataclass
class Case:
    """One command to time.  In ``argv`` and ``env``, ``{run}`` is the run's directory."""

    key: str  # stable id, e.g. "clients-100/cfssl": ratios and tables refer to it
    group: str
    tool: str
    argv: list[str]
    count: int | None = None
    seed: str | None = None  # a fresh copy of this seed is the run's directory
    env: dict[str, str] = field(default_factory=dict)
    runs: int | None = None  # at most this many (default: the group's rounds)
    note: str = ""
    script: str | None = None  # bash; written to a file, argv runs it
    stream: bool = False  # also time the second line of stdout (a streamed list's first item)


@dataclass
class Group:
    name: str
    rounds: int
    cases: list[Case]
    writer: bool = False  # run benchlib/writer.py (a concurrent disk writer) for all its rounds


@dataclass
class Plan:
    """Where the seeds are, and what the cases need from them."""

    work: Path
    tools: t.Tools
    small: int  # client counts: 100 and 1000 in a full run
    big: int
    quick: bool

    @property
    def certkit(self) -> str:
        return str(self.tools["certkit"])

    @property
    def seeds(self) -> Path:
        return self.work / "seeds"

    def runs(self, full: int, quick: int = 1) -> int:
        return quick if self.quick else full


def script_case(
    key: str,
    group: str,
    tool: str,
    script: str,
    *,
    seed: str,
    count: int | None = None,
    runs: int | None = None,
    note: str = "",
) -> Case:
    """A bash recipe run in a fresh copy of ``seed``, ``$1`` = the count."""
    return Case(key, group, tool, [], count, seed, runs=runs, note=note, script=script)


def startup_group(p: Plan) -> Group:
    """`--help`, `--version`, `status`, `issue-server --out` against `import typer`."""
    home = str(p.seeds / "startup" / "home")
    env = {"CERTKIT_HOME": home}
    ck, py = p.certkit, sys.executable
    out = str(p.seeds / "startup" / "server")
    cases = [
        Case("startup/typer", "startup", 'python -c "import typer"', [py, "-c", "import typer"]),
        Case("startup/pass", "startup", "python -c pass", [py, "-c", "pass"]),
        Case("startup/help", "startup", "certkit --help", [ck, "--help"]),
        Case("startup/version", "startup", "certkit --version", [ck, "--version"]),
        Case("startup/status", "startup", "certkit status", [ck, "status"], env=env),
        Case(
            "startup/issue-server",
            "startup",
            "certkit issue-server HOST --out DIR",
            [ck, "issue-server", "localhost", "--out", out, "--force"],
            env=env,
            note="one server certificate, 3 files",
        ),
    ]
    return Group("startup", p.runs(30, 3), cases)


def make_startup_seed(p: Plan) -> None:
    """A store with a CA (key not encrypted), a server and a client certificate."""
    d = p.seeds / "startup"
    d.mkdir(parents=True)
    ck = shlex.quote(p.certkit)
    t.sh(
        f'export CERTKIT_HOME="$PWD/home"\n{ck} init-ca >/dev/null\n'
        f"{ck} issue-server localhost --out server >/dev/null\n"
        f"{ck} issue-client c1 --out client >/dev/null\n",
        d,
    )


def setup_group(p: Plan) -> Group:
    """`certkit setup` (one process) against Docker's openssl recipe with EC keys."""
    argv = [
        p.certkit,
        "setup",
        "localhost",
        "--install",
        "--root",
        "{run}/root",
        "--method",
        "daemon-json",
        "--context",
        "ck",
    ]
    env = {"CERTKIT_HOME": "{run}/home", "DOCKER_CONFIG": "{run}/docker"}
    cases = [
        Case(
            "setup/certkit",
            "setup",
            "certkit setup",
            argv,
            seed="empty",
            env=env,
            note="CA + server installed into a --root sandbox + context, EC P-256",
        ),
    ]
    if p.tools["openssl"]:
        cases.append(
            script_case(
                "setup/openssl-ec",
                "setup",
                "openssl recipe, EC P-256",
                t.docker_recipe(t.EC_CA, t.EC_KEY),
                seed="empty",
                note="CA + server + client: 3 keys, 9 openssl runs",
            )
        )
    return Group("setup", p.runs(20, 3), cases)


def full_flow_group(p: Plan) -> Group:
    """CA + server + client with every tool (certkit: three commands, CA key encrypted)."""
    ck = shlex.quote(p.certkit)
    three = (
        f'export CERTKIT_HOME="$PWD/home" CERTKIT_CA_PASSPHRASE={t.PASS}\n'
        f"{ck} init-ca --encrypt >/dev/null\n"
        f"{ck} issue-server localhost --san 127.0.0.1 --out server >/dev/null\n"
        f"{ck} issue-client client --out client >/dev/null\n"
    )
    g = "full flow"
    cases = [
        script_case(
            "flow/certkit",
            g,
            "certkit, 3 commands",
            three,
            seed="empty",
            note="init-ca --encrypt, issue-server --out, issue-client",
        )
    ]
    mk, ez = str(p.tools["mkcert"]), str(p.tools["easyrsa"])
    peers = (  # tool, key, label, the recipe (made only when the tool is there), seed, runs, note
        ("openssl", "openssl-rsa", "Docker's recipe (openssl, RSA 4096)",
         lambda: t.docker_recipe(t.RSA_CA, t.RSA), "empty", p.runs(3),
         "as documented, CA key encrypted"),
        ("mkcert", "mkcert", "mkcert", lambda: t.mkcert_flow(mk), "empty", None,
         "RSA-3072 CA, EC leaves"),
        ("cfssl", "cfssl", "cfssl", lambda: t.CFSSL_FLOW, "cfssl-config", None, "EC P-256"),
        ("easyrsa", "easyrsa", "easy-rsa", lambda: t.easyrsa_flow(ez), "empty", None, "EC P-256"),
    )  # fmt: skip
    for tool, key, label, recipe, seed, runs, note in peers:
        if p.tools[tool]:
            cases.append(script_case(f"flow/{key}", g, label, recipe(), seed=seed, runs=runs,
                                     note=note))  # fmt: skip
    return Group(g, p.runs(10, 2), cases)


def clients_group(p: Plan) -> Group:
    """N client certificates: one certkit process against a loop of each peer."""
    ck = shlex.quote(p.certkit)
    g, n, big = "clients", p.small, p.big

    def certkit(count: int, runs: int | None) -> Case:
        script = (
            f'export CERTKIT_HOME="$PWD/home" CERTKIT_CA_PASSPHRASE={t.PASS}\n'
            f"{ck} issue-client --count {count} --prefix c --out clients >/dev/null\n"
        )
        return script_case(
            f"clients-{count}/certkit",
            g,
            "certkit issue-client --count N",
            script,
            count=count,
            seed="certkit-ca",
            runs=runs,
            note="one process, CA key encrypted",
        )

    cases = [certkit(n, None), certkit(big, p.runs(5))]
    mk, ez = str(p.tools["mkcert"]), str(p.tools["easyrsa"])
    peers = (  # tool, key, label, the loop (made only when the tool is there), seed, runs
        ("cfssl", "cfssl", "cfssl loop", lambda: t.CFSSL_CLIENTS, "cfssl-ca", None),
        ("openssl", "openssl-ec", "openssl loop (Docker's recipe, EC)",
         lambda: t.docker_recipe_clients(t.EC_KEY), "openssl-ec-ca", p.runs(3)),
        ("mkcert", "mkcert", "mkcert loop", lambda: t.mkcert_clients(mk), "mkcert-ca", p.runs(3)),
        ("easyrsa", "easyrsa", "easy-rsa loop", lambda: t.easyrsa_clients(ez), "easyrsa-ca", 1),
    )  # fmt: skip
    for tool, key, label, loop, seed, runs in peers:
        if p.tools[tool]:
            cases.append(script_case(f"clients-{n}/{key}", g, label, loop(), count=n, seed=seed,
                                     runs=runs))  # fmt: skip
    return Group(g, p.runs(10, 2), cases + floor_cases(p), writer=True)


FLOOR = str(Path(__file__).with_name("floor.py"))


def floor_cases(p: Plan) -> list[Case]:
    """The floor of issuance (benchlib/floor.py): Python with the imports it needs, then
    the crypto alone, then the crypto and the files, for each count."""
    py, g = sys.executable, "clients"
    out = [
        Case("floor/imports", g, "floor: Python + imports", [py, FLOOR, "imports", "0"],
             note="typer, cryptography x509+EC, sqlite3, json"),
    ]  # fmt: skip
    for count, runs in ((p.small, None), (p.big, p.runs(5))):
        for mode, label, note in (
            ("crypto", "floor: crypto", "imports + CA key decrypted + N keys, signed, PEM"),
            ("files", "floor: crypto + files", "+ the 5 files a client gets, 2 syncfs"),
        ):
            argv = [py, FLOOR, mode, str(count)]
            out.append(Case(f"floor/{mode}-{count}", g, label, argv, count, "certkit-ca",
                            runs=runs, note=note))  # fmt: skip
    return out


def inventory_group(p: Plan, records: int) -> Group:
    """One issuance, `status` and `list --json` in a one-record store and in a big one.

    No fresh copy per run (a 100,000-record store is 200,000 directories): status
    and list change nothing, and each issuance adds one record to thousands.
    `list --json` is a stream case: when its first record came, and its peak memory.
    """
    cases = []
    for size in (1, records):
        seed = p.seeds / f"inventory-{size}"
        t.make_inventory_seed(seed, p.certkit, size)
        env = {"CERTKIT_HOME": str(seed / "home")}
        one = ["issue-client", "one", "--out", str(seed / "one"), "--force"]
        for name, args in (
            ("issue-client", one),
            ("status", ["status"]),
            ("list --kind client --json", ["list", "--kind", "client", "--json"]),
        ):
            cases.append(
                Case(
                    f"inventory-{size}/{name.split()[0]}",
                    "inventory",
                    name,
                    [p.certkit, *args],
                    count=size,
                    env=env,
                    stream=name.startswith("list"),
                )
            )
    return Group("inventory", p.runs(10, 2), cases)


GROUPS = ("startup", "setup", "flow", "clients", "inventory")
DEFAULT_GROUPS = GROUPS


def plan_groups(p: Plan, only: set[str], records: int) -> list[Group]:
    """The groups to run (untimed seeds made here), in the order they run."""
    t.make_seeds(p.seeds, p.tools)
    groups: list[Group] = []
    if "startup" in only:
        make_startup_seed(p)
        groups.append(startup_group(p))
    if "setup" in only:
        groups.append(setup_group(p))
    if "flow" in only:
        groups.append(full_flow_group(p))
    if "clients" in only:
        groups.append(clients_group(p))
    if "inventory" in only:
        groups.append(inventory_group(p, records))
    return groups
