"""Issue 27 item 7: ``fleet apply --contexts`` never replaces a context that is not
certkit fleet's for that host.

The attack: an inventory host called ``production`` took over the admin's own
``production`` context (the current one), and every docker command went to another
host.  The guard is setup's "is this context ours, for this host": the endpoint must
be the host's and the client certificate the fleet's, from this CA; else the context is
left alone and named (exit 1), unless ``--force``.  The contexts are real docker CLI
contexts, read back with ``docker context inspect``'s files.
"""

from __future__ import annotations

from pathlib import Path

from support import cli_ok

from certkit import dockercli
from certkit.fleet.admin import ensure_admin_client, write_contexts
from certkit.store import CAStore


def test_fleet_contexts_leave_a_context_that_is_not_theirs_alone(
    store: CAStore, docker_config: Path
) -> None:
    cli_ok("client-context", "production", "--host", "prod.example.com", "--use")
    cli_ok("client-context", "staging", "--host", "10.0.0.6")
    before = {
        n: (dockercli.read_context(n, docker_config).tls_dir / "cert.pem").read_bytes()
        for n in ("production", "staging")
    }
    admin = ensure_admin_client(store, 30)
    hosts = [
        ("production", "10.0.0.5", 2376),
        ("staging", "10.0.0.6", 2376),
        ("web", "10.0.0.7", 2376),
    ]
    written, refused = write_contexts(store, admin, hosts, str(docker_config))
    assert written == ["web"]
    # Another endpoint: the admin's production context.  The same endpoint but a client
    # certificate the fleet did not issue: a person's context for that host.
    assert "points at tcp://prod.example.com:2376, not tcp://10.0.0.5:2376" in refused["production"]
    assert "was not written by certkit fleet" in refused["staging"]
    for name, cert in before.items():
        assert (
            dockercli.read_context(name, docker_config).tls_dir / "cert.pem"
        ).read_bytes() == cert
    assert dockercli.current_context(docker_config) == "production"
    assert dockercli.read_context("production", docker_config).host == "tcp://prod.example.com:2376"

    # The fleet's own context for the host is the fleet's to update (a renewed admin
    # certificate), and --force replaces the others.
    (admin.dir / "cert.pem").unlink()
    admin = ensure_admin_client(store, 30)
    # The renewal itself rewrote the fleet context it recorded (issue 34: none left behind).
    web = dockercli.read_context("web", docker_config).tls_dir
    assert admin.issued and admin.rewritten == (str(web),)
    assert (web / "cert.pem").read_bytes() == admin.cert.read_bytes()
    again, refused = write_contexts(store, admin, hosts, str(docker_config))
    assert again == [] and set(refused) == {"production", "staging"}
    forced, refused = write_contexts(store, admin, hosts, str(docker_config), force=True)
    assert forced == ["production", "staging"] and refused == {}
    assert dockercli.read_context("production", docker_config).host == "tcp://10.0.0.5:2376"
