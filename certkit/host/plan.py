"""Planning an install: the host's files in, every file to write out, without any I/O.

:func:`plan_install` turns a host's :class:`HostFiles` (read locally or over
SSH), the install options and the certificate PEMs into an
:class:`InstallPlan` (every file to write, the backup to make, the unified
diff), so a dry run and every target compute exactly the same merge.

Two ways to open TCP exist and must never be mixed (``hosts`` set both as a
``-H`` flag and in daemon.json stops dockerd from starting, moby#25471):

* ``systemd``: a drop-in repeats the unit's full ExecStart and adds
  ``-H tcp://LISTEN:PORT``; daemon.json gets the TLS keys only;
* ``daemon-json``: ``hosts`` goes into daemon.json and, when the unit passes
  ``-H``, a drop-in repeats its ExecStart without any ``-H``;
* ``socket``: where dockerd is socket-activated (``-H fd://`` only, a
  ``docker.socket``), a docker.socket drop-in adds ``ListenStream=ADDR:PORT``
  and daemon.json gets the TLS keys only (dockerd wraps systemd's TCP sockets
  in TLS; systemd holds the port while dockerd restarts).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import difflib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .. import files
from ..errors import UsageError
from ..names import DOCKER_PLAIN_PORT, DOCKER_TLS_PORT, check_listen, tcp_host
from ..paths import RootlessPaths, SystemPaths
from .daemonjson import config_or_empty, edit_daemon_json, json_hosts, parse_daemon_json
from .firewall import FirewallPlan, plan_firewall
from .hostfiles import HostFiles
from .options import METHODS, InstallOptions
from .rootlessplan import restart_command, rootless_dropin
from .systemd import (
    TLS_KEYS,
    base_execstart,
    dropin_text,
    effective_execstart,
    expanded,
    flag_conflicts,
    flag_hosts,
    flag_keys,
    flag_value,
    is_opts_var,
    is_ours,
    plan_socket_dropin,
    service_values,
    socket_activated,
)

RESTART_NOTE = "a restart stops running containers unless live-restore is on in daemon.json"


def hosts_conflict(files_: HostFiles) -> str | None:
    """A sentence with the fix when an option (``hosts``, the TLS keys, any other) is both a
    flag of docker.service and a daemon.json key: dockerd refuses to start then."""
    args = effective_execstart(files_)
    if not args:
        return None
    args = expanded(args, files_)
    config = config_or_empty(files_.daemon_json)
    keys = flag_conflicts(args, set(config))
    if keys == ["hosts"]:
        flags = [h for _, _, h in flag_hosts(args)]
        return (
            f"hosts is set both as a -H flag of docker.service ({', '.join(flags)}) and in "
            f"daemon.json ({', '.join(json_hosts(config))}), so dockerd refuses to start: "
            'remove "hosts" from daemon.json, or use a drop-in whose ExecStart has no -H '
            "(certkit issue-server HOST --install --method daemon-json writes one)"
        )
    return _conflict_sentence(keys) if keys else None


def _conflict_sentence(keys: list[str]) -> str:
    return (
        f"{', '.join(keys)} {'is' if len(keys) == 1 else 'are'} set both as a flag of "
        'docker.service and in daemon.json, so dockerd refuses to start ("specified both as '
        'a flag and in the configuration file"): remove '
        f"{'it' if len(keys) == 1 else 'them'} from the unit's ExecStart (or DOCKER_OPTS) or "
        "from daemon.json"
    )


flag_conflict = hosts_conflict  # the same check, under the name of what it finds


def _tcp_port(host: str, tls: bool) -> int | None:
    """The port of a ``tcp://`` host (dockerd's default when none), None for other schemes."""
    if not host.startswith("tcp://"):
        return None
    rest = host[len("tcp://") :].split("/", 1)[0]
    m = re.match(r"^(?:\[[^\]]*\]|[^:]*)(?::(\d+))?$", rest)
    if m and m.group(1):
        return int(m.group(1))
    return DOCKER_TLS_PORT if tls else DOCKER_PLAIN_PORT


def _tls_on(config: dict[str, Any], args: list[str]) -> bool:
    if "tlsverify" in config or config.get("tls") is True:
        return True
    flag = flag_value(args, "tlsverify") or flag_value(args, "tls")
    return flag is not None and flag.lower() not in ("false", "0")


def _configured_hosts(files_: HostFiles) -> tuple[list[str], bool]:
    """Every host dockerd is configured with (-H flags, then daemon.json), and whether TLS is on."""
    config = config_or_empty(files_.daemon_json)
    args = expanded(effective_execstart(files_) or [], files_)
    return [*(h for _, _, h in flag_hosts(args)), *json_hosts(config)], _tls_on(config, args)


def tcp_ports(files_: HostFiles) -> list[int]:
    """The TCP ports dockerd is configured to listen on (-H flags and daemon.json ``hosts``)."""
    hosts, tls = _configured_hosts(files_)
    return sorted({port for h in hosts if (port := _tcp_port(h, tls)) is not None})


def insecure_listeners(files_: HostFiles) -> list[str]:
    """TCP hosts configured without TLS (from daemon.json and -H flags), e.g. ``tcp://0.0.0.0:2375``.

    With TLS off every TCP host is plain HTTP.  With TLS on, dockerd serves
    TLS on every TCP host, but one on port 2375 is still listed: whoever uses
    it expects plain HTTP and breaks.
    """
    hosts, tls = _configured_hosts(files_)
    out: list[str] = []
    for host in hosts:
        port = _tcp_port(host, tls)
        if port is not None and (not tls or port == DOCKER_PLAIN_PORT) and host not in out:
            out.append(host)
    return out


@dataclass
class FileChange:
    """One file an install writes: its full new content and mode."""

    path: str
    content: bytes
    mode: int
    dir_mode: int = files.PUBLIC_DIR  # for its directory, when it has to be created


@dataclass
class InstallPlan:
    """Everything an install would do, computed without touching a file.

    ``changes`` lists only files whose content (or mode) differs from what is
    there; ``previous`` holds what each of them held before (None: absent),
    for rolling back.  ``backup`` is ``(daemon.json, its timestamped copy)``
    when daemon.json changes.
    """

    method: str
    changes: list[FileChange]
    backup: tuple[str, str] | None
    backup_content: bytes | None
    backup_mode: int
    previous: dict[str, bytes | None]
    warnings: list[str]
    daemon_json_path: str
    dropin_path: str
    tcp_host: str
    listen: str  # the address and port of tcp_host, checked after a restart
    port: int
    cert_paths: dict[str, str]  # "ca"/"cert"/"key" -> installed path
    old_daemon_json: str | None = None
    new_daemon_json: str | None = None
    old_dropin: str | None = None
    new_dropin: str | None = None
    firewall: FirewallPlan | None = None  # the rules to add (--allow-from)
    firewall_warnings: list[str] = field(default_factory=list)  # also in ``warnings``
    restart_command: str = "sudo systemctl restart docker"  # for "restart needed" messages
    # --method socket: certkit's docker.socket drop-in (None: not this method).
    socket_dropin_path: str | None = None
    old_socket_dropin: str | None = None
    new_socket_dropin: str | None = None
    socket_offer: bool = False  # another method on a socket-activated unit: worth offering
    reload_first: bool = False  # --keep-containers: SIGHUP for live-restore before a restart
    container_notes: list[str] = field(default_factory=list)  # what a restart does to them

    @property
    def restarts_socket(self) -> bool:
        """True when docker.socket must be restarted too (its drop-in changes)."""
        return any(c.path == self.socket_dropin_path for c in self.changes)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def restart_needed(self) -> bool:
        """dockerd reads every file an install changes only at start."""
        return self.changed

    @property
    def written(self) -> list[str]:
        return [c.path for c in self.changes]

    def diff(self) -> str:
        """Unified diff of daemon.json and the drop-in ("" when neither changes)."""
        out: list[str] = []
        for path, old, new in (
            (self.daemon_json_path, self.old_daemon_json, self.new_daemon_json),
            (self.dropin_path, self.old_dropin, self.new_dropin),
            (self.socket_dropin_path or "", self.old_socket_dropin, self.new_socket_dropin),
        ):
            if new is None or old == new:
                continue
            out.extend(
                difflib.unified_diff(
                    (old or "").splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=path if old is not None else "/dev/null",
                    tofile=path,
                )
            )
        return "".join(line if line.endswith("\n") else line + "\n" for line in out)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "changed": self.changed,
            "restart_needed": self.restart_needed,
            "written": self.written,
            "backup": self.backup[1] if self.backup else None,
            "daemon_json": self.daemon_json_path,
            "dropin": self.new_dropin and self.dropin_path,
            "socket_dropin": self.new_socket_dropin and self.socket_dropin_path,
            "tcp_host": self.tcp_host,
            "cert_paths": self.cert_paths,
            "warnings": self.warnings,
            "firewall": self.firewall.to_json() if self.firewall else None,
            "socket_method_offered": self.socket_offer,
            "containers": self.container_notes,
        }


def _choose_method(requested: str, current: list[str] | None, files_: HostFiles) -> str:
    if requested not in METHODS:
        raise UsageError(f"--method {requested!r} is not one of: {', '.join(METHODS)}.")
    if requested != "auto":
        return requested
    if any(is_ours(p) for p, _ in files_.socket_dropins):
        return "socket"
    # Decided on the effective command line, certkit's own drop-in included, so that a
    # second install keeps the method of the first.
    if current and flag_hosts(current):
        return "systemd"
    return "daemon-json"


def _without(args: list[str], spans: list[tuple[int, int, str]], drop: set[str]) -> list[str]:
    removed = {i for start, end, host in spans if host in drop for i in range(start, end)}
    return [a for i, a in enumerate(args) if i not in removed]


def _check_later_dropins(files_: HostFiles, dropin: str) -> None:
    """Refuse when a drop-in read after certkit.conf sets ExecStart: it would replace ours."""
    for path, text in files_.dropins:
        if PurePosixPath(path).name > PurePosixPath(dropin).name and service_values(
            text, "ExecStart"
        ):
            raise UsageError(
                f"{path} sets ExecStart and is read after certkit's drop-in, so it would "
                "undo the install: rename it to sort before certkit.conf (e.g. 00-override.conf; "
                "certkit keeps its flags) or remove its ExecStart lines, then run again."
            )


@dataclass
class _Host:
    """A host's configuration, parsed once for planning."""

    config: dict[str, Any]
    base: list[str] | None  # ExecStart without certkit's drop-in
    base_spans: list[tuple[int, int, str]]  # its -H flags
    tls_spans: list[tuple[int, int, str]]  # its flags setting a key of TLS_KEYS
    opts_hosts: list[str]  # -H flags coming from $DOCKER_OPTS
    json_hosts: list[str]

    @property
    def flag_hosts(self) -> list[str]:
        return [h for _, _, h in self.base_spans]

    @property
    def carried(self) -> list[str]:
        """The unit's listeners worth keeping in daemon.json (fd:// only exists under -H)."""
        return [h for h in self.flag_hosts if not h.startswith("fd://")]


def _parse_host(files_: HostFiles, dj_path: str) -> _Host:
    config = parse_daemon_json(files_.daemon_json or "", dj_path)
    if "hosts" in config and not isinstance(config["hosts"], list | str):
        raise UsageError(f'{dj_path}: "hosts" must be a list of addresses; fix it, then run again.')
    base = base_execstart(files_)
    opts = [a for a in (base or []) if is_opts_var(a)][:1]
    opts_hosts = [h for _, _, h in flag_hosts(["dockerd", *expanded(opts, files_)])]
    tls = [span for span in flag_keys(base or []) if span[2] in TLS_KEYS]
    return _Host(config, base, flag_hosts(base or []), tls, opts_hosts, json_hosts(config))


def _listeners_to_drop(
    files_: HostFiles, host: _Host, method: str, options: InstallOptions, ours: str, sp: SystemPaths
) -> tuple[set[str], list[str]]:
    """TCP hosts the install removes (same port as ours; insecure ones when asked) + warnings."""
    warnings: list[str] = []
    if method == "socket":
        before: list[str] = []  # the unit's -H is fd:// only (checked by _socket_plan)
    elif method == "systemd":
        before = host.flag_hosts + host.opts_hosts
    else:
        before = host.json_hosts or host.carried
    replaced = [h for h in before if h != ours and _tcp_port(h, True) == options.port]
    warnings += [f"{h} used port {options.port}: replaced by {ours}" for h in replaced]
    insecure = [h for h in insecure_listeners(files_) if h != ours and h not in replaced]
    if insecure and not (options.keep_insecure or options.remove_insecure):
        raise UsageError(
            f"{', '.join(insecure)} serves the Docker API without TLS: pass --remove-insecure to "
            "remove it (2376 becomes the one TLS port), or --keep-insecure to keep it (with TLS "
            "on it then speaks TLS too, so its plain-HTTP users break)."
        )
    if insecure and options.remove_insecure:
        stuck = [h for h in insecure if h in host.opts_hosts]
        if stuck:
            raise UsageError(
                f"{', '.join(stuck)} comes from DOCKER_OPTS in {sp.default_docker}: remove it "
                "there, then run again."
            )
        warnings.append(f"removing {', '.join(insecure)} (it serves the Docker API without TLS)")
        return {*replaced, *insecure}, warnings
    if insecure:
        warnings.append(
            f"keeping {', '.join(insecure)}: with TLS on it serves TLS too, so plain-HTTP users of "
            "it break"
        )
    return set(replaced), warnings


def _systemd_args(
    host: _Host, sp: SystemPaths, dj_path: str, ours: str, drop: set[str]
) -> list[str]:
    """The drop-in's ExecStart: the unit's own, every flag kept, plus ``-H ours``."""
    if host.base is None:
        raise UsageError(
            "no docker.service with an ExecStart was found "
            f"({', '.join(map(str, sp.unit_files))}): use --method daemon-json."
        )
    if host.json_hosts:
        raise UsageError(
            f'{dj_path} sets "hosts", so -H flags in the unit would stop dockerd from '
            "starting: use --method daemon-json (keeps hosts in daemon.json), or move "
            "those hosts out of daemon.json first."
        )
    # The unit's TLS flags move out: daemon.json gets those keys (both would stop dockerd).
    args = _without(host.base, host.base_spans + host.tls_spans, drop | set(TLS_KEYS))
    present = [h for _, _, h in flag_hosts(args)] + host.opts_hosts
    if ours in present:
        return args
    if not present:  # dockerd listened on its default socket only: keep it
        args = [*args, "-H", f"unix://{sp.docker_socket}"]
    return [*args, "-H", ours]


def _daemon_json_hosts(host: _Host, sp: SystemPaths, ours: str, drop: set[str]) -> list[str]:
    """daemon.json's new ``hosts``: existing ones (or the unit's), a local socket, ours."""
    if host.opts_hosts:
        raise UsageError(
            f"DOCKER_OPTS in {sp.default_docker} passes -H ({', '.join(host.opts_hosts)}), "
            "which cannot be combined with hosts in daemon.json: remove -H from DOCKER_OPTS "
            "or use --method systemd."
        )
    hosts = [h for h in (host.json_hosts or host.carried) if h not in drop]
    # dockerd listens only where hosts says: keep local docker working.
    if not any(h.startswith(("unix://", "fd://", "npipe://")) for h in hosts):
        hosts.insert(0, f"unix://{sp.docker_socket}")
    if ours not in hosts:
        hosts.append(ours)
    return hosts


def _tls_settings(config: dict[str, Any], cert_paths: dict[str, str]) -> list[str]:
    """Set the four TLS keys in ``config``; a warning for each other path replaced."""
    warnings = []
    for key, name in (("tlscacert", "ca"), ("tlscert", "cert"), ("tlskey", "key")):
        old = config.get(key)
        if old and old != cert_paths[name]:
            warnings.append(f"{key} was {old}: now {cert_paths[name]}")
    config["tlsverify"] = True
    config["tlscacert"] = cert_paths["ca"]
    config["tlscert"] = cert_paths["cert"]
    config["tlskey"] = cert_paths["key"]
    return warnings


_MODES = {"ca": files.PUBLIC_FILE, "cert": files.PUBLIC_FILE, "key": files.PRIVATE_FILE}


def _utf8(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _listeners(
    files_: HostFiles, host: _Host, method: str, sp: SystemPaths, ours: str, drop: set[str]
) -> tuple[dict[str, Any], list[str] | None]:
    """daemon.json's new content (TLS keys still to add) and the drop-in's ExecStart, if any."""
    new_config = dict(host.config)
    if method == "systemd":
        return new_config, _systemd_args(host, sp, str(sp.daemon_json), ours, drop)
    if method == "socket":  # certkit's service drop-in, if any, keeps only the unit's fd://
        if not any(is_ours(p) for p, _ in files_.dropins):
            return new_config, None
        return new_config, _without(host.base or [], host.tls_spans, set(TLS_KEYS))
    hosts = _daemon_json_hosts(host, sp, ours, drop)
    if hosts != host.json_hosts or isinstance(host.config.get("hosts"), str):
        new_config["hosts"] = hosts
    dropin_args: list[str] | None = None
    # certkit's drop-in with an ExecStart (a rootless one may only set the port's Environment)
    if (
        host.base_spans
        or host.tls_spans
        or any(is_ours(p) and service_values(t, "ExecStart") for p, t in files_.dropins)
    ):
        dropin_args = _without(
            host.base or [],
            host.base_spans + host.tls_spans,
            set(host.flag_hosts) | set(TLS_KEYS),
        )
    return new_config, dropin_args


def _backup(dj_path: str, now: dt.datetime | None) -> tuple[str, str]:
    """daemon.json and the name of its timestamped copy."""
    # Microseconds: two installs within one second must not overwrite the first backup.
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return (dj_path, f"{dj_path}.certkit-backup-{stamp}")


def _changes(
    wanted: list[tuple[str, bytes | None, bytes | None, int, int]],
) -> tuple[list[FileChange], dict[str, bytes | None]]:
    """The files that change: ``(path, old, new, mode, dir_mode)``, new None meaning untouched."""
    changes: list[FileChange] = []
    previous: dict[str, bytes | None] = {}
    for path, old, new, mode, dir_mode in wanted:
        if new is not None and old != new:
            changes.append(FileChange(path, new, mode, dir_mode))
            previous[path] = old
    return changes, previous


def plan_install(
    files_: HostFiles,
    paths: SystemPaths,
    options: InstallOptions,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    now: dt.datetime | None = None,
) -> InstallPlan:
    """Compute the whole install (no I/O): certificate files, daemon.json, drop-in, backup.

    Raises UsageError, before anything is written, for an invalid daemon.json,
    an existing ``hosts`` conflict the chosen method cannot resolve, or an
    insecure TCP listener the user did not say to keep or remove.  Planning
    against a host that already has this install yields no change.
    """
    if options.keep_insecure and options.remove_insecure:
        raise UsageError("--keep-insecure and --remove-insecure exclude each other: pick one.")
    listen = check_listen(options.listen, options.port)
    ours = tcp_host(listen, options.port)
    dj_path = str(paths.daemon_json)
    host = _parse_host(files_, dj_path)
    method = _choose_method(options.method, effective_execstart(files_), files_)
    socket_dropin = plan_socket_dropin(
        files_, host.base, host.json_hosts, paths, (listen, options.port), method
    )
    drop, warnings = _listeners_to_drop(files_, host, method, options, ours, paths)
    new_config, dropin_args = _listeners(files_, host, method, paths, ours, drop)
    cert_paths = {name: str(path) for name, path in paths.cert_files.items()}
    warnings += _tls_settings(new_config, cert_paths)
    container_notes = _keep_containers(files_, options, new_config)
    warnings += container_notes
    after = dropin_args if dropin_args is not None else host.base
    conflicts = flag_conflicts(expanded(after or [], files_), set(new_config))
    if conflicts:
        raise UsageError(
            _conflict_sentence(conflicts).replace("refuses", "would refuse")
            + ", then run again; nothing was issued."
        )
    firewall, fw_warnings = plan_firewall(
        files_.firewall, options.allow_from, options.port, options.firewall_added
    )
    warnings += fw_warnings
    dropin_path = str(paths.dropin)
    if dropin_args is not None:
        _check_later_dropins(files_, dropin_path)
    old_dropin = next((t for p, t in files_.dropins if is_ours(p)), None)
    new_dropin = dropin_text(dropin_args) if dropin_args is not None else None
    if isinstance(paths, RootlessPaths):  # RootlessKit must publish the port (docs/rootless.md)
        new_dropin = rootless_dropin(new_dropin, files_, listen, options, json_hosts(new_config))
    new_json = _new_daemon_json(files_.daemon_json, host.config, new_config)
    old_mode = files_.daemon_json_mode if files_.daemon_json_mode is not None else files.PUBLIC_FILE
    old_json = files_.daemon_json.encode() if files_.daemon_json is not None else None
    pems = {"ca": ca_pem, "cert": cert_pem, "key": key_pem}
    replaced_ca = _check_trust(files_.cert_files.get(cert_paths["ca"]), ca_pem, options)
    changes, previous = _changes(
        [
            *(
                (path, files_.cert_files.get(path), pems[name], _MODES[name], files.PRIVATE_DIR)
                for name, path in cert_paths.items()
            ),
            (dj_path, old_json, _utf8(new_json), old_mode, files.PUBLIC_DIR),
            (
                dropin_path,
                _utf8(old_dropin),
                _utf8(new_dropin),
                files.PUBLIC_FILE,
                files.PUBLIC_DIR,
            ),
            (
                str(paths.socket_dropin),
                _utf8(socket_dropin[0]),
                _utf8(socket_dropin[1]),
                files.PUBLIC_FILE,
                files.PUBLIC_DIR,
            ),
        ]
    )

    backup = _backup(dj_path, now) if new_json is not None and old_json is not None else None
    if replaced_ca is not None:  # --replace-ca: the CA the host trusted is kept beside
        # Beside daemon.json's backups, not in the certificate directory (certkit's alone).
        stamp = _backup(dj_path, now)[1].rsplit("-", 1)[1]
        kept = str(PurePosixPath(dj_path).with_name(f"ca.pem.certkit-replaced-{stamp}"))
        changes.append(FileChange(kept, replaced_ca, files.PUBLIC_FILE, files.PUBLIC_DIR))
        previous[kept] = None
        warnings.append(f"The CA the host trusted before is kept as {kept}.")
    return InstallPlan(
        method=method,
        changes=changes,
        backup=backup,
        backup_content=old_json if backup else None,
        backup_mode=old_mode,
        previous=previous,
        warnings=warnings,
        daemon_json_path=dj_path,
        dropin_path=dropin_path,
        tcp_host=ours,
        listen=listen,
        port=options.port,
        cert_paths=cert_paths,
        old_daemon_json=files_.daemon_json,
        new_daemon_json=new_json,
        old_dropin=old_dropin,
        new_dropin=new_dropin,
        firewall=firewall,
        firewall_warnings=fw_warnings,
        restart_command=restart_command(paths),
        socket_dropin_path=str(paths.socket_dropin) if method == "socket" else None,
        old_socket_dropin=socket_dropin[0],
        new_socket_dropin=socket_dropin[1],
        container_notes=container_notes,
        reload_first=options.keep_containers and files_.live_restore is not True,
        socket_offer=method != "socket"
        and bool(files_.socket_units)
        and socket_activated(expanded(host.base or [], files_)),
    )


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def _ders(pem: bytes) -> set[bytes]:
    """The DER of every certificate in a PEM bundle (stdlib only: planning stays light)."""
    out = set()
    for block in _PEM_CERT.findall(pem):
        with contextlib.suppress(ValueError):
            out.add(base64.b64decode(b"".join(block.split()), validate=True))
    return out


def _check_trust(old: bytes | None, new: bytes, options: InstallOptions) -> bytes | None:
    """Refuse to swap the CA a host trusts for an unrelated one (a second store, another
    admin's CA): every client of the old CA would be locked out.  Returns the old bundle
    when ``--replace-ca`` allows the swap (it is then kept beside), else None."""
    old_ders, new_ders = _ders(old or b""), _ders(new)
    if not old_ders or not new_ders or old_ders & new_ders:
        # Nothing there yet; a plan made only to check the host (no CA yet: setup); or the
        # same CA (a rotation's bundle overlaps too).
        return None
    if options.replace_ca:
        return old
    raise UsageError(
        f"The host trusts another CA ({_subjects(old_ders)}) than the one issuing this "
        "certificate: its clients would all be locked out. Use the CA store that set the "
        "host up, or pass --replace-ca to switch the host to this CA (the old CA file is "
        "kept beside it); nothing was issued."
    )


def _subjects(ders: set[bytes]) -> str:
    from cryptography import x509

    names = []
    for der in sorted(ders):
        try:
            names.append(x509.load_der_x509_certificate(der).subject.rfc4514_string())
        except ValueError:
            names.append("an unreadable certificate")
    return "; ".join(names)


def _new_daemon_json(
    text: str | None, config: dict[str, Any], new_config: dict[str, Any]
) -> str | None:
    """daemon.json's new text, or None when the file exists and its settings stay."""
    if new_config == config and text is not None:
        return None
    return edit_daemon_json(text, config, new_config)


def _keep_containers(
    files_: HostFiles, options: InstallOptions, new_config: dict[str, Any]
) -> list[str]:
    """``--keep-containers``: live-restore into daemon.json (refused under swarm, where
    dockerd does not allow it); without it, the warning that a restart stops containers."""
    if options.keep_containers:
        if files_.swarm == "active":
            raise UsageError(
                "--keep-containers needs live-restore, which dockerd refuses on a swarm node "
                "(docker info: Swarm active): drop --keep-containers; nothing was issued."
            )
        if new_config.get("live-restore") is not True:
            new_config["live-restore"] = True
            return ["live-restore turned on (daemon.json, then SIGHUP) before the restart"]
        return []
    if files_.running and not live_restore_on(files_) and files_.live_restore is not True:
        return [
            f"the restart stops {files_.running} running container"
            f"{'s' if files_.running != 1 else ''} (live-restore is off): --keep-containers "
            "keeps them running"
        ]
    return []


def live_restore_on(files_: HostFiles) -> bool:
    """True when dockerd keeps containers running across its restart."""
    config = config_or_empty(files_.daemon_json)
    flag = flag_value(expanded(effective_execstart(files_) or [], files_), "live-restore")
    return bool(config.get("live-restore")) or (flag is not None and flag != "false")


NEXT_PREFIX = "next-"  # the new pair's transitional names during a swap


@dataclass
class WriteSteps:
    """The order an install writes in, so dockerd never sees a cert and key that differ.

    ``writes`` are done one rename at a time, in order; ``cleanup`` is removed
    afterwards; ``previous`` is what each written path held (None: absent),
    for rolling back.
    """

    writes: list[FileChange]
    cleanup: list[str]
    previous: dict[str, bytes | None]


def write_steps(plan: InstallPlan) -> WriteSteps:
    """The safe order of ``plan``'s writes.

    At every instant the certificate and key daemon.json names form a
    matching pair.  A first install writes the files, then daemon.json.  When
    daemon.json already names a pair the install replaces, the new pair is
    first written under transitional names (``next-server-cert.pem``...),
    daemon.json is switched to them, the final files are replaced, daemon.json
    is switched back, and the transitional files are removed.
    """
    previous = dict(plan.previous)
    old = config_or_empty(plan.old_daemon_json)
    changed = {c.path: c for c in plan.changes}
    named = {str(old.get("tlscert")), str(old.get("tlskey"))}
    if not named & set(changed):
        return WriteSteps(list(plan.changes), [], previous)
    dj = plan.daemon_json_path
    final_text = plan.new_daemon_json if plan.new_daemon_json is not None else plan.old_daemon_json
    final = config_or_empty(final_text)
    mode = changed[dj].mode if dj in changed else plan.backup_mode
    nexts: list[FileChange] = []
    step = dict(final)
    for key, name in (("tlscert", "cert"), ("tlskey", "key")):
        path = PurePosixPath(plan.cert_paths[name])
        nxt = str(path.with_name(NEXT_PREFIX + path.name))
        content = changed[str(path)].content if str(path) in changed else None
        if content is None:  # unchanged file: daemon.json may keep naming it
            continue
        nexts.append(FileChange(nxt, content, changed[str(path)].mode, files.PRIVATE_DIR))
        step[key] = nxt
    via = FileChange(dj, edit_daemon_json(final_text, final, step).encode(), mode)
    back = FileChange(dj, (final_text or "").encode(), mode)
    head = [c for c in plan.changes if c.path == plan.cert_paths["ca"]]
    rest = [c for c in plan.changes if c.path not in (dj, plan.cert_paths["ca"])]
    pair = [c for c in rest if c.path in (plan.cert_paths["cert"], plan.cert_paths["key"])]
    tail = [c for c in rest if c not in pair]
    previous.setdefault(dj, plan.old_daemon_json.encode() if plan.old_daemon_json else None)
    return WriteSteps([*head, *nexts, via, *pair, back, *tail], [c.path for c in nexts], previous)
