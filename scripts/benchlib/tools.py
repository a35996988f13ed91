"""The peers certkit is compared with: where they are, their versions, their recipes, seeds.

A recipe is a bash script run in a fresh copy of its seed directory (the CA
each tool starts from, made once, untimed); ``$1`` is the client count.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import sqlite3
import subprocess
import textwrap
from pathlib import Path

PASS = "bench-passphrase"  # the recipes encrypt the CA key; certkit --encrypt does too
EASYRSA_CANDIDATES = ("/usr/share/easy-rsa/easyrsa", "easyrsa")

Tools = dict[str, str | None]


def find_tools(certkit: str) -> Tools:
    """Each tool's executable, None when it is not installed."""
    easyrsa = next(filter(None, map(shutil.which, EASYRSA_CANDIDATES)), None)
    return {
        "certkit": certkit,
        "openssl": shutil.which("openssl"),
        "mkcert": shutil.which("mkcert"),
        "cfssl": shutil.which("cfssl") if shutil.which("cfssljson") else None,
        "easyrsa": easyrsa,
    }


def versions(tools: Tools) -> dict[str, str]:
    probes = {
        "certkit": "--version",
        "openssl": "version",
        "mkcert": "-version",
        "cfssl": "version",
        "easyrsa": "--version",
    }
    out: dict[str, str] = {}
    for name, flag in probes.items():
        exe = tools[name]
        if exe is None:
            out[name] = "not installed"
            continue
        r = subprocess.run([exe, flag], capture_output=True, text=True, check=False)
        text = (r.stdout or r.stderr).strip().splitlines()
        line = next(
            (x for x in text if x.startswith("Version:")),
            next((x for x in text if "version" in x.lower()), text[0] if text else "?"),
        )
        out[name] = line.strip()
    return out


# ---------------------------------------------------------------- openssl: Docker's recipe

EC_KEY = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out OUT"
EC_CA = f"{EC_KEY} -aes256 -pass pass:{PASS}"
RSA_CA = f"openssl genrsa -aes256 -passout pass:{PASS} -out OUT 4096"
RSA = "openssl genrsa -out OUT 4096"


def docker_recipe(keygen_ca: str, keygen: str) -> str:
    """Docker's "Protect the Docker daemon socket" recipe, non-interactive: CA, server, client."""
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


# ---------------------------------------------------------------- mkcert, cfssl, easy-rsa


def mkcert_flow(mkcert: str) -> str:
    mk = shlex.quote(mkcert)
    return textwrap.dedent(f"""\
        export CAROOT="$PWD/ca"
        {mk} -ecdsa -cert-file server-cert.pem -key-file server-key.pem \\
            localhost 127.0.0.1 2>/dev/null
        {mk} -ecdsa -client -cert-file cert.pem -key-file key.pem client 2>/dev/null
        """)


def mkcert_clients(mkcert: str) -> str:
    mk = shlex.quote(mkcert)
    return textwrap.dedent(f"""\
        export CAROOT="$PWD/ca"
        for i in $(seq 1 "$1"); do
            mkdir c$i && cp ca/rootCA.pem c$i/ca.pem
            {mk} -ecdsa -client -cert-file c$i/cert.pem -key-file c$i/key.pem c$i 2>/dev/null
        done
        """)


CFSSL_FLOW = textwrap.dedent("""\
    cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca
    cfssl gencert -ca ca.pem -ca-key ca-key.pem -config cfg.json \\
        -profile server server-csr.json 2>/dev/null | cfssljson -bare server
    cfssl gencert -ca ca.pem -ca-key ca-key.pem -config cfg.json \\
        -profile client client-csr.json 2>/dev/null | cfssljson -bare client
    """)
CFSSL_CLIENTS = textwrap.dedent("""\
    for i in $(seq 1 "$1"); do
        mkdir c$i && cp ca.pem c$i/ca.pem
        cfssl gencert -ca ca.pem -ca-key ca-key.pem -config cfg.json \\
            -profile client -cn c$i client-csr.json 2>/dev/null | cfssljson -bare c$i/cert
    done
    """)
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


def easyrsa_flow(easyrsa: str) -> str:
    ez = shlex.quote(easyrsa)
    return EASYRSA_ENV + textwrap.dedent(f"""\
        {ez} init-pki >/dev/null 2>&1
        {ez} --req-cn="bench CA" build-ca nopass >/dev/null 2>&1
        {ez} --subject-alt-name="DNS:localhost,IP:127.0.0.1" \\
            build-server-full localhost nopass >/dev/null 2>&1
        {ez} build-client-full client nopass >/dev/null 2>&1
        test -s pki/issued/client.crt
        """)


def easyrsa_clients(easyrsa: str) -> str:
    ez = shlex.quote(easyrsa)
    return EASYRSA_ENV + textwrap.dedent(f"""\
        for i in $(seq 1 "$1"); do
            {ez} build-client-full c$i nopass >/dev/null 2>&1
            mkdir c$i
            cp pki/ca.crt c$i/ca.pem
            cp pki/issued/c$i.crt c$i/cert.pem
            cp pki/private/c$i.key c$i/key.pem
        done
        """)


# ---------------------------------------------------------------- seeds


def sh(script: str, cwd: Path) -> None:
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"seed setup failed in {cwd}:\n{script}\n{r.stdout}{r.stderr}")


def certkit_env(home: Path) -> dict[str, str]:
    """The environment of a certkit run whose store is ``home`` (CA key encrypted)."""
    return {**os.environ, "CERTKIT_HOME": str(home), "CERTKIT_CA_PASSPHRASE": PASS}


def make_seeds(seeds: Path, tools: Tools) -> None:
    """What each tool has before a timed run: empty, a CA, a config (untimed)."""
    names = (
        "empty",
        "certkit-ca",
        "cfssl-config",
        "cfssl-ca",
        "openssl-rsa-ca",
        "openssl-ec-ca",
        "mkcert-ca",
        "easyrsa-ca",
    )
    for name in names:
        (seeds / name).mkdir(parents=True)
    ck = shlex.quote(str(tools["certkit"]))
    sh(
        f'CERTKIT_HOME="$PWD/home" CERTKIT_CA_PASSPHRASE={PASS} {ck} init-ca --encrypt',
        seeds / "certkit-ca",
    )
    for d in ("cfssl-config", "cfssl-ca"):
        (seeds / d / "cfg.json").write_text(json.dumps(CFSSL_CONFIG))
        (seeds / d / "ca-csr.json").write_text(json.dumps({"CN": "bench CA", "key": EC256}))
        server = {"CN": "localhost", "hosts": ["localhost", "127.0.0.1"], "key": EC256}
        (seeds / d / "server-csr.json").write_text(json.dumps(server))
        (seeds / d / "client-csr.json").write_text(json.dumps({"CN": "client", "key": EC256}))
    if tools["cfssl"]:
        sh("cfssl gencert -initca ca-csr.json 2>/dev/null | cfssljson -bare ca", seeds / "cfssl-ca")
    if tools["openssl"]:
        for name, keygen_ca in (("openssl-rsa-ca", RSA_CA), ("openssl-ec-ca", EC_CA)):
            sh(
                keygen_ca.replace("OUT", "ca-key.pem") + "\n"
                f"openssl req -new -x509 -days 365 -key ca-key.pem -passin pass:{PASS} "
                '-sha256 -subj "/CN=bench CA" -out ca.pem',
                seeds / name,
            )
    if tools["mkcert"]:
        mk = shlex.quote(str(tools["mkcert"]))
        sh(
            f'CAROOT="$PWD/ca" {mk} -ecdsa -client seed 2>/dev/null && rm -f seed*.pem',
            seeds / "mkcert-ca",
        )
    if tools["easyrsa"]:
        ez = shlex.quote(str(tools["easyrsa"]))
        sh(
            EASYRSA_ENV + f'{ez} init-pki >/dev/null && {ez} --req-cn="bench CA" build-ca nopass',
            seeds / "easyrsa-ca",
        )


def make_inventory_seed(seed: Path, certkit: str, records: int) -> None:
    """A store holding ``records`` records (one CA, clients; untimed).

    Up to 1,000 clients are issued by certkit itself; the rest of the records are
    copies of one of them with their own serial and name, inserted straight into the
    inventory (the three commands timed read or write the inventory, never the other
    records' files: 100,000 real issuances take an hour on a crowded machine).
    """
    seed.mkdir(parents=True)
    ck = shlex.quote(certkit)
    real = min(records - 1, 1000)
    script = f'export CERTKIT_HOME="$PWD/home"\n{ck} init-ca >/dev/null\n'
    if real > 0:
        script += f"{ck} issue-client --count {real} --prefix c --out bulk >/dev/null\n"
    sh(script, seed)
    if records - 1 > real:
        clone_records(seed / "home" / "cas" / "default" / "inventory.sqlite3", records - 1 - real)


def clone_records(db: Path, count: int) -> None:
    """``count`` more client records in ``db``, each a copy of a real one (its installed
    paths too) under a new serial and name, in one transaction."""
    conn = sqlite3.connect(db)
    try:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(records)") if r[1] != "id"]
        sql = f"SELECT {', '.join(cols)} FROM records WHERE kind = 'client' LIMIT 1"
        base = dict(zip(cols, conn.execute(sql).fetchone(), strict=True))
        paths = [p for (p,) in conn.execute(
            "SELECT path FROM installed WHERE serial = ?", (base["serial"],))]  # fmt: skip
        insert = f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        with conn:
            for i in range(count):
                serial, name = format(secrets.randbits(127) | 1 << 126, "x"), f"s-{i}"
                row = {**base, "serial": serial, "name": name, "subject": name}
                conn.execute(insert, [row[c] for c in cols])
                conn.executemany(
                    "INSERT INTO installed (serial, path) VALUES (?, ?)",
                    [(serial, p.replace(base["name"], name)) for p in paths],
                )
    finally:
        conn.close()
