"""``certkit ca crl``: defined here, registered on the ``ca`` group by :mod:`certkit.cli.ca`."""

from __future__ import annotations

import typer

from .output import CA_OPTION, JSON_OPTION, emit


def crl(
    out: str = typer.Option(None, "--out", help="Write the CRL (PEM) here instead of stdout."),
    days: int = typer.Option(7, "--days", help="Days until its nextUpdate."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
    ca: str = CA_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """A standard X.509 CRL of the CA's revoked certificates, signed by the CA.

    For consumers other than dockerd (nginx, stunnel, OpenBao, auditors);
    dockerd reads no CRL: certkit's plugin enforces revocation there.

    Example: certkit ca crl --out /etc/nginx/certkit.crl.pem
    """
    from ..files import PUBLIC_FILE, write_output_file
    from ..revoke import crl_pem
    from ..store import CAStore

    pem, listed = crl_pem(CAStore(ca), days)
    if out is None and not json_out:
        typer.echo(pem.decode(), nl=False)
        return
    path = None
    if out is not None:
        path = write_output_file(out, pem, PUBLIC_FILE, force=force)
    data = {"path": str(path) if path else None, "revoked": listed, "crl": pem.decode()}
    emit(json_out, data, [f"Wrote the CRL of CA {ca!r} ({listed} revoked) to {path}."])
