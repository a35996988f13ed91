"""Issuing through OpenBao: a key made here, a CSR to ``<mount>/sign/<role>``, never ``issue``.

:func:`issue_many` is :func:`certkit.ca.issue_many` for an OpenBao-backed CA, with the
same arguments and results (:class:`certkit.ca.Issued`), so a command that issues
through the CA store can issue through OpenBao unchanged.  Each ``cert.pem`` holds the
leaf and the issuer's chain up to (not including) the root: the docker CLI sends no
client certificate, and a strict client trusts no server, unless the path to the root
in ``ca.pem`` is complete.

Order of events: OpenBao signs first; the inventory records only what it signed, after
the certificate's files are on disk (a failed or refused request records nothing).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from .. import certs, defaults, files, paths
from ..ca import Issued, LeafRequest, Outputs, make_record
from ..certs import PrivateKey
from ..errors import OperationError, UsageError
from ..names import DOCKER_TLS_PORT, SubjectNames, common_name_for, looks_like_ip
from ..origins import ClientOrigin, ServerOrigin
from ..store import CAStore
from . import profile
from .binding import Binding, require_binding
from .client import Bao, settings

if TYPE_CHECKING:
    from ..server import ServerResult


def make_csr(key: PrivateKey, common_name: str) -> str:
    """A CSR (PEM) for ``key``: the subject only; the role decides every extension."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    algorithm = None if certs.key_type_of(key) == "ed25519" else hashes.SHA256()
    csr = builder.sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def ttl_for(days: int | None, not_after: dt.datetime | None) -> str:
    """OpenBao's ``ttl`` for a validity in days or up to a date (whole seconds, at least 1)."""
    if not_after is not None:
        seconds = (not_after - dt.datetime.now(dt.UTC)).total_seconds()
        return f"{max(1, math.ceil(seconds))}s"
    return f"{(days or 1) * 24}h"


@dataclass
class Signed:
    """OpenBao's answer: the leaf and the chain it returned (issuer first)."""

    cert: x509.Certificate
    chain_pem: bytes
    ca_chain: list[str] = field(default_factory=list)  # OpenBao's: the issuer .. the root

    @property
    def full_pem(self) -> bytes:
        """``cert.pem``: the leaf, then every intermediate (the root stays in ca.pem)."""
        return certs.cert_pem(self.cert) + self.chain_pem


def sign(
    bao: Bao,
    binding: Binding,
    role: str,
    key: PrivateKey,
    common_name: str,
    names: SubjectNames | None = None,
    ttl: str = profile.PERSON_TTL,
) -> Signed:
    """Have ``role`` sign a CSR for ``key``: the certificate OpenBao made (checked)."""
    body: dict[str, Any] = {
        **profile.SIGN_DEFAULTS,
        "csr": make_csr(key, common_name),
        "common_name": common_name,
        "ttl": ttl,
    }
    if names is not None:
        body["alt_names"] = ",".join(n for n in names.dns)
        body["ip_sans"] = ",".join(n for n in names.ips)
    data = bao.write(f"{binding.mount}/sign/{role}", body)["data"]
    cert = certs.load_cert(str(data["certificate"]).encode())
    if not certs.key_matches_cert(key, cert):
        raise OperationError(  # pragma: no cover - OpenBao signs the CSR's key
            f"OpenBao returned a certificate for another key on {binding.mount}/sign/{role}."
        )
    chain = [str(p).strip() + "\n" for p in data.get("ca_chain") or []]
    return Signed(cert, binding.chain_pem, chain)


def open_bao(binding: Binding, addr: str | None = None) -> Bao:
    """A client for ``binding``'s OpenBao: ``addr`` or BAO_ADDR, else the recorded addresses."""
    return Bao(settings(addr, recorded=binding.addresses))


def _names_split(names: SubjectNames | None) -> SubjectNames | None:
    if names is None:
        return None
    ips = tuple(n for n in names.all() if looks_like_ip(n))
    return SubjectNames(tuple(n for n in names.all() if n not in ips), ips)


#: Sign requests in flight at once for a batch (each is one HTTP round trip to OpenBao).
SIGN_WORKERS = 8


def _sign_all(
    bao: Bao,
    binding: Binding,
    items: list[tuple[LeafRequest, PrivateKey]],
    progress: Callable[[int], None] | None,
) -> list[Signed]:
    """Every CSR signed, in order; a batch's requests run :data:`SIGN_WORKERS` at a time,
    each worker with its own connection."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()

    def one(item: tuple[LeafRequest, PrivateKey]) -> Signed:
        req, key = item
        client = bao if len(items) == 1 else getattr(local, "bao", None)
        if client is None:
            client = local.bao = bao.clone()
        role = binding.roles.for_kind(req.kind)
        ttl = ttl_for(req.days, req.not_after)
        return sign(client, binding, role, key, req.common_name, _names_split(req.names), ttl)

    out: list[Signed] = []
    with ThreadPoolExecutor(max_workers=min(SIGN_WORKERS, len(items) or 1)) as pool:
        for result in pool.map(one, items):
            out.append(result)
            if progress is not None:
                progress(1)
    return out


def issue_many(
    store: CAStore,
    requests: list[LeafRequest],
    *,
    progress: Callable[[int], None] | None = None,
    outputs: Outputs | None = None,
    bao: Bao | None = None,
) -> list[Issued]:
    """Issue ``requests`` through the OpenBao binding of ``store`` and record them.

    Keys are made here; each goes to OpenBao only as a CSR.  Files first, inventory
    last, in one transaction, as :func:`certkit.ca.issue_many` does.
    """
    binding = require_binding(store)
    bao = bao or open_bao(binding)
    ca_pem = store.trust_bundle_pem()
    issuer = certs.load_cert(binding.chain[0].encode()) if binding.chain else store.load_cert()
    keys = [req.key or certs.generate_key(certs.check_key_type(req.key_type)) for req in requests]
    answers = _sign_all(bao, binding, list(zip(requests, keys, strict=True)), progress)
    built = list(zip(requests, keys, answers, strict=True))
    results: list[Issued] = []
    with store.transaction() as inv:
        writes: list[tuple[files.StrPath, bytes | str, int]] = []
        for req, key, signed in built:
            record = make_record(signed.cert, req.kind, req.name, certs.key_type_of(key), issuer,
                                 req.origin)  # fmt: skip
            record.installed = sorted(req.installed)
            inv.add(record)
            d = files.ensure_dir(store.issued_dir(record.serial))
            one = Issued(signed.cert, key, record, ca_pem, d / "cert.pem", d / "key.pem",
                         issuer_not_after=issuer.not_valid_after_utc)  # fmt: skip
            one.__dict__["cert_pem"] = signed.full_pem  # the leaf and its chain
            writes.append((one.cert_path, one.cert_pem, files.PUBLIC_FILE))
            writes.append((one.key_path, one.key_pem, files.PRIVATE_FILE))
            results.append(one)
        writes += outputs(results) if outputs is not None else []
        files.atomic_write_many(writes, keep_links=False)
    return results


def issue_server_files(
    store: CAStore, host: str, out: str, *, sans: list[str] | None = None,
    days: int = defaults.SERVER_DAYS, force: bool = False,
) -> ServerResult:  # fmt: skip
    """``issue-server HOST --out DIR`` through OpenBao: ca.pem, server-cert.pem (leaf and
    chain), server-key.pem (made here) in ``out``; recorded like any server certificate."""
    from ..server import ServerResult, check_out_dir, server_names, write_out

    primary, names = server_names(host, list(sans or []))
    certs.check_days(days)
    out_dir = check_out_dir(out, force=force)
    origin = ServerOrigin(sans=tuple(names.all()), days=days, out=str(out_dir))
    req = LeafRequest("server", primary, common_name_for(primary), names, days,
                      origin=origin, installed=[])  # fmt: skip
    (issued,) = issue_many(store, [req])
    result = ServerResult(primary, names.all(), DOCKER_TLS_PORT, False, issued.record.serial,
                          issued.record.not_after, issued.record.fingerprint)  # fmt: skip
    result.store_files = {"cert": str(issued.cert_path), "key": str(issued.key_path)}
    result.out_files = write_out(out_dir, issued.ca_pem, issued.cert_pem, issued.key_pem,
                                 force=force)  # fmt: skip
    from .. import placement

    placement.installed(store, issued.record.serial, list(result.out_files.values()))
    return result


def issue_client_files(
    store: CAStore, names: list[str], out: str, *, days: int = defaults.CLIENT_DAYS,
    force: bool = False, progress: Callable[[int], None] | None = None,
) -> list[Issued]:  # fmt: skip
    """Client certificates for ``names`` through OpenBao, each into ``out/NAME/`` as
    ca.pem, cert.pem (leaf and chain), key.pem; one ``names`` entry: into ``out`` itself."""
    certs.check_days(days)
    subdirs = names if len(names) > 1 else [""]
    base, found = files.check_output_subdirs(out, subdirs, paths.CLIENT_FILES)
    if found and not force:
        raise UsageError(f"{found[0]} already exists; pass --force to replace it.")
    requests = [
        LeafRequest("client", n, n, None, days, installed=[str(base / sub)],
                    origin=ClientOrigin(days=days, out=str(base / sub)))
        for n, sub in zip(names, subdirs, strict=True)
    ]  # fmt: skip

    def outputs(issued: list[Issued]) -> list[tuple[files.StrPath, bytes | str, int]]:
        files.make_output_subdirs(base, subdirs, paths.CLIENT_FILES)
        writes: list[tuple[files.StrPath, bytes | str, int]] = []
        for one, sub in zip(issued, subdirs, strict=True):
            d = base / sub
            writes += files.tls_files(d, paths.CLIENT_FILES, one.ca_pem, one.cert_pem, one.key_pem)
        return writes

    return issue_many(store, requests, progress=progress, outputs=outputs)
