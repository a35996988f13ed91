"""Team mode's numbers: ``certkit login`` to a usable context, 100 clients through OpenBao.

:func:`team_numbers` needs a running OpenBao whose team is set up (``certkit init-ca
--issuer openbao``) and an admin token in ``env``; tests/test_openbao_ha.py starts a
``bao server -dev`` and calls it, and prints what it returns.  The local yardstick is
``certkit issue-client --count 100`` from a CA whose key is in the store.

Run alone, it is the ``certkit login`` bench case: it starts its own ``bao server -dev
-dev-tls`` (the ``cert`` login needs TLS), sets the team up as docs/team.md does, and
times the person's commands: ``certkit login`` (password), its renewal with the
current certificate (``certkit renew client NAME``, no password), and the admin's
bulk issuance against a local key::

    .venv/bin/python scripts/benchlib/openbao.py --runs 5 --json bench-results/team.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

CERTKIT = [sys.executable, "-m", "certkit"]


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stdout}{r.stderr}")
    return elapsed


def _add_user(addr: str, token: str, user: str, password: str) -> None:
    body = json.dumps({"password": password, "token_policies": "certkit-person"}).encode()
    req = urllib.request.Request(f"{addr}/v1/auth/userpass/users/{user}", body, method="POST")
    req.add_header("X-Vault-Token", token)
    urllib.request.urlopen(req, timeout=10).close()


def team_numbers(
    env: dict[str, str], work: Path, runs: int = 5, count: int = 100
) -> dict[str, Any]:
    """Median seconds of ``certkit login`` (to a context the docker CLI can use) and of
    ``issue-client --count`` through OpenBao and with a local key (same machine, same run)."""
    base = {**os.environ, **env}
    _add_user(env["BAO_ADDR"].split(",")[0], env["BAO_TOKEN"], "bench", "pw-bench")
    person = {**base, "BAO_TOKEN": "", "CERTKIT_BAO_PASSWORD": "pw-bench",
              "DOCKER_CONFIG": str(work / "docker")}  # fmt: skip
    logins = [
        _timed(
            [
                *CERTKIT,
                "login",
                "--username",
                "bench",
                "--host",
                "docker1.test",
                "--context",
                f"bench{i}",
            ],
            person,
        )
        for i in range(runs)
    ]
    # The floor of any command on this machine now: the interpreter and the CLI starting.
    startup = [_timed([*CERTKIT, "--version"], base) for _ in range(runs)]
    bao = _timed([*CERTKIT, "team", "issue-client", "--count", str(count), "--prefix", "ci",
                  "--out", str(work / "bao-clients")], base)  # fmt: skip
    local_env = {**base, "CERTKIT_HOME": str(work / "local-home")}
    subprocess.run([*CERTKIT, "init-ca"], env=local_env, check=True, capture_output=True)
    local = _timed([*CERTKIT, "issue-client", "--count", str(count), "--prefix", "ci",
                    "--out", str(work / "local-clients")], local_env)  # fmt: skip
    return {
        "login_median_s": round(statistics.median(logins), 3),
        "login_max_s": round(max(logins), 3),
        "certkit_version_median_s": round(statistics.median(startup), 3),
        f"clients_{count}_openbao_s": round(bao, 2),
        f"clients_{count}_local_s": round(local, 2),
        "openbao_over_local": round(bao / local, 1),
    }


def renewal_numbers(env: dict[str, str], work: Path, runs: int = 5) -> dict[str, Any]:
    """Median seconds of ``certkit renew client benchN``: the cert login and a new
    certificate, no password (the contexts :func:`team_numbers` made)."""
    person = {**os.environ, **env, "BAO_TOKEN": "", "CERTKIT_BAO_PASSWORD": "",
              "DOCKER_CONFIG": str(work / "docker")}  # fmt: skip
    times = [_timed([*CERTKIT, "renew", "client", f"bench{i}"], person) for i in range(runs)]
    return {
        "renew_median_s": round(statistics.median(times), 3),
        "renew_max_s": round(max(times), 3),
    }


def main(argv: list[str] | None = None) -> int:
    """The ``certkit login`` bench case on a ``bao server -dev`` of its own."""
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="certkit login through OpenBao: the numbers.")
    ap.add_argument("--runs", type=int, default=5, help="logins and renewals timed (median)")
    ap.add_argument("--count", type=int, default=100, help="clients for the bulk comparison")
    ap.add_argument("--json", help="write the numbers to this file too")
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "tests"))  # the real bao server, as the tests start it
    from bao_support import require_bao, start_dev

    with tempfile.TemporaryDirectory(prefix="certkit-bench-bao-") as tmp:
        work = Path(tmp)
        node = start_dev(require_bao(), work, tls=True)
        try:
            env = {**node.env(), "CERTKIT_HOME": str(work / "home")}
            for extra in (["--ca", "root", "--mount", "pki-root"],
                          ["--mount", "pki-docker", "--parent-mount", "pki-root"]):  # fmt: skip
                argv2 = [*CERTKIT, "init-ca", "--issuer", "openbao", "--create", *extra]
                subprocess.run(argv2, env={**os.environ, **env}, check=True, capture_output=True)
            import ssl

            ctx = ssl.create_default_context(cafile=str(node.cacert))
            urllib.request.install_opener(
                urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
            )
            numbers = team_numbers(env, work, args.runs, args.count)
            numbers.update(renewal_numbers(env, work, args.runs))
        finally:
            node.stop()
    numbers["login_goal_s"] = 1.0
    text = json.dumps(numbers, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
