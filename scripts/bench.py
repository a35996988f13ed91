"""certkit against the tools people use today, side by side, on this machine.

Three groups, each timed with hyperfine when installed (else a small
Python timer: one warm-up run, N runs, median):

* startup:   ``certkit --help`` vs ``python -c pass`` vs ``python -c "import typer"``;
* full flow: CA + server certificate + client certificate, with certkit,
             Docker's documented openssl recipe (RSA 4096, "Protect the Docker
             daemon socket"), the same recipe with ECDSA P-256, mkcert, cfssl
             and easy-rsa;
* clients:   N client certificates (ca.pem + cert + key per client directory):
             ``certkit issue-client --count N`` in one process vs a loop of
             each tool;
* inventory: how certkit scales with its inventory: one client issuance,
             ``status`` and ``list --kind client`` in a store of 20,000 records
             vs a store of one (same run; ``--records`` changes the count).

Every timed run starts from a fresh copy of a seed directory (made by the
untimed ``--prepare`` step, which also runs ``sync`` so nobody pays for the
previous run's dirty pages), and nothing is deleted until the end: deleting
thousands of files between runs slows the next run's file creation on ext4.

Prints a table of medians with each peer's ratio to certkit, and writes the
same as JSON (``bench-results/`` by default).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PASS = "bench-passphrase"  # the recipes encrypt the CA key; certkit --encrypt does too
EASYRSA_CANDIDATES = ("/usr/share/easy-rsa/easyrsa", "easyrsa")


@dataclass
class Row:
    group: str
    tool: str
    count: int | None
    command: str
    median_s: float | None = None
    mean_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    runs: int = 0
    ratio_to_certkit: float | None = None
    cpu_s: float | None = None  # mean user + system CPU seconds per run
    note: str = ""
    times_s: list[float] = field(default_factory=list)


@dataclass
class Case:
    """One thing to time: a bash script run in a fresh copy of ``seed``."""

    group: str
    tool: str
    script: str  # bash, run with cwd = the fresh run directory
    count: int | None = None
    seed: str | None = None  # name of a seed directory under WORK/seeds
    note: str = ""
    argv: list[str] | None = None  # startup cases: run directly, no prepare


# ---------------------------------------------------------------- the tools


def easyrsa() -> str | None:
    for c in EASYRSA_CANDIDATES:
        found = shutil.which(c)
        if found:
            return found
    return None


def tools(certkit: str) -> dict[str, str | None]:
    return {
        "certkit": certkit,
        "openssl": shutil.which("openssl"),
        "mkcert": shutil.which("mkcert"),
        "cfssl": shutil.which("cfssl") if shutil.which("cfssljson") else None,
        "easyrsa": easyrsa(),
    }


def versions(t: dict[str, str | None]) -> dict[str, str]:
    probes = {
        "certkit": [t["certkit"], "--version"],
        "openssl": [t["openssl"], "version"],
        "mkcert": [t["mkcert"], "-version"],
        "cfssl": [t["cfssl"], "version"],
        "easyrsa": [t["easyrsa"], "--version"],
    }
    out: dict[str, str] = {}
    for name, argv in probes.items():
        if argv[0] is None:
            out[name] = "not installed"
            continue
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
        text = (r.stdout or r.stderr).strip().splitlines()
        line = next(
            (x for x in text if x.startswith("Version:")),
            next((x for x in text if "version" in x.lower()), text[0] if text else "?"),
        )
        out[name] = line.strip()
    return out


# Key generation commands; OUT is replaced by the file name.
EC_KEY = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out OUT"


def docker_recipe(keygen_ca: str, keygen: str) -> str:
    """Docker's "Protect the Docker daemon socket" recipe, non-interactive."""
    return textwrap.dedent(f"""\
        HOST=localhost
        {keygen_ca.replace("OUT", "ca-key.pem")}
        openssl req -new -x509 -days 365 -key ca-key.pem -passin pass:{PASS} -sha256 \\
            -subj "/CN=bench CA" -out ca.pem
        {keygen.replace("OUT", "server-key.pem")}
        openssl req -subj "/CN=$HOST" -sha256 -new -key server-key.pem -out server.csr
        echo subjectAltName = DNS:$HOST,IP:127.0.0.1 >> extfile.cnf
        echo extendedKeyUsage = serverAuth >> extfile.cnf
        openssl x509 -req -days 365 -sha256 -in server.csr -CA ca.pem -CAkey ca-key.pem \\
            -passin pass:{PASS} -CAcreateserial -out server-cert.pem -extfile extfile.cnf
        {keygen.replace("OUT", "key.pem")}
        openssl req -subj '/CN=client' -new -key key.pem -out client.csr
        echo extendedKeyUsage = clientAuth > extfile-client.cnf
        openssl x509 -req -days 365 -sha256 -in client.csr -CA ca.pem -CAkey ca-key.pem \\
            -passin pass:{PASS} -CAcreateserial -out cert.pem -extfile extfile-client.cnf
        rm client.csr server.csr extfile.cnf extfile-client.cnf
        chmod 0400 ca-key.pem key.pem server-key.pem
        chmod 0444 ca.pem server-cert.pem cert.pem
        """)


def docker_recipe_clients(keygen: str) -> str:
    """The client part of Docker's recipe, once per client."""
    return textwrap.dedent(f"""\
        echo extendedKeyUsage = clientAuth > extfile-client.cnf
        for i in $(seq 1 "$1"); do
            mkdir c$i && cp ca.pem c$i/ca.pem
            {keygen.replace("OUT", "c$i/key.pem")}
            openssl req -subj "/CN=c$i" -new -key c$i/key.pem -out c$i/client.csr
            openssl x509 -req -days 365 -sha256 -in c$i/client.csr -CA ca.pem \\
                -CAkey ca-key.pem -passin pass:{PASS} -CAcreateserial -out c$i/cert.pem \\
                -extfile extfile-client.cnf
            rm c$i/client.csr
            chmod 0400 c$i/key.pem
        done
        """)


RSA_CA = f"openssl genrsa -aes256 -passout pass:{PASS} -out OUT 4096"
RSA = "openssl genrsa -out OUT 4096"
EC_CA = f"{EC_KEY} -aes256 -pass pass:{PASS}"
CFSSL_CONFIG = {
    "signing": {
        "default": {"expiry": "8760h"},
        "profiles": {
            "server": {
                "usages": ["signing", "digital signature", "server auth"],
                "expiry": "8760h",
            },
            "client": {
                "usages": ["signing", "digital signature", "client auth"],
                "expiry": "8760h",
            },
        },
    }
}
EC256 = {"algo": "ecdsa", "size": 256}
EASYRSA_ENV = (
    'export EASYRSA_PKI="$PWD/pki" EASYRSA_BATCH=1 EASYRSA_ALGO=ec EASYRSA_CURVE=prime256v1\n'
)


def full_flow_cases(t: dict[str, str | None], certkit_server: str) -> list[Case]:
    ck = shlex.quote(str(t["certkit"]))
    cases = [
        Case(
            "full flow",
            "certkit",
            textwrap.dedent(f"""\
                export CERTKIT_HOME="$PWD/home" CERTKIT_CA_PASSPHRASE={PASS}
                {ck} init-ca --encrypt >/dev/null
                {certkit_server} >/dev/null
                {ck} issue-client client --out client >/dev/null
                """),
            note="3 commands, EC P-256, CA key encrypted",
        )
    ]
    if t["openssl"]:
        cases.append(
            Case(
                "full flow",
                "docker recipe (openssl, RSA 4096)",
                docker_recipe(RSA_CA, RSA),
                note="Docker docs, CA key encrypted",
            )
        )
        cases.append(
            Case(
                "full flow",
                "docker recipe (openssl, EC P-256)",
                docker_recipe(EC_CA, EC_KEY),
                note="same recipe, ECDSA keys",
            )
        )
    if t["mkcert"]:
        mk = shlex.quote(str(t["mkcert"]))
        cases.append(
            Case(
                "full flow",
                "mkcert",
                textwrap.dedent(f"""\
                    export CAROOT="$PWD/ca"
                    {mk} -ecdsa -cert-file server-cert.pem -key-file server-key.pem \\
                        localhost 127.0.0.1 2>/dev/null
                    {mk} -ecdsa -client -cert-file cert.pem -key-file key.pem client 2>/dev/null
                    """),
                note="RSA-3072 CA (fixed by mkcert), EC leaves, CA key not encrypted",
            )
        )
    if t["cfssl"]:
        cases.append(
            Case(
                "full flow",
                "cfssl",
                textwrap.dedent("""\
                    cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca
                    cfssl gencert -ca ca.pem -ca-key ca-key.pem -config cfg.json \\
                        -profile server server-csr.json 2>/dev/null | cfssljson -bare server
                    cfssl gencert -ca ca.pem -ca-key ca-key.pem -config cfg.json \\
                        -profile client client-csr.json 2>/dev/null | cfssljson -bare client
                    """),
                seed="cfssl-config",
                note="EC P-256, CA key not encrypted",
            )
        )
    if t["easyrsa"]:
        ez = shlex.quote(str(t["easyrsa"]))
        cases.append(
            Case(
                "full flow",
                "easy-rsa",
                EASYRSA_ENV
                + textwrap.dedent(f"""\
                    {ez} init-pki >/dev/null 2>&1
                    {ez} --req-cn="bench CA" build-ca nopass >/dev/null 2>&1
                    {ez} --subject-alt-name="DNS:localhost,IP:127.0.0.1" \\
                        build-server-full localhost nopass >/dev/null 2>&1
                    {ez} build-client-full client nopass >/dev/null 2>&1
                    test -s pki/issued/client.crt
                    """),
                note="EC P-256, CA key not encrypted",
            )
        )
    return cases


def client_cases(t: dict[str, str | None], count: int) -> list[Case]:
    ck = shlex.quote(str(t["certkit"]))
    cases = [
        Case(
            "clients",
            "certkit",
            f'export CERTKIT_HOME="$PWD/home" CERTKIT_CA_PASSPHRASE={PASS}\n'
            f"{ck} issue-client --count {count} --prefix c --out clients >/dev/null\n",
            count,
            seed="certkit-ca",
            note="one process, EC P-256",
        )
    ]
    if t["openssl"]:
        cases.append(
            Case(
                "clients",
                "docker recipe (openssl, RSA 4096)",
                docker_recipe_clients(RSA),
                count,
                seed="openssl-rsa-ca",
                note="loop, 3 openssl runs per client",
            )
        )
        cases.append(
            Case(
                "clients",
                "docker recipe (openssl, EC P-256)",
                docker_recipe_clients(EC_KEY),
                count,
                seed="openssl-ec-ca",
                note="loop, 3 openssl runs per client",
            )
        )
    if t["mkcert"]:
        mk = shlex.quote(str(t["mkcert"]))
        cases.append(
            Case(
                "clients",
                "mkcert",
                textwrap.dedent(f"""\
                    export CAROOT="$PWD/ca"
                    for i in $(seq 1 "$1"); do
                        mkdir c$i && cp ca/rootCA.pem c$i/ca.pem
                        {mk} -ecdsa -client -cert-file c$i/cert.pem -key-file c$i/key.pem \\
                            c$i 2>/dev/null
                    done
                    """),
                count,
                seed="mkcert-ca",
                note="loop",
            )
        )
    if t["cfssl"]:
        cases.append(
            Case(
                "clients",
                "cfssl",
                textwrap.dedent("""\
                    for i in $(seq 1 "$1"); do
                        mkdir c$i && cp ca.pem c$i/ca.pem
                        cfssl gencert -ca ca.pem -ca-key ca-key.pem -config cfg.json \\
                            -profile client -cn c$i client-csr.json 2>/dev/null \\
                            | cfssljson -bare c$i/cert
                    done
                    """),
                count,
                seed="cfssl-ca",
                note="loop",
            )
        )
    if t["easyrsa"]:
        ez = shlex.quote(str(t["easyrsa"]))
        cases.append(
            Case(
                "clients",
                "easy-rsa",
                EASYRSA_ENV
                + textwrap.dedent(f"""\
                    for i in $(seq 1 "$1"); do
                        {ez} build-client-full c$i nopass >/dev/null 2>&1
                        mkdir c$i
                        cp pki/ca.crt c$i/ca.pem
                        cp pki/issued/c$i.crt c$i/cert.pem
                        cp pki/private/c$i.key c$i/key.pem
                    done
                    """),
                count,
                seed="easyrsa-ca",
                note="loop",
            )
        )
    return cases


def startup_cases(certkit: str) -> list[Case]:
    py = sys.executable
    return [
        Case("startup", "certkit --help", "", argv=[certkit, "--help"]),
        Case("startup", "python -c pass", "", argv=[py, "-c", "pass"]),
        Case("startup", 'python -c "import typer"', "", argv=[py, "-c", "import typer"]),
        Case("startup", "certkit --version", "", argv=[certkit, "--version"]),
    ]


def inventory_cases(certkit: str, work: Path, records: int) -> list[Case]:
    """Each command in a one-record store, then in a store of ``records`` records.

    No fresh copy per run (a 20,000-record store is 40,000 files): status and
    list change nothing, and each issuance adds one record to thousands.
    """
    cases = []
    for seed, count in (("inventory-1", 1), ("inventory-big", records)):
        home = work / "seeds" / seed / "home"
        env = ["env", f"CERTKIT_HOME={home}"]
        out = str(home.parent / "one")
        for tool, args in (
            ("issue-client", ["issue-client", "one", "--out", out, "--force"]),
            ("status", ["status"]),
            ("list --kind client", ["list", "--kind", "client"]),
        ):
            argv = [*env, certkit, *args]
            cases.append(Case("inventory", tool, "", count, argv=argv))
    return cases


# ---------------------------------------------------------------- seeds


def make_inventory_seeds(work: Path, certkit: str, records: int) -> None:
    """A CA with one record, and one with ``records`` (bulk-issued clients; untimed)."""
    for seed, clients in (("inventory-1", 0), ("inventory-big", records - 1)):
        d = work / "seeds" / seed
        d.mkdir(parents=True)
        ck = shlex.quote(certkit)
        script = f'export CERTKIT_HOME="$PWD/home"\n{ck} init-ca >/dev/null\n'
        if clients:
            script += f"{ck} issue-client --count {clients} --prefix c --out bulk >/dev/null\n"
        sh(script, d)


def sh(script: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"seed setup failed in {cwd}:\n{script}\n{r.stdout}{r.stderr}")


def make_seeds(work: Path, t: dict[str, str | None]) -> None:
    """Seed directories: what each tool has before its timed run (a CA, configs)."""
    seeds = work / "seeds"
    for name in (
        "empty",
        "certkit-ca",
        "cfssl-config",
        "cfssl-ca",
        "openssl-rsa-ca",
        "openssl-ec-ca",
        "mkcert-ca",
        "easyrsa-ca",
    ):
        (seeds / name).mkdir(parents=True)
    ck = shlex.quote(str(t["certkit"]))
    sh(
        f'CERTKIT_HOME="$PWD/home" CERTKIT_CA_PASSPHRASE={PASS} {ck} init-ca --encrypt',
        seeds / "certkit-ca",
    )
    for d in ("cfssl-config", "cfssl-ca"):
        (seeds / d / "cfg.json").write_text(json.dumps(CFSSL_CONFIG))
        (seeds / d / "ca-csr.json").write_text(json.dumps({"CN": "bench CA", "key": EC256}))
        (seeds / d / "server-csr.json").write_text(
            json.dumps({"CN": "localhost", "hosts": ["localhost", "127.0.0.1"], "key": EC256})
        )
        (seeds / d / "client-csr.json").write_text(json.dumps({"CN": "client", "key": EC256}))
    if t["cfssl"]:
        sh("cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca", seeds / "cfssl-ca")
    if t["openssl"]:
        for name, keygen_ca in (("openssl-rsa-ca", RSA_CA), ("openssl-ec-ca", EC_CA)):
            sh(
                keygen_ca.replace("OUT", "ca-key.pem") + "\n"
                f"openssl req -new -x509 -days 365 -key ca-key.pem -passin pass:{PASS} "
                '-sha256 -subj "/CN=bench CA" -out ca.pem',
                seeds / name,
            )
    if t["mkcert"]:
        sh(
            f'CAROOT="$PWD/ca" {shlex.quote(str(t["mkcert"]))} -ecdsa -client seed 2>/dev/null'
            " && rm -f seed*.pem",
            seeds / "mkcert-ca",
        )
    if t["easyrsa"]:
        ez = shlex.quote(str(t["easyrsa"]))
        sh(
            EASYRSA_ENV + f'{ez} init-pki >/dev/null && {ez} --req-cn="bench CA" build-ca nopass',
            seeds / "easyrsa-ca",
        )


# ---------------------------------------------------------------- timing


def write_case_files(work: Path, index: int, case: Case) -> tuple[list[str], list[str] | None]:
    """The command and prepare argv for one case (scripts written under WORK/cases)."""
    if case.argv is not None:
        return case.argv, None
    cases = work / "cases"
    cases.mkdir(exist_ok=True)
    run = cases / f"{index}-run.sh"
    run.write_text(f'set -euo pipefail\ncd "{work}/cur"\n{case.script}')
    prepare = cases / f"{index}-prepare.sh"
    prepare.write_text(
        "set -euo pipefail\n"
        f'd=$(mktemp -d -p "{work}/runs")\n'
        f'cp -a "{work}/seeds/{case.seed or "empty"}/." "$d/"\n'
        f'ln -sfn "$d" "{work}/cur"\n'
        "sync\n"
    )
    return ["bash", str(run), str(case.count or 0)], ["bash", str(prepare)]


def run_once(command: list[str], prepare: list[str] | None) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of ``command``."""
    if prepare:
        subprocess.run(prepare, check=True, capture_output=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"exit {r.returncode}: {r.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def time_case(
    command: list[str], prepare: list[str] | None, runs: int, work: Path, use_hyperfine: bool
) -> tuple[list[float], float]:
    """Wall-clock seconds of each run, and the mean CPU seconds of a run."""
    if use_hyperfine:
        export = work / "hyperfine.json"
        argv = ["hyperfine", "-N", "--style", "none", "--runs", str(runs), "--warmup", "0"]
        if prepare:
            argv += ["--prepare", shlex.join(prepare)]
        argv += ["--export-json", str(export), shlex.join(command)]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"hyperfine failed: {r.stderr.strip()[-500:]}")
        result = json.loads(export.read_text())["results"][0]
        return [float(x) for x in result["times"]], float(result["user"] + result["system"])
    measured = [run_once(command, prepare) for _ in range(runs)]
    return [w for w, _ in measured], statistics.fmean(c for _, c in measured)


def bench_case(
    work: Path, index: int, case: Case, args: argparse.Namespace, projected: float | None
) -> Row:
    command, prepare = write_case_files(work, index, case)
    row = Row(case.group, case.tool, case.count, shlex.join(command), note=case.note)
    if projected is not None and projected > 4 * args.budget:
        row.note = f"skipped: about {projected:.0f} s per run (projected from the smaller count)"
        return row
    try:
        probe, probe_cpu = run_once(command, prepare)  # the warm-up, and a guess at the cost
        if probe >= args.budget / 2:
            # Minutes of work per run: no warm-up effect to remove, one run is the measure.
            times, cpu = [probe], probe_cpu
            row.note = f"{row.note}; 1 run".lstrip("; ")
        else:
            runs = max(2, min(args.runs, int(args.budget / max(probe, 1e-3))))
            if case.group == "startup":
                runs = max(runs, args.startup_runs)
            times, cpu = time_case(command, prepare, runs, work, args.hyperfine)
    except RuntimeError as e:
        row.note = f"failed: {e}"
        return row
    row.times_s = times
    row.runs = len(times)
    row.median_s = statistics.median(times)
    row.mean_s = statistics.fmean(times)
    row.min_s, row.max_s = min(times), max(times)
    row.cpu_s = cpu
    return row


# ---------------------------------------------------------------- report


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "load_average_1_5_15": " ".join(f"{x:.2f}" for x in load),
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1000:.0f} ms" if s < 10 else f"{s:.1f} s"


def add_ratios(rows: list[Row]) -> None:
    """Each tool's median / certkit's; for inventory rows, / the same command at one record."""
    ref: dict[tuple[str, int | None], float] = {}
    small: dict[str, float] = {}
    for r in rows:
        if r.tool in ("certkit", "certkit --help") and r.median_s:
            ref[(r.group, r.count)] = r.median_s
        if r.group == "inventory" and r.count == 1 and r.median_s:
            small[r.tool] = r.median_s
    for r in rows:
        if r.group == "inventory":
            base = small.get(r.tool) if r.count != 1 else None
        else:
            base = ref.get((r.group, r.count))
        if base and r.median_s:
            r.ratio_to_certkit = r.median_s / base


def table(rows: list[Row]) -> str:
    cols = f"{'median':>9} {'cpu':>9} {'runs':>4} {'vs certkit':>10}"
    head = f"{'benchmark':16} {'tool':36} {cols}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        name = r.group + (f" x{r.count}" if r.count else "")
        ratio = f"{r.ratio_to_certkit:.1f}x" if r.ratio_to_certkit else "-"
        lines.append(
            f"{name:16} {r.tool:36} {fmt_time(r.median_s):>9} {fmt_time(r.cpu_s):>9} "
            f"{r.runs:>4} {ratio:>10}  {r.note}"
        )
    return "\n".join(lines)


def find(rows: list[Row], group: str, tool: str, count: int | None = None) -> Row | None:
    return next((r for r in rows if r.group == group and r.tool == tool and r.count == count), None)


def targets(rows: list[Row]) -> list[str]:
    """The issue's targets (defined for 100 and 1000 clients), checked on this run's medians."""
    out: list[str] = []

    def check(label: str, value: float | None, ok: bool | None, shown: str) -> None:
        verdict = "n/a " if value is None or ok is None else ("MET " if ok else "MISS")
        out.append(f"[{verdict}] {label}: {shown if value is not None else 'not measured'}")

    def ratio(group: str, tool: str, count: int | None) -> float | None:
        row = find(rows, group, tool, count)
        return row.ratio_to_certkit if row else None

    for tool, need in (
        ("cfssl", 3),
        ("docker recipe (openssl, RSA 4096)", 10),
        ("docker recipe (openssl, EC P-256)", 10),
    ):
        r = ratio("clients", tool, 100)
        check(
            f"100 clients >= {need}x faster than {tool}",
            r,
            r is not None and r >= need,
            f"{r or 0:.1f}x",
        )
    ck = find(rows, "clients", "certkit", 1000)
    t = ck.median_s if ck else None
    check(
        f"1000 clients under 1.5 s with certkit ({os.cpu_count()} cpus)",
        t,
        t is not None and t < 1.5,
        fmt_time(t),
    )
    r = ratio("full flow", "docker recipe (openssl, RSA 4096)", None)
    check(
        "full flow >= 5x faster than Docker's recipe", r, r is not None and r >= 5, f"{r or 0:.1f}x"
    )
    for tool, row in ((r.tool, r) for r in rows if r.group == "inventory" and r.count != 1):
        if tool == "issue-client":
            x = row.ratio_to_certkit
            check(f"issue-client at {row.count} records <= 1.3x one record", x,
                  x is not None and x <= 1.3, f"{x or 0:.2f}x")  # fmt: skip
        else:
            t = row.median_s
            check(f"{tool} at {row.count} records <= 0.5 s", t, t is not None and t <= 0.5,
                  fmt_time(t))  # fmt: skip
    typer_row = find(rows, "startup", 'python -c "import typer"')
    help_row = find(rows, "startup", "certkit --help")
    x = None
    if typer_row and help_row and typer_row.median_s and help_row.median_s:
        x = help_row.median_s / typer_row.median_s
    check(
        "certkit --help within 1.5x of import typer",
        x,
        x is not None and x <= 1.5,
        f"{x or 0:.2f}x",
    )
    return out


# ---------------------------------------------------------------- main


def certkit_command() -> str:
    local = REPO / ".venv" / "bin" / "certkit"
    if local.exists():
        return str(local)
    found = shutil.which("certkit")
    if not found:
        sys.exit("bench: certkit is not installed (run scripts/test once to make .venv)")
    return found


def server_step(certkit: str, work: Path) -> tuple[str, str]:
    """The certkit command that issues the server certificate in the full flow."""
    ck = shlex.quote(certkit)
    probe = subprocess.run([certkit, "issue-server", "--help"], capture_output=True, text=True)
    if probe.returncode == 0 and "--out" in probe.stdout:
        return f"{ck} issue-server localhost --san 127.0.0.1 --out server", ""
    # Until issue-server exists: the same certificate through the library.
    py = shlex.quote(sys.executable)
    code = (
        "from certkit import bulk; "
        "bulk.issue_servers(bulk.parse_hosts('localhost 127.0.0.1'), out='server')"
    )
    return f"{py} -c {shlex.quote(code)}", " (server step via the library)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few runs, small counts (a smoke test)")
    ap.add_argument("--counts", default=None, help="client counts (default 100,1000)")
    ap.add_argument("--runs", type=int, default=None, help="most runs per case (default 10)")
    ap.add_argument(
        "--budget", type=float, default=None, help="seconds of runs per case (default 60)"
    )
    ap.add_argument(
        "--only", default="", help="comma-separated groups: startup,full,clients,inventory"
    )
    ap.add_argument("--records", type=int, default=None, help="inventory size (default 20000)")
    ap.add_argument("--json-out", default=None, help="where to write the JSON results")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--no-hyperfine", action="store_true", help="use the Python timer")
    args = ap.parse_args()
    # Ctrl-C or kill: still remove the work directory (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    counts = [int(c) for c in (args.counts or ("3,10" if args.quick else "100,1000")).split(",")]
    args.runs = args.runs or (2 if args.quick else 10)
    args.startup_runs = 5 if args.quick else 30
    args.budget = args.budget or (2.0 if args.quick else 60.0)
    args.hyperfine = shutil.which("hyperfine") is not None and not args.no_hyperfine
    only = {g.strip() for g in args.only.split(",") if g.strip()}

    certkit = certkit_command()
    t = tools(certkit)
    work = Path(tempfile.mkdtemp(prefix="certkit-bench-"))
    (work / "runs").mkdir()
    started = dt.datetime.now(dt.UTC)
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        make_seeds(work, t)
        server_cmd, server_note = server_step(certkit, work)
        cases: list[Case] = []
        if not only or "startup" in only:
            cases += startup_cases(certkit)
        if not only or "full" in only:
            flow = full_flow_cases(t, server_cmd)
            flow[0].note += server_note
            cases += flow
        if not only or "clients" in only:
            for count in sorted(counts):
                cases += client_cases(t, count)
        if not only or "inventory" in only:
            records = args.records or (200 if args.quick else 20000)
            make_inventory_seeds(work, certkit, records)
            cases += inventory_cases(certkit, work, records)
        print(
            f"certkit bench: {len(cases)} cases, timer: "
            f"{'hyperfine' if args.hyperfine else 'python'}, work dir {work}",
            flush=True,
        )
        rows: list[Row] = []
        per_item: dict[str, float] = {}  # seconds per client, from the smaller count
        for i, case in enumerate(cases):
            projected = None
            if case.count and case.tool in per_item and case.group == "clients":
                projected = per_item[case.tool] * case.count
            row = bench_case(work, i, case, args, projected)
            if case.count and row.median_s:
                per_item.setdefault(case.tool, row.median_s / case.count)
            rows.append(row)
            print(f"  {row.group:10} {row.tool:36} {fmt_time(row.median_s):>9}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    add_ratios(rows)
    info = machine()
    info["load_average_at_start"] = load_at_start
    report = table(rows)
    checks = targets(rows)
    print()
    print(
        f"Machine: {info['cpus']} cpus, {info['cpu_model']}, Linux {info['kernel']}, "
        f"Python {info['python']}; load average {load_at_start} at the start, "
        f"{info['load_average_1_5_15']} at the end"
    )
    print(
        "Wall-clock medians; cpu = mean user+system CPU per run; "
        "'vs certkit' = the tool's median / certkit's median (higher: certkit faster); "
        "inventory rows: / the same command's median in a one-record store"
    )
    print(report)
    if checks:
        print()
        print("\n".join(checks))
    doc = {
        "started": started.isoformat(),
        "command": shlex.join(["scripts/bench", *sys.argv[1:]]),
        "timer": "hyperfine" if args.hyperfine else "python",
        "machine": info,
        "versions": versions(t),
        "counts": counts,
        "results": [asdict(r) for r in rows],
        "targets": checks,
    }
    if args.json_out:
        out = Path(args.json_out)
    else:
        out = REPO / "bench-results" / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nJSON: {out}")
    failed = [r for r in rows if r.tool.startswith("certkit") and r.median_s is None]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
