"""A second CA never silently replaces the CA a host trusts (issue 26, item 3).

From a second store, an install on a host another store set up would lock out
every client of the first CA.  It is refused (exit 2, nothing issued, nothing
written) unless ``--replace-ca`` says so; then the old CA file is kept beside
daemon.json.  A rotation's bundle (old + new CA) is not a swap.
"""

from __future__ import annotations

import json
from pathlib import Path

from support import run_certkit


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _install(root: Path, home: Path, *extra: str) -> tuple[int, str]:
    r = run_certkit(
        "issue-server", "h1.example.com", "--install", "--root", str(root), *extra,
        env={"CERTKIT_HOME": str(home)},
    )  # fmt: skip
    return r.returncode, r.stdout + r.stderr


def test_another_store_cannot_swap_the_hosts_ca_without_replace_ca(tmp_path: Path) -> None:
    root, store_a, store_b = tmp_path / "root", tmp_path / "a", tmp_path / "b"
    for home in (store_a, store_b):
        assert run_certkit("init-ca", env={"CERTKIT_HOME": str(home)}).returncode == 0
    assert _install(root, store_a)[0] == 0
    before = _files(root)

    code, said = _install(root, store_b)
    assert code == 2, said
    assert "trusts another CA" in said and "--replace-ca" in said
    assert "certkit CA default" in said  # the old CA is named, by its subject
    assert _files(root) == before
    listed = run_certkit("list", "--json", env={"CERTKIT_HOME": str(store_b)})
    assert [i for i in json.loads(listed.stdout) if i["kind"] == "server"] == []

    code, said = _install(root, store_b, "--replace-ca")
    assert code == 0, said
    kept = sorted((root / "etc" / "docker").glob("ca.pem.certkit-replaced-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == before["etc/docker/certkit/ca.pem"]
    assert _files(root)["etc/docker/certkit/ca.pem"] != before["etc/docker/certkit/ca.pem"]


def test_the_same_store_reinstalls_and_renews_without_replace_ca(tmp_path: Path) -> None:
    root, home = tmp_path / "root", tmp_path / "a"
    assert run_certkit("init-ca", env={"CERTKIT_HOME": str(home)}).returncode == 0
    assert _install(root, home)[0] == 0
    code, said = _install(root, home, "--force")
    assert code == 0, said
    r = run_certkit("renew", "server", "h1.example.com", env={"CERTKIT_HOME": str(home)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert not list((root / "etc" / "docker").glob("ca.pem.certkit-replaced-*"))


def test_renew_server_takes_the_flags_the_install_messages_name(tmp_path: Path) -> None:
    # A renewal meets what a first install meets (a new plain listener, a swapped CA): the
    # options its messages name must exist on `renew server` too (issue 26, item 7).
    root, home = tmp_path / "root", tmp_path / "a"
    env = {"CERTKIT_HOME": str(home)}
    assert run_certkit("init-ca", env=env).returncode == 0
    assert _install(root, home)[0] == 0
    config = root / "etc" / "docker" / "daemon.json"
    data = json.loads(config.read_text())
    data["hosts"] = [*data.get("hosts", []), "tcp://0.0.0.0:2375"]
    config.write_text(json.dumps(data))
    r = run_certkit("renew", "server", "h1.example.com", env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    named = {flag for flag in ("--keep-insecure", "--remove-insecure") if flag in r.stderr}
    assert named, r.stderr
    for flag in sorted(named):
        done = run_certkit("renew", "server", "h1.example.com", flag, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "2375" not in json.dumps(json.loads(config.read_text()).get("hosts", []))
