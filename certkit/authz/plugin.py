#!/usr/bin/env python3
"""certkit-authz: a Docker authorization plugin enforcing certkit's revocations and roles.

This one file is the whole program: standard library only, so it runs from
the certkit package (``python3 -m certkit.authz.plugin``) or copied alone to a
Docker host (``python3 certkit-authz.py``), where certkit installs it.

dockerd asks it about every API request (Docker's authz plugin protocol: HTTP
POSTs of JSON on a unix socket).  The answer comes from one policy file
(``/etc/docker/certkit/authz.json``, written by ``certkit policy push``):

* a request on the unix socket (no TLS peer) is always allowed;
* a client certificate listed as revoked (SHA-256 fingerprint) is denied:
  ``certificate revoked on DATE``;
* otherwise the identity (the certificate's CN, dockerd's ``User``) gets its
  role, or the policy's default role for identities it does not know:
  ``full`` allows everything, ``deny`` nothing, ``read-only`` the endpoints in
  :data:`READ_ONLY`, a custom role the ``METHOD /path`` patterns it lists.

The policy is re-read when the file changes; one that does not load keeps the
previous one (and says so in the log, the journal under systemd).  Each
decision is logged: allow/deny, identity, serial, method, path.  Listening:
systemd socket activation (``LISTEN_FDS``) or ``--socket PATH``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import sys
import threading
from typing import Any

FORMAT = 1  # the policy file's "format"
DEFAULT_POLICY = "/etc/docker/certkit/authz.json"
BUILTIN_ROLES = ("full", "read-only", "deny")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "*")

#: What ``read-only`` may do: inspect and list, never create, exec, attach, copy files
#: in or out (archive), export, build, push, or read secrets, configs or swarm tokens.
#: Paths are matched without the ``/v1.NN`` prefix and the query; ``*`` is one path
#: segment, ``**`` one or more (image names hold slashes).
READ_ONLY = (
    "GET /_ping",
    "HEAD /_ping",
    "GET /version",
    "GET /info",
    "GET /events",
    "GET /system/df",
    "GET /containers/json",
    "GET /containers/*/json",
    "GET /containers/*/logs",
    "GET /containers/*/top",
    "GET /containers/*/stats",
    "GET /containers/*/changes",
    "GET /images/json",
    "GET /images/**/json",
    "GET /images/**/history",
    "GET /networks",
    "GET /networks/*",
    "GET /volumes",
    "GET /volumes/*",
    "GET /services",
    "GET /services/*",
    "GET /services/*/logs",
    "GET /tasks",
    "GET /tasks/*",
    "GET /tasks/*/logs",
    "GET /nodes",
    "GET /nodes/*",
    "GET /plugins",
)

_ROLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_VERSION_PREFIX = re.compile(r"^/v[0-9]+(\.[0-9]+)?(?=/)")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.:@=+-]+$")


class PolicyError(ValueError):
    """A policy or a role that cannot be used (the message says what and where)."""


# ---------------------------------------------------------------- rules


def compile_rule(rule: str) -> tuple[str, re.Pattern[str]]:
    """``"METHOD /path/*/pattern"`` as (method, regex); PolicyError when malformed."""
    if not isinstance(rule, str) or rule.count(" ") != 1:
        raise PolicyError(f"rule {rule!r} is not 'METHOD /path'")
    method, path = rule.split(" ")
    if method not in METHODS:
        raise PolicyError(f"rule {rule!r}: method must be one of {', '.join(METHODS)}")
    if not path.startswith("/") or "//" in path:
        raise PolicyError(f"rule {rule!r}: the path must start with / (no empty segment)")
    parts = []
    for seg in path[1:].split("/") if path != "/" else []:
        if seg == "**":
            parts.append("[^?#]+")
        elif seg == "*":
            parts.append("[^/?#]+")
        elif _SEGMENT.match(seg):
            parts.append(re.escape(seg))
        else:
            raise PolicyError(f"rule {rule!r}: segment {seg!r} is not a name, * or **")
    return method, re.compile("/" + "/".join(parts) + "$")


def compile_role(name: str, rules: Any) -> list[tuple[str, re.Pattern[str]]]:
    """A custom role's rules, checked: PolicyError naming the role when one is wrong."""
    if not isinstance(name, str) or not _ROLE_NAME.match(name) or name in BUILTIN_ROLES:
        raise PolicyError(
            f"role name {name!r} must be lower-case letters, digits, '-' or '_' "
            f"and not one of {', '.join(BUILTIN_ROLES)}"
        )
    if not isinstance(rules, list) or not rules:
        raise PolicyError(f"role {name!r} must be a non-empty list of 'METHOD /path' rules")
    try:
        return [compile_rule(r) for r in rules]
    except PolicyError as e:
        raise PolicyError(f"role {name!r}: {e}") from None


def api_path(uri: str) -> str:
    """The request's path without the ``/v1.NN`` prefix and the query."""
    path = uri.split("?", 1)[0].split("#", 1)[0] or "/"
    return _VERSION_PREFIX.sub("", path)


# ---------------------------------------------------------------- the policy


class Policy:
    """A loaded policy file: who is revoked, which role each identity has."""

    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise PolicyError(f"not a certkit authz policy (format {FORMAT})")
        try:
            self.digest = str(data.get("digest", ""))
            self.ca_fingerprint = str(data.get("ca_fingerprint", ""))
            self.revoked = {
                str(r["fingerprint"]).replace(":", "").lower(): r for r in data["revoked"]
            }
            self.identities = {str(k): str(v) for k, v in data["identities"].items()}
            self.default_role = str(data["default_role"])
            self.roles = {n: compile_role(n, rules) for n, rules in data["roles"].items()}
        except (KeyError, TypeError, AttributeError) as e:
            raise PolicyError(f"malformed policy ({type(e).__name__}: {e})") from None
        for role in {self.default_role, *self.identities.values()}:
            if role not in BUILTIN_ROLES and role not in self.roles:
                raise PolicyError(f"role {role!r} is used but not defined")

    def role_allows(self, role: str, method: str, path: str) -> bool:
        if role == "full":
            return True
        if role == "deny":
            return False
        rules = _READ_ONLY_RULES if role == "read-only" else self.roles.get(role, [])
        return any((m == "*" or m == method) and rx.match(path) for m, rx in rules)


_READ_ONLY_RULES = [compile_rule(r) for r in READ_ONLY]


def load_policy(path: str) -> Policy:
    """The policy in ``path``; PolicyError (or OSError) when it cannot be used."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PolicyError(f"not JSON ({e})") from None
    return Policy(data)


# ---------------------------------------------------------------- peer certificates


def _der_item(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER item at ``at``."""
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[at : at + n], "big")
        at += n
    return tag, at, at + length


def peer_der(field: str) -> bytes:
    """The DER of one ``RequestPeerCertificates`` entry.

    dockerd marshals each certificate as PEM, and JSON carries those bytes in
    base64 (moby's ``authorization.PeerCertificate.MarshalJSON``): so base64,
    then PEM.  Bare DER in base64 is accepted too.
    """
    raw = base64.b64decode(field)
    if raw.startswith(b"-----BEGIN"):
        body = b"".join(ln for ln in raw.splitlines() if ln and not ln.startswith(b"-----"))
        return base64.b64decode(body)
    return raw


def serial_of(der: bytes) -> str:
    """The certificate's serial number in lower-case hex, as certkit records it."""
    try:
        _, tbs_at, _ = _der_item(der, 0)  # Certificate
        _, at, _ = _der_item(der, tbs_at)  # TBSCertificate
        tag, start, end = _der_item(der, at)
        if tag == 0xA0:  # [0] version, then the serial
            tag, start, end = _der_item(der, end)
        return format(int.from_bytes(der[start:end], "big"), "x") if tag == 0x02 else "?"
    except IndexError:
        return "?"


# ---------------------------------------------------------------- deciding


class Decider:
    """Decides requests from the policy file, re-reading it when it changes."""

    def __init__(self, path: str, log: Any = None) -> None:
        self.path = path
        self.policy: Policy | None = None
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) last tried
        self._lock = threading.Lock()
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.refresh()

    def refresh(self) -> None:
        """Load the file again if it changed; keep the last good policy if it fails."""
        try:
            st = os.stat(self.path)
            seen: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            seen = None
        with self._lock:
            if seen == self._seen:
                return
            self._seen = seen
            try:
                policy = load_policy(self.path)
            except (OSError, PolicyError) as e:
                kept = "keeping the previous policy" if self.policy else "no policy loaded yet"
                self.log(f"policy {self.path} not loaded: {e}; {kept}")
                return
            self.policy = policy
            self.log(
                f"policy {self.path} loaded: {len(policy.revoked)} revoked, "
                f"{len(policy.identities)} identities, default role {policy.default_role}"
            )

    def decide(self, req: dict[str, Any]) -> tuple[bool, str]:
        """(allow, message) for one AuthZReq, and one log line saying so."""
        self.refresh()
        method = str(req.get("RequestMethod") or "")
        path = api_path(str(req.get("RequestUri") or req.get("RequestURI") or ""))
        user = str(req.get("User") or "")
        certs = req.get("RequestPeerCertificates") or []
        serial = "-"
        allow, msg = True, ""
        if certs or user:
            der = peer_der(certs[0]) if certs else b""
            serial = serial_of(der) if der else "-"
            allow, msg = self._decide_tls(user, der, method, path)
        verdict = "allow" if allow else "deny"
        self.log(
            f"{verdict} identity={user or '-'} serial={serial} method={method} path={path}"
            + (f" reason={msg!r}" if msg else "")
        )
        return allow, msg

    def _decide_tls(self, user: str, der: bytes, method: str, path: str) -> tuple[bool, str]:
        policy = self.policy
        if policy is None:
            return False, "certkit-authz has no policy loaded: run `certkit policy push` for it"
        entry = policy.revoked.get(hashlib.sha256(der).hexdigest()) if der else None
        if entry is not None:
            when = str(entry.get("at", ""))[:10]
            reason = f" ({entry['reason']})" if entry.get("reason") else ""
            return False, f"certificate revoked on {when}{reason}: ask for a new one"
        role = policy.identities.get(user, policy.default_role)
        if policy.role_allows(role, method, path):
            return True, ""
        if role == "deny" and user not in policy.identities:
            return False, f"identity {user!r} is not known to this host's policy"
        return False, f"role {role} may not {method} {path}"


# ---------------------------------------------------------------- serving


def serve(sock: socket.socket, decider: Decider) -> None:
    """Answer dockerd's plugin requests on ``sock`` until interrupted (one thread each)."""
    # Imported here: http.server pulls in ssl and email, which certkit's own commands
    # (status reads the role names above) must not pay for.
    import socketserver
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # dockerd keeps its connection to a plugin open

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/Plugin.Activate":
                return self._reply({"Implements": ["authz"]})
            if self.path == "/AuthZPlugin.AuthZRes":
                return self._reply({"Allow": True})
            if self.path != "/AuthZPlugin.AuthZReq":
                return self._reply({"Err": f"unknown endpoint {self.path}"}, 404)
            try:
                allow, msg = decider.decide(json.loads(body or b"{}"))
            except Exception as e:  # one bad request must not take the plugin down
                decider.log(f"error deciding a request: {e!r}")
                return self._reply({"Allow": False, "Err": f"certkit-authz: {e}"})
            self._reply({"Allow": allow, "Msg": msg})

        def _reply(self, data: dict[str, Any], status: int = 200) -> None:
            out = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # decisions are logged by the Decider; access lines would only repeat them

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

        def get_request(self) -> tuple[socket.socket, Any]:
            conn, _ = self.socket.accept()
            return conn, ("unix", 0)  # http.server wants a (host, port) client address

    server = Server("", Handler, bind_and_activate=False)
    server.socket.close()  # the unbound one the base class made
    server.socket = sock
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def listening_socket(path: str | None) -> socket.socket:
    """systemd's socket (``LISTEN_FDS``) when there is one, else a new one at ``path``."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        return socket.socket(fileno=3)
    if path is None:
        raise SystemExit("certkit-authz: no socket from systemd: give --socket PATH")
    if os.path.exists(path):
        os.unlink(path)  # a stale socket of a previous run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # only root (dockerd) may talk to it
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(64)
    return sock


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="certkit-authz", description=__doc__.split("\n")[0])
    parser.add_argument("--policy", default=DEFAULT_POLICY, help="the policy file")
    parser.add_argument("--socket", help="listen here (without systemd socket activation)")
    parser.add_argument("--check", action="store_true", help="check the policy file and exit")
    args = parser.parse_args(argv)
    if args.check:
        try:
            p = load_policy(args.policy)
        except (OSError, PolicyError) as e:
            raise SystemExit(f"certkit-authz: {args.policy}: {e}") from None
        print(f"{args.policy}: OK ({len(p.revoked)} revoked, default role {p.default_role})")
        return
    serve(listening_socket(args.socket), Decider(args.policy))


if __name__ == "__main__":
    main()
