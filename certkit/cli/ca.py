"""``certkit init-ca`` and ``certkit ca show|list``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ..defaults import CA_DAYS
from ..keys import BACKENDS
from .crl import crl
from .output import CA_OPTION, JSON_OPTION, KEY_TYPE_OPTION, emit
from .root import app

if TYPE_CHECKING:
    from ..ca import CAInfo

ca_app = typer.Typer(help="Inspect and back up the CAs in the store.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")
ca_app.command("crl")(crl)  # certkit.cli.crl (revocation)


@app.command("init-ca")
def init_ca(
    ca: str = CA_OPTION,
    cn: str = typer.Option(
        None, "--cn", help="Common name of the CA (default: certkit CA NAME DATE KEY-ID)."
    ),
    key_type: str = KEY_TYPE_OPTION,
    days: int = typer.Option(CA_DAYS, "--days", help="Validity in days."),
    encrypt: bool = typer.Option(
        False,
        "--encrypt",
        help="Encrypt the CA key with a passphrase ($CERTKIT_CA_PASSPHRASE or asked twice).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing CA (the old one is kept aside, not deleted)."
    ),
    key_uri: str = typer.Option(
        None,
        "--key-uri",
        help="Keep the key outside the store, held by the backend of the URI's scheme "
        "(made there if missing; the store keeps the URI): "
        + "; ".join(example for scheme, (_, example) in BACKENDS.items() if scheme != "file")
        + ".",
    ),
    permit: list[str] = typer.Option(
        None,
        "--permit",
        metavar="DNS_SUFFIX_OR_CIDR",
        help="Let the CA sign only for names under this DNS suffix or in this network "
        "(repeatable; a critical name constraint every client enforces). Default: any name.",
    ),
    issuer: str = typer.Option(
        "local",
        "--issuer",
        help="local (a key in the store) or openbao (a PKI mount: "
        "$BAO_ADDR, $BAO_TOKEN; see docs/team.md).",
    ),
    mount: str = typer.Option(None, "--mount", help="--issuer openbao: the PKI mount."),
    create: bool = typer.Option(False, "--create", help="--issuer openbao: make what is missing."),
    parent: str = typer.Option(
        None, "--parent-mount", help="--issuer openbao --create: an intermediate under it."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create a CA in the private certkit store.

    Example: certkit init-ca --ca prod --encrypt

    Example: certkit init-ca --ca corp --permit corp.example.com --permit 10.0.0.0/8

    Example: certkit init-ca --key-uri
    'pkcs11:token=certkit;object=ca-key?module-path=/usr/lib/softhsm/libsofthsm2.so'
    """
    if issuer != "local":
        from ._openbao import init_openbao

        return init_openbao(ca, cn, key_type, issuer, mount, create, parent, json_out)
    from ..ca import init_ca as _init_ca

    info = _init_ca(
        ca, cn, key_type, days, encrypt=encrypt, force=force, key_uri=key_uri, permit=permit
    )
    flag = "" if ca == "default" else f" --ca {ca}"
    encrypted = ", key encrypted" if info.encrypted else ""
    emit(
        json_out,
        info.to_json(),
        [
            f"Created CA {info.name!r} ({info.key_type}{encrypted}),"
            f" valid until {info.not_after[:10]}.",
            f"CA certificate: {info.cert_path}",
            f"Subject: {info.subject}   (the name clients' errors show)",
        ]
        + _key_lines(info)
        + _permit_lines(info)
        + ([f"Previous CA kept in {info.replaced}"] if info.replaced else [])
        + [f"Next: certkit issue-server HOST{flag} --install   (on the Docker host)"],
    )


def _key_lines(info: CAInfo) -> list[str]:
    if info.key_uri is None:
        return []
    how = "generated" if info.key_created else "already there, used as is"
    lives = f", {info.key_lives}" if info.key_lives else ""
    return [f"CA key ({how}{lives}): {info.key_uri}"]


def _permit_lines(info: CAInfo) -> list[str]:
    if not info.permitted:
        return []
    return [f"Signs only for: {', '.join(info.permitted)} (name constraints)"]


@ca_app.command("show")
def show(ca: str = CA_OPTION, json_out: bool = JSON_OPTION) -> None:
    """Subject, fingerprint, key type, validity and path of a CA.

    Example: certkit ca show --ca prod
    """
    from ..ca import describe_ca
    from ..openbao.binding import describe as describe_openbao
    from ..store import CAStore

    if (bound := describe_openbao(CAStore(ca))) is not None:
        return emit(json_out, *bound)
    info = describe_ca(CAStore(ca).require())
    emit(
        json_out,
        info.to_json(),
        [
            f"CA:          {info.name}",
            f"Subject:     {info.subject}",
            f"Key:         {info.key_type}{' (encrypted)' if info.encrypted else ''}",
            f"Key lives:   {info.key_uri or info.key_path}"
            + (f" ({info.key_lives})" if info.key_lives else ""),
            f"Names:       {', '.join(info.permitted) or 'any (no name constraints)'}",
            f"Valid:       {info.not_before[:19]} .. {info.not_after[:19]}",
            f"SHA-256:     {info.fingerprint}",
            f"Certificate: {info.cert_path}",
        ]
        + (
            [f"Bundle:      {info.bundle_path} (CA rotation under way)"] if info.bundle_path else []
        ),
    )


@ca_app.command("list")
def list_(json_out: bool = JSON_OPTION) -> None:
    """The CAs in the store.

    Example: certkit ca list
    """
    from ..ca import list_cas
    from ..paths import store_root

    cas = list_cas()
    lines = [
        f"{c.name:16} unreadable: {c.error}"
        if c.error
        else f"{c.name:16} {c.key_type:9} until {c.not_after[:10]}  {c.subject}"
        + (f"  ({c.key_short})" if c.key_short else "")
        for c in cas
    ]
    if not cas:
        lines = [f"No CA in {store_root()}. Next: certkit init-ca"]
    emit(json_out, [c.to_json() for c in cas], lines)


@ca_app.command("backup")
def backup(
    out: str = typer.Option(..., "--out", help="The tar file to write (.tar.gz or .tgz: gzip)."),
    ca: str = CA_OPTION,
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Back up one CA: its folder as a tar file (0600) with a consistent copy of the inventory.

    The CA key goes in as it is in the store (encrypted if it is).
    Restore: tar -xf FILE -C "$CERTKIT_HOME/cas" (with no CA of that name there).

    Example: certkit ca backup --ca prod --out prod-ca.tar
    """
    from pathlib import Path

    from ..backup import backup_ca
    from ..store import CAStore

    result = backup_ca(CAStore(ca), Path(out), force=force)
    key = (
        "encrypted" if result.key_encrypted else "NOT encrypted: keep the file as safe as the store"
    )
    if result.key_on_token:
        key = "held by its key backend (the file holds only its URI)"
    emit(
        json_out,
        result.to_json(),
        [
            f"Backed up CA {result.ca!r} ({result.records} record"
            f"{'' if result.records == 1 else 's'}) to {result.path} (0600); "
            f"the CA key inside is {key}.",
            f'Restore: tar -xf {result.path} -C "$CERTKIT_HOME/cas" (or the store\'s cas/ folder)',
        ],
    )
