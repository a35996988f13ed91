"""The store's record that a CA is OpenBao-backed: ``cas/<name>/openbao.json``.

Such a CA has no key in the store.  Its folder holds ``ca.pem`` (the trust anchor:
the root of the issuer's chain, what dockerd's ``tlscacert`` and a context's ``ca.pem``
hold) and ``openbao.json`` (0600)::

    {"version": 1, "addresses": ["https://bao1:8200", ...], "mount": "pki-docker",
     "issuer_id": "...", "roles": {"server": ..., "client": ..., "person": ...},
     "chain": ["-----BEGIN CERTIFICATE-----...issuer...", ...intermediates, no root],
     "auth": {"userpass": "userpass", "cert": "cert"}}

``chain`` is what every leaf's ``cert.pem`` carries after the leaf: the docker CLI sends
no client certificate unless it can present the path up to the root dockerd trusts.
Nothing here imports hvac or talks to OpenBao.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import files
from ..errors import UsageError
from ..store import OPENBAO_FILE, CAStore
from .profile import Roles

BINDING_FILE = OPENBAO_FILE


@dataclass
class Binding:
    """Where an OpenBao-backed CA issues: addresses, mount, issuer, roles, auth mounts."""

    addresses: list[str]
    mount: str
    issuer_id: str
    chain: list[str]  # PEM: the issuer first, then its parents up to (not including) the root
    roles: Roles = field(default_factory=Roles)
    auth: dict[str, str] = field(default_factory=lambda: {"userpass": "userpass", "cert": "cert"})

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "addresses": self.addresses,
            "mount": self.mount,
            "issuer_id": self.issuer_id,
            "roles": self.roles.__dict__,
            "chain": self.chain,
            "auth": self.auth,
        }

    @property
    def chain_pem(self) -> bytes:
        """The intermediates to append to each leaf (empty when the issuer is the root)."""
        return "".join(c.strip() + "\n" for c in self.chain).encode()

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Binding:
        try:
            return cls(
                addresses=[str(a) for a in doc["addresses"]],
                mount=str(doc["mount"]),
                issuer_id=str(doc["issuer_id"]),
                chain=[str(c) for c in doc.get("chain", [])],
                roles=Roles(**doc.get("roles", {})),
                auth={str(k): str(v) for k, v in doc.get("auth", {}).items()},
            )
        except (KeyError, TypeError, AttributeError):
            raise UsageError(f"{where} is not a certkit OpenBao binding; restore it.") from None


def binding_path(store: CAStore) -> Path:
    return store.dir / BINDING_FILE


def is_openbao(store: CAStore) -> bool:
    """True when ``store``'s CA issues through OpenBao (cheap: one stat)."""
    return binding_path(store).exists()


def read_binding(store: CAStore) -> Binding | None:
    """The binding of ``store``'s CA, or None when the CA is a local one."""
    path = binding_path(store)
    text = files.read_text(path)
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        raise UsageError(f"{path} is not valid JSON; restore it from a backup.") from None
    return Binding.from_json(doc, str(path))


def require_binding(store: CAStore) -> Binding:
    found = read_binding(store)
    if found is None:
        raise UsageError(
            f"CA {store.name!r} is not OpenBao-backed; create one with "
            "`certkit init-ca --issuer openbao --mount MOUNT`."
        )
    return found


def write_binding(store: CAStore, binding: Binding, anchor_pem: bytes) -> None:
    """``ca.pem`` and ``openbao.json`` in one durable batch, under the store's lock."""
    store.ensure_dirs()
    doc = json.dumps(binding.to_json(), indent=2) + "\n"
    with store.lock():
        files.atomic_write_many(
            [
                (binding_path(store), doc.encode(), files.PRIVATE_FILE),
                (store.cert_path, anchor_pem, files.PUBLIC_FILE),
            ]
        )


def describe(store: CAStore) -> tuple[dict[str, Any], list[str]] | None:
    """What ``ca show`` prints for an OpenBao-backed CA (JSON, lines), None for a local CA."""
    binding = read_binding(store)
    if binding is None:
        return None
    from .. import certs

    anchor = store.load_cert()
    issuer = certs.load_cert(binding.chain[0].encode()) if binding.chain else anchor
    doc = {
        "name": store.name,
        "issuer": "openbao",
        "subject": issuer.subject.rfc4514_string(),
        "root_subject": anchor.subject.rfc4514_string(),
        "fingerprint": certs.fingerprint(issuer),
        "key_type": certs.cert_key_type(issuer),
        "not_before": issuer.not_valid_before_utc.isoformat(),
        "not_after": issuer.not_valid_after_utc.isoformat(),
        "cert_path": str(store.cert_path),
        **{k: v for k, v in binding.to_json().items() if k not in ("chain", "version")},
    }
    lines = [
        f"CA:          {store.name} (issued by OpenBao: no key in the store)",
        f"OpenBao:     {', '.join(binding.addresses)}  mount {binding.mount}",
        f"Issuer:      {doc['subject']} ({binding.issuer_id})",
        f"Root:        {doc['root_subject']}" + ("" if binding.chain else " (the issuer itself)"),
        f"Key:         {doc['key_type']} (in OpenBao, it never leaves it)",
        f"Valid:       {doc['not_before'][:19]} .. {doc['not_after'][:19]}",
        f"SHA-256:     {doc['fingerprint']}",
        f"Roles:       server {binding.roles.server}, client {binding.roles.client}, "
        f"person {binding.roles.person}",
        f"Trust:       {store.cert_path}",
    ]
    return doc, lines
