"""Bulk issuance: many server or client certificates in one process.

A fleet of Docker hosts, or a hundred CI runners, should not mean a hundred
``certkit`` runs.  Everything here goes through :func:`certkit.ca.issue_many`
(one CA key load, one inventory update for the whole batch), which writes the
``--out`` files and the store's copies as one durable batch
(:func:`certkit.files.atomic_write_many`: every file atomic, two ``syncfs``
calls for the lot where the kernel allows) before the inventory commits: a
crash or a failed write leaves files nobody recorded, never a record whose
files are missing.

Input is validated completely before anything is written: a bad line in a
hosts file, a duplicate name or an existing output file stops the run with
the line number and nothing changed on disk.

>>> result = issue_clients(numbered_names("runner", 100), out="clients")  # doctest: +SKIP
>>> result.items[0].dir  # doctest: +SKIP
'/home/me/clients/runner-1'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import files
from .certs import Kind, check_days, check_key_type
from .defaults import CLIENT_DAYS, DEFAULT_KEY_TYPE, SERVER_DAYS
from .errors import OperationError, UsageError
from .names import SubjectNames, common_name_for, looks_like_ip, parse_names
from .origins import ClientOrigin, LeafOrigin, ServerOrigin
from .paths import CLIENT_FILES, DEFAULT_CA, SERVER_FILES

if TYPE_CHECKING:
    from .ca import Issued, Outputs

StrPath = files.StrPath
Progress = Callable[[int], None]
"""Called with how many more certificates are done (for a progress bar)."""

MAX_BATCH = 100_000
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")


# ---------------------------------------------------------------- input


@dataclass(frozen=True)
class HostEntry:
    """One line of a hosts file: the host and every name its certificate covers."""

    host: str
    names: SubjectNames
    line: int


def check_client_name(name: str) -> str:
    """Return ``name`` if it can name a client certificate and its directory."""
    if not _CLIENT_NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a valid client name: use up to 64 letters, digits and "
            "'_.@+-', starting with a letter or digit."
        )
    return name


def numbered_names(prefix: str, count: int) -> list[str]:
    """``PREFIX-1`` ... ``PREFIX-COUNT``, validated."""
    if not 1 <= count <= MAX_BATCH:
        raise UsageError(f"--count must be between 1 and {MAX_BATCH}, got {count}.")
    check_client_name(f"{prefix}-{count}")
    return [f"{prefix}-{i}" for i in range(1, count + 1)]


def _lines(text: str) -> list[tuple[int, list[str]]]:
    """Non-empty lines as (line number, words); ``#`` starts a comment, commas separate too."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split("#", 1)[0].replace(",", " ").split()
        if words:
            out.append((number, words))
    return out


def _read(path: StrPath) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a UTF-8 text file.") from None
    except OSError as e:
        raise UsageError(f"Cannot read {path}: {e.strerror}.") from None


def _check_size(entries: Sequence[object], source: str) -> None:
    if not entries:
        raise UsageError(f"{source} lists no names; put one per line.")
    if len(entries) > MAX_BATCH:
        raise UsageError(f"{source} lists {len(entries)} names; split it (at most {MAX_BATCH}).")


def parse_hosts(text: str, source: str = "hosts file") -> list[HostEntry]:
    """Parse a hosts file: one host per line, then optional extra SANs.

    Blank lines and ``#`` comments are skipped; names are separated by spaces
    or commas.  Every name is validated like ``issue-server`` does, and a host
    listed twice is refused, with the line numbers in the message::

        docker1.example.com  10.0.0.11        # the first name is the host
        docker2.example.com, docker2, 10.0.0.12
    """
    entries: list[HostEntry] = []
    seen: dict[str, int] = {}
    for number, words in _lines(text):
        try:
            names = parse_names(words)
        except UsageError as e:
            raise UsageError(f"{source}, line {number}: {e.message}") from None
        host = names.ips[0] if looks_like_ip(words[0]) else names.dns[0]
        if host in seen:
            raise UsageError(
                f"{source}, line {number}: {host} is already on line {seen[host]}; "
                "list each host once."
            )
        seen[host] = number
        entries.append(HostEntry(host, names, number))
    _check_size(entries, source)
    return entries


def parse_client_names(text: str, source: str = "names file") -> list[str]:
    """Parse a names file: one client name per line, ``#`` comments, blank lines skipped."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, words in _lines(text):
        if len(words) > 1:
            raise UsageError(
                f"{source}, line {number}: one client name per line, got {len(words)} words."
            )
        try:
            name = check_client_name(words[0])
        except UsageError as e:
            raise UsageError(f"{source}, line {number}: {e.message}") from None
        if name in seen:
            raise UsageError(
                f"{source}, line {number}: {name} is already on line {seen[name]}; "
                "list each name once."
            )
        seen[name] = number
        names.append(name)
    _check_size(names, source)
    return names


def read_hosts(path: StrPath) -> list[HostEntry]:
    """:func:`parse_hosts` on a file (errors name the file)."""
    return parse_hosts(_read(path), str(path))


def read_client_names(path: StrPath) -> list[str]:
    """:func:`parse_client_names` on a file (errors name the file)."""
    return parse_client_names(_read(path), str(path))


# ---------------------------------------------------------------- output


@dataclass
class BulkItem:
    """One certificate of a batch and where its files went (no key material)."""

    name: str
    serial: str
    sans: list[str]
    not_after: str
    fingerprint: str
    dir: str | None = None
    files: list[str] = field(default_factory=list)


@dataclass
class BulkResult:
    """What a bulk run issued: ``to_json()`` is the ``--json`` document."""

    ca: str
    kind: str
    key_type: str
    out: str | None
    items: list[BulkItem]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "ca": self.ca,
            "kind": self.kind,
            "key_type": self.key_type,
            "count": len(self.items),
            "out": self.out,
            "items": [item.__dict__ for item in self.items],
        }


def host_dir_name(host: str) -> str:
    """A directory name for a host (``*.a.com`` -> ``_wildcard.a.com``, ``::1`` -> ``--1``)."""
    return host.replace("*", "_wildcard").replace(":", "-")


@dataclass
class _Plan:
    """A validated batch: what to issue and where each item's files go."""

    kind: Kind
    names: list[str]
    subject_names: list[SubjectNames | None]
    out: StrPath | None  # --out as given; None: the certificates stay in the store
    subdirs: list[str]  # each item's directory under --out ("": --out itself)
    file_names: tuple[str, str, str]
    replace_hint: str = "pass --force to replace them, or choose another --out"
    base: Path | None = None  # --out, absolute, once checked

    def dirs(self) -> list[Path | None]:
        return [self.base / s if self.base else None for s in self.subdirs]


def _check_targets(plan: _Plan, force: bool) -> None:
    """Refuse links, foreign directories and (unless ``force``) existing files: before
    anything is issued.  --out is walked once for the whole batch."""
    if plan.out is None:
        return
    plan.base, clashes = files.check_output_subdirs(plan.out, plan.subdirs, plan.file_names)
    if clashes and not force:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise UsageError(f"{clashes[0]} already exists{more}; {plan.replace_hint}.")


def _origin(kind: Kind, names: SubjectNames | None, d: Path | None, days: int) -> LeafOrigin:
    """What renewal needs to issue it again the same way and rewrite its files.

    A server's origin is what ``issue-server --out`` records, so ``certkit
    renew server HOST`` rewrites ``OUT/HOST/`` as it would after that.
    """
    out = str(d) if d is not None else None
    if kind == "server":
        sans = tuple(names.all()) if names is not None else ()
        return ServerOrigin(sans=sans, days=days, out=out)
    return ClientOrigin(days=days, out=out)


def _outputs(plan: _Plan) -> Outputs:
    """The --out files of a batch, for :func:`certkit.ca.issue_many` to write with the
    store's copies (their directories are made when it asks: after signing)."""

    def outputs(issued: list[Issued]) -> list[tuple[StrPath, bytes | str, int]]:
        if plan.base is None:
            return []
        # An existing --out keeps its mode; temp files a killed run left there go.
        files.make_output_subdirs(plan.base, plan.subdirs, plan.file_names)
        writes: list[tuple[StrPath, bytes | str, int]] = []
        for one, d in zip(issued, plan.dirs(), strict=True):
            assert d is not None
            writes += files.tls_files(d, plan.file_names, one.ca_pem, one.cert_pem, one.key_pem)
        return writes

    return outputs


def _run(
    plan: _Plan,
    *,
    ca: str,
    days: int,
    key_type: str,
    force: bool,
    root: Path | None,
    progress: Progress | None,
) -> BulkResult:
    from .ca import LeafRequest, issue_many, require_ca
    from .store import CAStore

    kt = check_key_type(key_type)
    check_days(days)
    _check_targets(plan, force)
    store = require_ca(CAStore(ca, root))
    dirs = plan.dirs()
    requests = [
        LeafRequest(
            plan.kind,
            name,
            common_name_for(name),
            names,
            days,
            kt,
            origin=_origin(plan.kind, names, d, days),
            installed=[str(d / f) for f in plan.file_names] if d else [],
        )
        for name, names, d in zip(plan.names, plan.subject_names, dirs, strict=True)
    ]
    try:
        issued = issue_many(store, requests, progress=progress, outputs=_outputs(plan))
    except OSError as e:
        raise OperationError(
            f"Writing {e.filename or 'the certificate files'} failed ({e.strerror}), so no "
            "certificate was recorded: fix that and run the command again (with --force if "
            "it left files in --out)."
        ) from None
    items: list[BulkItem] = []
    for one, d in zip(issued, dirs, strict=True):
        rec = one.record
        item = BulkItem(rec.name, rec.serial, rec.sans, rec.not_after, rec.fingerprint)
        if d is not None:
            item.dir = str(d)
            item.files = [str(d / f) for f in plan.file_names]
        items.append(item)
    return BulkResult(ca, plan.kind, kt, str(plan.base) if plan.base else None, items)


def issue_clients(
    names: Sequence[str],
    *,
    out: StrPath,
    ca: str = DEFAULT_CA,
    days: int = CLIENT_DAYS,
    key_type: str = DEFAULT_KEY_TYPE,
    flat: bool = False,
    force: bool = False,
    root: Path | None = None,
    progress: Progress | None = None,
) -> BulkResult:
    """Issue one client certificate (EKU clientAuth) per name into ``out``.

    Each client gets ``OUT/NAME/{ca.pem,cert.pem,key.pem}`` (key 0600,
    directory 0700): point ``DOCKER_CERT_PATH`` at it.  With ``flat`` (one
    name only) the three files go straight into ``out``.
    """
    names = [check_client_name(n) for n in names]
    _check_size(names, "The list of clients")
    if len(set(names)) != len(names):
        raise UsageError("The list of clients names someone twice; list each name once.")
    if flat and len(names) != 1:
        raise ValueError("flat output is for a single client")
    subdirs = [""] if flat else names
    plan = _Plan("client", names, [None] * len(names), out, subdirs, CLIENT_FILES)
    return _run(
        plan, ca=ca, days=days, key_type=key_type, force=force, root=root, progress=progress
    )


def _check_claims(entries: Sequence[HostEntry], ca: str, *, moved: bool) -> None:
    """No name for two hosts, in the file or against other hosts' active certificates
    (:mod:`certkit.nameclaims`; ``moved``: --force)."""
    from .nameclaims import check_names_free
    from .store import CAStore

    owner: dict[str, str] = {}
    for e in entries:
        for name in e.names.all():
            if owner.setdefault(name, e.host) != e.host:
                raise UsageError(
                    f"{name!r} is listed for {owner[name]!r} and for {e.host!r}: a name "
                    "belongs to one host; list it once."
                )
    store = CAStore(ca)
    for e in entries:
        check_names_free(store, e.host, e.names.all(), moved=moved)


def issue_servers(
    entries: Sequence[HostEntry],
    *,
    out: StrPath | None = None,
    ca: str = DEFAULT_CA,
    days: int = SERVER_DAYS,
    key_type: str = DEFAULT_KEY_TYPE,
    force: bool = False,
    root: Path | None = None,
    progress: Progress | None = None,
) -> BulkResult:
    """Issue one server certificate (EKU serverAuth, SAN = every name) per entry.

    Without ``out`` the certificates stay in the store only; with ``out`` each
    host gets ``OUT/HOST/{ca.pem,server-cert.pem,server-key.pem}`` to copy to
    that host.
    """
    _check_claims(entries, ca, moved=force)
    hosts = [e.host for e in entries]
    subdirs = [host_dir_name(h) for h in hosts]
    if out is not None and len(set(subdirs)) != len(subdirs):
        raise UsageError("Two hosts map to the same --out subdirectory; list each host once.")
    plan = _Plan(
        "server",
        hosts,
        [e.names for e in entries],
        out,
        subdirs,
        SERVER_FILES,
        "choose another --out, or move the old files away first",
    )
    return _run(
        plan, ca=ca, days=days, key_type=key_type, force=force, root=root, progress=progress
    )
