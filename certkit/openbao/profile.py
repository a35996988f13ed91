"""certkit's certificate profile as OpenBao roles and policies: named data, no I/O.

Three roles on the PKI mount, each signing CSRs only (``sign/<role>``; ``issue``, where
OpenBao makes the key, is never used):

- ``certkit-server``: a Docker host's certificate, EKU serverAuth, names as given.
- ``certkit-client``: a client certificate an admin issues (CI, bulk), EKU clientAuth.
- ``certkit-person``: a person's own certificate: the common name can only be the name
  they logged in with (an identity template), short lifetimes.

Every role: EC P-256 keys unless told otherwise, ``key_usage=DigitalSignature`` only
(OpenBao's default adds keyEncipherment, which RFC 5480 forbids on EC keys: pkilint's
``pkix.key_usage_value_prohibited_for_ec``), no common name copied into the SANs (a
client certificate carries none; a server's SANs are exactly the names asked for: a
request parameter, :data:`SIGN_DEFAULTS`, not a role field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import defaults

SERVER_ROLE = "certkit-server"
CLIENT_ROLE = "certkit-client"
PERSON_ROLE = "certkit-person"
ADMIN_POLICY = "certkit-admin"
PERSON_POLICY = "certkit-person"
CERT_AUTH_ROLE = "certkit-person"  # auth/cert/certs/<this>: renewal with the current cert

PERSON_OU = "certkit-person"
PERSON_TTL = "8h"  # what `certkit login` asks for by default
PERSON_MAX_TTL = "12h"  # the role's cap: a longer request is cut to this
ISSUER_TTL = f"{defaults.CA_DAYS * 24}h"

_KEYS = {
    "ec-p256": ("ec", 256), "ec-p384": ("ec", 384), "ed25519": ("ed25519", 0),
    "rsa-2048": ("rsa", 2048), "rsa-3072": ("rsa", 3072), "rsa-4096": ("rsa", 4096),
}  # fmt: skip


#: Sent with every ``sign/<role>`` request.
SIGN_DEFAULTS: dict[str, Any] = {"exclude_cn_from_sans": True, "format": "pem"}


def key_params(key_type: str) -> dict[str, Any]:
    """OpenBao's ``key_type``/``key_bits`` for a certkit key type."""
    kind, bits = _KEYS[key_type]
    return {"key_type": kind, "key_bits": bits}


def _common(key_type: str, eku: str, max_ttl: str) -> dict[str, Any]:
    return {
        **key_params(key_type),
        "key_usage": ["DigitalSignature"],  # no keyEncipherment on EC keys (pkilint error)
        "ext_key_usage": [eku],
        "server_flag": eku == "ServerAuth",
        "client_flag": eku == "ClientAuth",
        "code_signing_flag": False,
        "email_protection_flag": False,
        "use_csr_common_name": False,  # the request's common_name, checked against the role
        "use_csr_sans": False,
        "require_cn": True,
        "basic_constraints_valid_for_non_ca": True,  # CA:FALSE present, as certkit's leaves
        "max_ttl": max_ttl,
        "no_store": False,  # kept: listed, read back and revoked by serial
        "allowed_uri_sans": [],
        "allowed_other_sans": [],
    }


def server_role(key_type: str = defaults.DEFAULT_KEY_TYPE) -> dict[str, Any]:
    """Any host name or IP address, as ``issue-server`` checks them."""
    return {
        **_common(key_type, "ServerAuth", f"{defaults.SERVER_DAYS * 24}h"),
        "ttl": f"{defaults.SERVER_DAYS * 24}h",
        "allow_any_name": True,
        "enforce_hostnames": True,
        "allow_ip_sans": True,
        "allow_localhost": True,
        "allow_wildcard_certificates": False,
    }


def client_role(key_type: str = defaults.DEFAULT_KEY_TYPE) -> dict[str, Any]:
    """Any name (the admin's CI jobs and bulk clients); no SANs."""
    return {
        **_common(key_type, "ClientAuth", f"{defaults.CLIENT_DAYS * 24}h"),
        "ttl": f"{defaults.CLIENT_DAYS * 24}h",
        "allow_any_name": True,
        "enforce_hostnames": False,
        "allow_ip_sans": False,
    }


def person_role(
    accessors: list[str], key_type: str = defaults.DEFAULT_KEY_TYPE, max_ttl: str = PERSON_MAX_TTL
) -> dict[str, Any]:
    """Only the caller's own login name: one identity template per auth method's accessor.

    A template that does not resolve for the caller's entity (she logged in through the
    other method) is skipped by OpenBao, so the name is the one she logged in as.
    """
    return {
        **_common(key_type, "ClientAuth", max_ttl),
        "ttl": PERSON_TTL,
        "allow_any_name": False,
        "allowed_domains": [f"{{{{identity.entity.aliases.{a}.name}}}}" for a in accessors],
        "allowed_domains_template": True,
        "allow_bare_domains": True,  # the name itself, not a subdomain of it
        "allow_subdomains": False,
        "allow_glob_domains": False,
        "allow_wildcard_certificates": False,
        "allow_localhost": False,
        "enforce_hostnames": False,  # a person's name is not a DNS name
        "allow_ip_sans": False,
        # Marks a person's certificate: only these log in through the cert auth role
        # (a host's or a CI job's certificate from the same issuer cannot).
        "ou": [PERSON_OU],
    }


def admin_policy(mount: str) -> str:
    """Everything on the mount (issue for hosts and CI, revoke, tidy, rotate issuers)."""
    every = '["create", "read", "update", "delete", "list"]'
    return f'path "{mount}/*" {{\n  capabilities = {every}\n}}\n'


def person_policy(mount: str) -> str:
    """Sign one's own CSR with the person role; nothing else on the mount."""
    return (
        f'path "{mount}/sign/{PERSON_ROLE}" {{\n  capabilities = ["update"]\n}}\n'
        f'path "{mount}/issuer/+" {{\n  capabilities = ["read"]\n}}\n'
    )


def cert_auth_role(trust_pem: str) -> dict[str, Any]:
    """``auth/cert/certs/certkit-person``: log in with a person's current certificate.

    Only certificates of this issuer with the person OU.  Revocation reaches it through
    the CRL ``certkit team revoke`` pushes (auth/cert/crls), not OCSP: OpenBao asking
    its own responder on every renewal would need its listener's CA and add a round trip.
    The entity alias is the certificate's CN: the person role's template gives it back.
    """
    return {
        "certificate": trust_pem,
        "allowed_organizational_units": [PERSON_OU],
        "token_policies": [PERSON_POLICY],
        "token_ttl": "10m",
        "token_max_ttl": "10m",
    }


@dataclass(frozen=True)
class Roles:
    """The role names a CA's binding records (an adopted mount may use others)."""

    server: str = SERVER_ROLE
    client: str = CLIENT_ROLE
    person: str = PERSON_ROLE

    def for_kind(self, kind: str) -> str:
        return {"server": self.server, "client": self.client, "person": self.person}[kind]
