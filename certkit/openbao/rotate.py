"""``rotate-ca start|finish`` on a CA bound to an OpenBao PKI mount whose issuer is a root.

The same overlap as a local rotation (:mod:`certkit.rotation` decides the steps and
lists what still depends on the old CA; this module does what changes in OpenBao):

- ``start``: a new root issuer is made in the mount (its key never leaves OpenBao);
  certkit's three roles are pinned to it (``issuer_ref``), so every certificate signed
  from now on is the new issuer's; the ``cert`` login trusts both roots, so people keep
  renewing; the store keeps the old root and binding in ``previous/``, ``bundle.pem`` is
  the new root then the old one, ``ca.pem`` and ``openbao.json`` the new ones.
- ``finish`` (before the store archives ``previous/``): the mount's default issuer
  becomes the new one, the roles follow the default again, the ``cert`` login trusts
  the new root only.  The old issuer stays in the mount (its CRL is still served; certkit
  deletes nothing).

An intermediate issuer (``init-ca --parent-mount``) is refused: its certificates chain
to the same root, so nobody's trust changes; rotate the root's CA instead, or make the
next intermediate in OpenBao and run ``init-ca`` again.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from .. import certs, defaults, files
from ..errors import UsageError
from ..store import CAStore
from . import profile
from .binding import BINDING_FILE, Binding, binding_path, require_binding, write_binding
from .client import Bao
from .issue import open_bao


def start_in_openbao(
    store: CAStore,
    *,
    key_type: str | None = None,
    common_name: str | None = None,
    days: int = defaults.CA_DAYS,
) -> str:
    """Make the next root issuer in the mount and switch certkit's roles to it; the store
    then trusts both (``bundle.pem``).  Returns the new issuer's id."""
    binding = require_binding(store)
    if binding.chain:
        raise UsageError(
            f"CA {store.name!r} issues from an intermediate in {binding.mount!r}: its "
            "certificates chain to the same root after a new intermediate, so nothing to "
            "roll out; rotate the root's CA (rotate-ca start --ca ROOT), or make the new "
            "intermediate in OpenBao and run certkit init-ca --issuer openbao again."
        )
    old = store.load_cert()
    kt = certs.check_key_type(key_type or certs.cert_key_type(old))
    certs.check_days(days)
    now = dt.datetime.now(dt.UTC)
    base = re.sub(r" \d{4}-\d{2}-\d{2} \d{6}$", "", certs.common_name(old))[:40]
    cn = common_name or f"{base} {now:%Y-%m-%d %H%M%S}"  # the old name, with the day
    bao = open_bao(binding)
    data = bao.write(f"{binding.mount}/root/generate/internal", {
        "common_name": cn, **profile.key_params(kt), "ttl": f"{days * 24}h",
        "issuer_name": f"certkit-{now:%Y%m%d%H%M%S}",
    })["data"]  # fmt: skip
    new_id, new_pem = str(data["issuer_id"]), str(data["certificate"]).strip() + "\n"
    _pin_roles(bao, binding, new_id)
    old_pem = store.cert_pem()
    _trust_in_cert_login(bao, binding, new_pem + old_pem.decode())
    _keep_previous(store, old_pem, new_pem.encode())
    write_binding(store, Binding(binding.addresses, binding.mount, new_id, [], binding.roles,
                                 binding.auth), new_pem.encode())  # fmt: skip
    _record(store, certs.load_cert(new_pem.encode()), old)
    return new_id


def finish_in_openbao(store: CAStore) -> None:
    """The mount's default issuer becomes the new one, the roles follow it again, and the
    ``cert`` login trusts the new root only (run before the store archives ``previous/``)."""
    binding = require_binding(store)
    bao = open_bao(binding)
    bao.write(f"{binding.mount}/config/issuers", {"default": binding.issuer_id})
    _pin_roles(bao, binding, "default")
    _trust_in_cert_login(bao, binding, store.cert_pem().decode())


def _pin_roles(bao: Bao, binding: Binding, issuer_ref: str) -> None:
    """Point certkit's roles at ``issuer_ref`` (a write replaces a role: read it first)."""
    for kind in ("server", "client", "person"):
        path = f"{binding.mount}/roles/{binding.roles.for_kind(kind)}"
        role: dict[str, Any] = bao.read(path)["data"]
        role["issuer_ref"] = issuer_ref
        bao.write(path, role)


def _trust_in_cert_login(bao: Bao, binding: Binding, trust_pem: str) -> None:
    """The renewal login accepts people's certificates of every root in ``trust_pem``."""
    path = f"auth/{binding.auth.get('cert', 'cert')}/certs/{profile.CERT_AUTH_ROLE}"
    role: dict[str, Any] = bao.read(path)["data"]
    role["certificate"] = trust_pem
    bao.write(path, role)


def _keep_previous(store: CAStore, old_pem: bytes, new_pem: bytes) -> None:
    """``previous/`` (the old root and binding) first, then ``bundle.pem`` (new + old)."""
    old_binding = binding_path(store).read_bytes()
    with store.lock():
        if store.rotation_under_way():
            raise UsageError(f"A rotation of CA {store.name!r} started meanwhile; see its status.")
        files.ensure_dir(store.previous_dir)
        files.atomic_write_many(
            [
                (store.previous_dir / BINDING_FILE, old_binding, files.PRIVATE_FILE),
                (store.previous_dir / "ca.pem", old_pem, files.PUBLIC_FILE),
            ]
        )
        files.atomic_write(store.bundle_path, new_pem + old_pem, files.PUBLIC_FILE)


def _record(store: CAStore, new: Any, old: Any) -> None:
    """The new root in the inventory; the old one superseded by it (``list`` shows both)."""
    from ..ca import make_record
    from ..origins import CAOrigin

    record = make_record(new, "ca", store.name, certs.cert_key_type(new), new)
    old_fp = certs.fingerprint(old)
    record.origin = CAOrigin(rotated_from=old_fp)
    with store.transaction() as inv:
        for r in inv.find(kind="ca", active=True):
            if r.fingerprint == old_fp:
                r.superseded_by = record.serial
        inv.add(record)
