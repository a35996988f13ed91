"""``certkit init-ca --issuer openbao``: make (or adopt) a PKI mount certkit can issue from.

Idempotent: the mount and its issuer are created only with ``create`` and only when
missing (an existing issuer is adopted, never replaced); roles, policies, the ``cert``
auth role and the mount's URLs are certkit's and are written every time.  The store then
records the binding (:mod:`.binding`).  Needs an admin token (``BAO_TOKEN``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import certs, defaults
from ..errors import UsageError
from ..store import CAStore
from . import profile
from .binding import Binding, read_binding, write_binding
from .client import Bao, Missing, settings


@dataclass
class SetupResult:
    """What ``init-ca --issuer openbao`` found and did."""

    name: str
    mount: str
    addresses: list[str]
    issuer_id: str
    subject: str
    not_after: str
    cert_path: str
    created: list[str] = field(default_factory=list)  # what did not exist before
    intermediate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "issuer": "openbao", **self.__dict__}


def init_openbao_ca(
    name: str,
    mount: str,
    *,
    create: bool = False,
    parent: str | None = None,
    common_name: str | None = None,
    key_type: str = defaults.DEFAULT_KEY_TYPE,
    addr: str | None = None,
) -> SetupResult:
    """Bind the store's CA ``name`` to the PKI mount ``mount`` and give it certkit's profile.

    ``create`` makes what is missing: the mount, its issuer (a root; with ``parent``, the
    mount of an existing issuer, an intermediate that one signs), the ``userpass`` and
    ``cert`` auth methods.  Nothing of an existing issuer is changed.
    """
    _check_mount_name(mount)
    if parent is not None:
        _check_mount_name(parent)
    kt = certs.check_key_type(key_type)
    store = CAStore(name)
    if store.cert_path.exists() and read_binding(store) is None:
        raise UsageError(
            f"CA {name!r} already exists in the store with its own key; choose another "
            "--ca name for the OpenBao-backed CA."
        )
    config = settings(addr)
    bao = Bao(config)
    created: list[str] = []
    _ensure_mount(bao, mount, create, created)
    issuer_id = _ensure_issuer(bao, mount, create, parent, common_name or f"certkit CA {name}",
                               kt, created)  # fmt: skip
    bao.write(f"{mount}/config/urls", _urls(config.addresses[0], mount))
    accessors = _ensure_auth(bao, create, created)
    chain, anchor = _chain(bao, mount, issuer_id)
    _write_roles_and_policies(bao, mount, kt, accessors, anchor + "".join(chain))
    binding = Binding(list(config.addresses), mount, issuer_id, chain)
    write_binding(store, binding, (anchor.strip() + "\n").encode())
    issuer = certs.load_cert((chain[0] if chain else anchor).encode())
    _record_ca(store, issuer)
    return SetupResult(
        name, mount, list(config.addresses), issuer_id, issuer.subject.rfc4514_string(),
        issuer.not_valid_after_utc.isoformat(), str(store.cert_path), created, bool(chain),
    )  # fmt: skip


def _check_mount_name(mount: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", mount):
        raise UsageError(f"{mount!r} is not a mount name: letters, digits, '_', '-', '.'.")


def _ensure_mount(bao: Bao, mount: str, create: bool, created: list[str]) -> None:
    table = bao.read("sys/mounts")
    found = (table.get("data") or table).get(f"{mount}/")
    if found is not None:
        kind = found.get("type")
        if kind != "pki":
            raise UsageError(f"The OpenBao mount {mount!r} is a {kind} engine, not pki.")
        return
    if not create:
        raise UsageError(f"OpenBao has no mount {mount!r}; pass --create to make it.")
    bao.write(f"sys/mounts/{mount}", {"type": "pki", "description": "certkit: Docker mTLS",
                                      "config": {"max_lease_ttl": profile.ISSUER_TTL}})  # fmt: skip
    created.append(f"mount {mount}")


def _default_issuer(bao: Bao, mount: str) -> str | None:
    data = bao.read(f"{mount}/config/issuers").get("data") or {}
    return str(data["default"]) if data.get("default") else None


def _ensure_issuer(
    bao: Bao, mount: str, create: bool, parent: str | None, cn: str, kt: str, created: list[str]
) -> str:
    found = _default_issuer(bao, mount)
    if found is not None:
        return found
    if not create:
        raise UsageError(f"The mount {mount!r} has no issuer; pass --create to make one.")
    params = {"common_name": cn, **profile.key_params(kt), "issuer_name": "certkit",
              "ttl": profile.ISSUER_TTL}  # fmt: skip
    if parent is None:
        data = bao.write(f"{mount}/root/generate/internal", params)["data"]
        created.append(f"root issuer {cn!r}")
        return str(data["issuer_id"])
    if _default_issuer(bao, parent) is None:
        raise UsageError(f"The parent mount {parent!r} has no issuer to sign an intermediate.")
    csr = bao.write(f"{mount}/intermediate/generate/internal", params)["data"]["csr"]
    signed = bao.write(f"{parent}/root/sign-intermediate", {
        "csr": csr, "common_name": cn, "ttl": profile.ISSUER_TTL, "max_path_length": 0,
        "use_csr_values": False, "key_usage": ["CertSign", "CRLSign"],
    })["data"]  # fmt: skip
    full = signed["certificate"].strip() + "\n" + "\n".join(signed.get("ca_chain") or [])
    imported = bao.write(f"{mount}/intermediate/set-signed", {"certificate": full})["data"]
    issuer_id = str(imported["imported_issuers"][0])
    bao.write(f"{mount}/config/issuers", {"default": issuer_id})
    created.append(f"intermediate issuer {cn!r} signed by {parent}")
    return issuer_id


def _urls(addr: str, mount: str) -> dict[str, Any]:
    """AIA, CRL and OCSP URLs in every certificate (the ``cert`` auth method asks OCSP)."""
    base = f"{addr}/v1/{mount}"
    return {"issuing_certificates": [f"{base}/ca"], "crl_distribution_points": [f"{base}/crl"],
            "ocsp_servers": [f"{base}/ocsp"]}  # fmt: skip


def _ensure_auth(bao: Bao, create: bool, created: list[str]) -> list[str]:
    """The accessors of the ``userpass`` and ``cert`` auth methods (enabled when missing),
    then those of every ``jwt`` or ``oidc`` method already enabled."""
    methods = bao.read("sys/auth")
    table = methods.get("data") or methods
    accessors = []
    for kind in ("userpass", "cert"):
        if f"{kind}/" not in table:
            if not create:
                raise UsageError(f"OpenBao has no {kind} auth method; pass --create to enable it.")
            bao.write(f"sys/auth/{kind}", {"type": kind})
            created.append(f"auth method {kind}")
            table = bao.read("sys/auth").get("data") or {}
        accessors.append(str(table[f"{kind}/"]["accessor"]))
    # JWT/OIDC logins the admin enabled (certkit makes none): the person role names them too.
    accessors += [str(m["accessor"]) for m in table.values()
                  if isinstance(m, dict) and m.get("type") in ("jwt", "oidc")]  # fmt: skip
    return accessors


def _chain(bao: Bao, mount: str, issuer_id: str) -> tuple[list[str], str]:
    """The issuer and its parents without the root, and the root (the trust anchor)."""
    data = bao.read(f"{mount}/issuer/{issuer_id}")["data"]
    pems = [p.strip() + "\n" for p in (data.get("ca_chain") or [data["certificate"]])]
    chain = [p for p in pems if not _self_signed(p)]
    roots = [p for p in pems if _self_signed(p)]
    if not roots:
        raise UsageError(
            f"The issuer of {mount!r} has no root in its chain; import the root into the "
            "mount (its ca_chain) so certkit knows what dockerd must trust."
        )
    return chain, roots[0]


def _self_signed(pem: str) -> bool:
    cert = certs.load_cert(pem.encode())
    return cert.issuer == cert.subject and certs.signed_by(cert, cert)


def _write_roles_and_policies(
    bao: Bao, mount: str, kt: str, accessors: list[str], trust: str
) -> None:
    roles = {
        profile.SERVER_ROLE: profile.server_role(kt),
        profile.CLIENT_ROLE: profile.client_role(kt),
        profile.PERSON_ROLE: profile.person_role(accessors, kt),
    }
    for role, params in roles.items():
        bao.write(f"{mount}/roles/{role}", params)
    _merge_policy(bao, profile.ADMIN_POLICY, profile.admin_policy(mount))
    _merge_policy(bao, profile.PERSON_POLICY, profile.person_policy(mount))
    bao.write(f"auth/cert/certs/{profile.CERT_AUTH_ROLE}", profile.cert_auth_role(trust))


def _merge_policy(bao: Bao, name: str, rules: str) -> None:
    """Policy ``name`` with ``rules`` added: the policies are named, not per mount, so a
    second OpenBao-backed CA in the same cluster adds its mount instead of replacing the
    first one's (whose people could not log in any more)."""
    path = f"sys/policies/acl/{name}"
    try:
        have = str(bao.read(path)["data"].get("policy") or "")
    except Missing:
        have = ""
    if rules.strip() in have:
        return
    bao.write(path, {"policy": (have.rstrip() + "\n" if have.strip() else "") + rules})


def _record_ca(store: CAStore, issuer: Any) -> None:
    """The issuer in the inventory as a ``ca`` record, once (``list`` shows it)."""
    from ..ca import make_record

    record = make_record(issuer, "ca", store.name, certs.cert_key_type(issuer), issuer)
    with store.transaction() as inv:
        if record.serial not in inv:
            inv.add(record)
