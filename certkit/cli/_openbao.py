"""Rendering of ``certkit init-ca --issuer openbao`` (called from :mod:`.ca`; no commands)."""

from __future__ import annotations

from ..errors import UsageError
from .output import emit


def init_openbao(
    ca: str,
    cn: str | None,
    key_type: str,
    issuer: str,
    mount: str | None,
    create: bool,
    parent: str | None,
    json_out: bool,
) -> None:
    """Bind CA ``ca`` to an OpenBao PKI mount and print what was made or adopted."""
    if issuer != "openbao":
        raise UsageError(f"--issuer must be local or openbao, not {issuer!r}.")
    if not mount:
        raise UsageError("--issuer openbao needs --mount MOUNT (e.g. --mount pki-docker).")
    from ..openbao.setup import init_openbao_ca

    r = init_openbao_ca(ca, mount, create=create, parent=parent, common_name=cn, key_type=key_type)
    flag = "" if ca == "default" else f" --ca {ca}"
    made = "; ".join(r.created) if r.created else "nothing: the mount and its issuer were adopted"
    emit(
        json_out,
        r.to_json(),
        [
            f"CA {r.name!r} issues through OpenBao ({', '.join(r.addresses)}, mount {r.mount}).",
            f"Issuer: {r.subject}"
            + (" (intermediate)" if r.intermediate else " (root)")
            + f", valid until {r.not_after[:10]}; its key never leaves OpenBao.",
            f"Created: {made}. Roles, policies and the cert login are certkit's profile.",
            f"Trust anchor: {r.cert_path}",
            f"Next: certkit team issue-server HOST{flag} --out DIR; people run "
            "certkit login --host HOST (docs/team.md)",
        ],
    )
