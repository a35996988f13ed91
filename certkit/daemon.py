"""The Docker host side: daemon.json, the docker systemd unit, and installing TLS into them.

Reading a host gives a :class:`HostFiles` (raw texts, read locally by
:func:`read_host_files` or over SSH by :mod:`certkit.remote`).  Everything
after that is pure: :func:`plan_install` turns the texts, the install
options and the certificate PEMs into an :class:`InstallPlan` (every file
to write, the backup to make, the unified diff), so a dry run, a local
install and a remote install all compute exactly the same merge.
:func:`apply_plan_locally` writes a plan; :func:`restart_docker` restarts
dockerd and puts the previous files back if it does not come back.

Two ways to open TCP exist and must never be mixed (``hosts`` set both as a
``-H`` flag and in daemon.json stops dockerd from starting, moby#25471):

* ``systemd``: a drop-in repeats the unit's full ExecStart and adds
  ``-H tcp://LISTEN:PORT``; daemon.json gets the TLS keys only;
* ``daemon-json``: ``hosts`` goes into daemon.json and, when the unit passes
  ``-H``, a drop-in repeats its ExecStart without any ``-H``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import files
from .errors import OperationError, UsageError
from .names import DOCKER_PLAIN_PORT, DOCKER_TLS_PORT, check_listen, tcp_host
from .paths import SERVER_FILES, SystemPaths

METHODS: tuple[str, ...] = ("auto", "systemd", "daemon-json")
DEFAULT_LISTEN = "0.0.0.0"
CA_FILE, CERT_FILE, KEY_FILE = SERVER_FILES
RESTART_NOTE = "a restart stops running containers unless live-restore is on in daemon.json"


# ---------------------------------------------------------------- reading a host


@dataclass
class HostFiles:
    """The raw files of a Docker host that an install reads.

    ``units`` are the docker.service files that exist, lowest precedence
    first; ``dropins`` the existing ``docker.service.d/*.conf``, sorted by
    name; ``cert_files`` the current contents of the certificate files an
    install would write (path -> bytes, only those that exist; may be left
    empty, then they simply count as changed).
    """

    daemon_json: str | None = None
    daemon_json_mode: int | None = None
    units: list[tuple[str, str]] = field(default_factory=list)
    dropins: list[tuple[str, str]] = field(default_factory=list)
    default_docker: str | None = None
    cert_files: dict[str, bytes] = field(default_factory=dict)


def read_host_files(paths: SystemPaths) -> HostFiles:
    """Read daemon.json, the docker units, drop-ins, /etc/default/docker and the cert files."""
    hf = HostFiles()
    dj = Path(paths.daemon_json)
    try:
        hf.daemon_json = dj.read_text(encoding="utf-8")
        hf.daemon_json_mode = dj.stat().st_mode & 0o7777
    except FileNotFoundError:
        pass
    except UnicodeDecodeError:
        raise UsageError(f"{dj} is not UTF-8 text: fix or remove it, then run again.") from None
    except OSError as e:
        raise OperationError(f"cannot read {dj}: {e.strerror}; run as root.") from None
    for unit in paths.unit_files:
        text = files.read_text(unit)
        if text is not None:
            hf.units.append((str(unit), text))
    dropin_dir = Path(paths.dropin_dir)
    if dropin_dir.is_dir():
        for conf in sorted(dropin_dir.glob("*.conf"), key=lambda p: p.name):
            hf.dropins.append((str(conf), conf.read_text(encoding="utf-8", errors="replace")))
    hf.default_docker = files.read_text(paths.default_docker)
    for name in (CA_FILE, CERT_FILE, KEY_FILE):
        p = Path(paths.cert_dir) / name
        with contextlib.suppress(OSError):
            hf.cert_files[str(p)] = p.read_bytes()
    return hf


# ---------------------------------------------------------------- daemon.json


def _no_duplicates(path: object) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise UsageError(
                    f"{path} sets {key!r} twice: keep one of them, then run again "
                    "(the file was left untouched)."
                )
            out[key] = value
        return out

    return hook


def parse_daemon_json(text: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The daemon.json object; UsageError naming line and column when it is not one.

    An empty (or whitespace-only) file counts as ``{}``, as dockerd reads it.
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates(path))
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): "
            "fix it, then run again (the file was left untouched)."
        ) from None
    if not isinstance(data, dict):
        raise UsageError(
            f"{path} must hold a JSON object ({{...}}), not a {type(data).__name__}: "
            "fix it, then run again (the file was left untouched)."
        )
    return data


def _daemon_json_or_empty(files_: HostFiles) -> dict[str, Any]:
    """daemon.json for read-only checks: an unreadable one counts as empty."""
    try:
        return parse_daemon_json(files_.daemon_json or "", "daemon.json")
    except UsageError:
        return {}


def _json_hosts(config: dict[str, Any]) -> list[str]:
    hosts = config.get("hosts")
    if isinstance(hosts, str):
        return [hosts]
    if isinstance(hosts, list):
        return [str(h) for h in hosts]
    return []


def _indent_of(text: str | None) -> int:
    """The indent the user's daemon.json uses (2 when it cannot tell)."""
    for line in (text or "").splitlines()[1:]:
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            return len(line) - len(stripped)
    return 2


def dump_daemon_json(config: dict[str, Any], indent: int = 2) -> str:
    return json.dumps(config, indent=indent, ensure_ascii=False) + "\n"


_WS = re.compile(r"\s*")


def _skip_ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


def _top_level_spans(text: str) -> dict[str, tuple[int, int]] | None:
    """Where each top-level value sits in a daemon.json object: key -> (start, end).

    None when the text is not a plain JSON object (the caller then rewrites
    the whole file).
    """
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if text[i : i + 1] != "{":
        return None
    i += 1
    spans: dict[str, tuple[int, int]] = {}
    while True:
        i = _skip_ws(text, i)
        if text[i : i + 1] == "}":
            return spans
        try:
            key, i = decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i : i + 1] != ":":
                return None
            start = _skip_ws(text, i + 1)
            _, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            return None
        spans[str(key)] = (start, end)
        i = _skip_ws(text, end)
        if text[i : i + 1] == ",":
            i += 1


def _edit_daemon_json(text: str | None, old: dict[str, Any], new: dict[str, Any]) -> str:
    """``new`` as daemon.json text, touching only the keys that change.

    Every other key keeps its exact text (spacing, order, nested layout), so
    the diff shows only what certkit set.  Falls back to a full rewrite in the
    user's indent when the file cannot be edited in place.
    """
    indent = _indent_of(text)
    full = dump_daemon_json(new, indent)
    found = _top_level_spans(text or "")
    one_line = "\n" not in (text or "").strip()
    if text is None or found is None or one_line or not old or set(old) - set(new):
        return full
    spans = found
    pad = " " * indent

    def render(value: Any) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=False).replace("\n", "\n" + pad)

    out = text
    # Replace existing values from the end, so earlier offsets stay valid.
    for key, (start, end) in sorted(spans.items(), key=lambda kv: -kv[1][0]):
        if new[key] != old[key]:
            out = out[:start] + render(new[key]) + out[end:]
    added = [k for k in new if k not in old]
    if added:
        last_end = max(end for _, end in spans.values())
        shift = len(out) - len(text)  # all replacements happened at or before last_end
        at = last_end + shift
        insert = "".join(f",\n{pad}{json.dumps(k)}: {render(new[k])}" for k in added)
        out = out[:at] + insert + out[at:]
    try:
        if json.loads(out) == new:
            return out
    except json.JSONDecodeError:
        pass
    return full


# ---------------------------------------------------------------- systemd units


def _service_values(text: str, key: str) -> list[str]:
    """Every ``key=`` value of the unit's [Service] section, in order, continuations joined."""
    values: list[str] = []
    section = ""
    logical: list[str] = []
    lines: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not logical and (stripped.startswith("#") or stripped.startswith(";")):
            continue
        if stripped.endswith("\\"):
            logical.append(stripped[:-1])
            continue
        logical.append(stripped)
        lines.append(" ".join(part for part in logical if part))
        logical = []
    if logical:
        lines.append(" ".join(logical))
    for line in lines:
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        k, _, v = line.partition("=")
        if k.strip() == key:
            values.append(v.strip())
    return values


def _split_execstart(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError:
        return value.split()


def _execstart_of(sources: list[tuple[str, str]]) -> list[str] | None:
    """Replay ExecStart= lines over ``sources``: the last one wins, an empty one resets."""
    current: list[str] | None = None
    for _, text in sources:
        for value in _service_values(text, "ExecStart"):
            current = _split_execstart(value) if value else None
    return current


def effective_execstart(files_: HostFiles) -> list[str] | None:
    """The command systemd would run for docker.service (None: no unit or no ExecStart)."""
    return _execstart_of([*files_.units, *files_.dropins])


def _is_ours(path: str) -> bool:
    return PurePosixPath(path).name == "certkit.conf"


def _base_execstart(files_: HostFiles) -> list[str] | None:
    """ExecStart without certkit's own drop-in: what an install starts from."""
    return _execstart_of([*files_.units, *(d for d in files_.dropins if not _is_ours(d[0]))])


_H_FLAG = re.compile(r"^(?:-H|--host)(?:=(.*))?$")


def _flag_hosts(args: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, host)`` of every -H/--host flag in ``args`` (end exclusive)."""
    found: list[tuple[int, int, str]] = []
    i = 1
    while i < len(args):
        arg = args[i]
        m = _H_FLAG.match(arg)
        if m and m.group(1) is not None:
            found.append((i, i + 1, m.group(1)))
        elif m and i + 1 < len(args):
            found.append((i, i + 2, args[i + 1]))
            i += 1
        elif arg.startswith("-H") and len(arg) > 2 and not arg.startswith("-H="):
            found.append((i, i + 1, arg[2:]))
        i += 1
    return found


def _default_docker_opts(text: str | None) -> list[str]:
    """DOCKER_OPTS from /etc/default/docker, split as systemd's $VAR expansion does."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export ") :].strip()
        if line.startswith("DOCKER_OPTS="):
            value = line[len("DOCKER_OPTS=") :]
            try:
                parts = shlex.split(value)
            except ValueError:
                return value.split()
            return " ".join(parts).split()
    return []


def _is_opts_var(arg: str) -> bool:
    return arg in ("$DOCKER_OPTS", "${DOCKER_OPTS}")


def _expanded(args: list[str], files_: HostFiles) -> list[str]:
    out: list[str] = []
    for arg in args:
        out.extend(_default_docker_opts(files_.default_docker) if _is_opts_var(arg) else [arg])
    return out


def _flag_value(args: list[str], name: str) -> str | None:
    """Value of a boolean-ish ``--name`` flag (``"true"`` when bare), else None."""
    for arg in args[1:]:
        if arg == f"--{name}":
            return "true"
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def hosts_conflict(files_: HostFiles) -> str | None:
    """A sentence with the fix when ``hosts`` is both a -H flag and a daemon.json key."""
    args = effective_execstart(files_)
    if not args:
        return None
    flags = [h for _, _, h in _flag_hosts(_expanded(args, files_))]
    in_json = _json_hosts(_daemon_json_or_empty(files_))
    if not flags or not in_json:
        return None
    return (
        f"hosts is set both as a -H flag of docker.service ({', '.join(flags)}) and in "
        f'daemon.json ({", ".join(in_json)}), so dockerd refuses to start: remove "hosts" '
        "from daemon.json, or use a drop-in whose ExecStart has no -H "
        "(certkit issue-server HOST --install --method daemon-json writes one)"
    )


# ---------------------------------------------------------------- listeners


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
    flag = _flag_value(args, "tlsverify") or _flag_value(args, "tls")
    return flag is not None and flag.lower() not in ("false", "0")


def _configured_hosts(files_: HostFiles) -> tuple[list[str], list[str], dict[str, Any]]:
    config = _daemon_json_or_empty(files_)
    args = _expanded(effective_execstart(files_) or [], files_)
    return [h for _, _, h in _flag_hosts(args)], _json_hosts(config), config


def insecure_listeners(files_: HostFiles) -> list[str]:
    """TCP hosts configured without TLS (from daemon.json and -H flags), e.g. ``tcp://0.0.0.0:2375``.

    With TLS off every TCP host is plain HTTP.  With TLS on, dockerd serves
    TLS on every TCP host, but one on port 2375 is still listed: whoever uses
    it expects plain HTTP and breaks.
    """
    flags, in_json, config = _configured_hosts(files_)
    args = _expanded(effective_execstart(files_) or [], files_)
    tls = _tls_on(config, args)
    out: list[str] = []
    for host in [*flags, *in_json]:
        port = _tcp_port(host, tls)
        if port is not None and (not tls or port == DOCKER_PLAIN_PORT) and host not in out:
            out.append(host)
    return out


# ---------------------------------------------------------------- planning


@dataclass
class InstallOptions:
    """How to install: where TCP listens, where the files go, which method."""

    listen: str = DEFAULT_LISTEN
    port: int = DOCKER_TLS_PORT
    cert_dir: str | None = None  # absolute, as on the host; None: /etc/docker/certkit
    method: str = "auto"
    keep_insecure: bool = False
    remove_insecure: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
    cert_paths: dict[str, str]  # "ca"/"cert"/"key" -> installed path
    old_daemon_json: str | None = None
    new_daemon_json: str | None = None
    old_dropin: str | None = None
    new_dropin: str | None = None

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
            "tcp_host": self.tcp_host,
            "cert_paths": self.cert_paths,
            "warnings": self.warnings,
        }


def _choose_method(requested: str, current: list[str] | None) -> str:
    if requested not in METHODS:
        raise UsageError(f"--method {requested!r} is not one of: {', '.join(METHODS)}.")
    if requested != "auto":
        return requested
    # Decided on the effective command line, certkit's own drop-in included, so that a
    # second install keeps the method of the first.
    if current and _flag_hosts(current):
        return "systemd"
    return "daemon-json"


def _quote_arg(arg: str) -> str:
    if _is_opts_var(arg) or re.match(r"^[A-Za-z0-9_@%+=:,./$-]+$", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dropin_text(args: list[str]) -> str:
    return (
        "# Written by certkit (certkit issue-server --install): the docker unit's own\n"
        "# command line, with the listeners certkit manages. Edit with care.\n"
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart={' '.join(_quote_arg(a) for a in args)}\n"
    )


def _without(args: list[str], spans: list[tuple[int, int, str]], drop: set[str]) -> list[str]:
    removed = {i for start, end, host in spans if host in drop for i in range(start, end)}
    return [a for i, a in enumerate(args) if i not in removed]


def _check_later_dropins(files_: HostFiles, dropin: str) -> None:
    """Refuse when a drop-in read after certkit.conf sets ExecStart: it would replace ours."""
    for path, text in files_.dropins:
        if PurePosixPath(path).name > PurePosixPath(dropin).name and _service_values(
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
    base = _base_execstart(files_)
    opts = [a for a in (base or []) if _is_opts_var(a)][:1]
    opts_hosts = [h for _, _, h in _flag_hosts(["dockerd", *_expanded(opts, files_)])]
    return _Host(config, base, _flag_hosts(base or []), opts_hosts, _json_hosts(config))


def _listeners_to_drop(
    files_: HostFiles, host: _Host, method: str, options: InstallOptions, ours: str, sp: SystemPaths
) -> tuple[set[str], list[str]]:
    """TCP hosts the install removes (same port as ours; insecure ones when asked) + warnings."""
    warnings: list[str] = []
    if method == "systemd":
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
    args = _without(host.base, host.base_spans, drop)
    present = [h for _, _, h in _flag_hosts(args)] + host.opts_hosts
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
    ours = tcp_host(check_listen(options.listen, options.port), options.port)
    dj_path = str(paths.daemon_json)
    host = _parse_host(files_, dj_path)
    method = _choose_method(options.method, effective_execstart(files_))
    drop, warnings = _listeners_to_drop(files_, host, method, options, ours, paths)

    new_config = dict(host.config)
    dropin_args: list[str] | None = None
    if method == "systemd":
        dropin_args = _systemd_args(host, paths, dj_path, ours, drop)
    else:
        hosts = _daemon_json_hosts(host, paths, ours, drop)
        if hosts != host.json_hosts or isinstance(host.config.get("hosts"), str):
            new_config["hosts"] = hosts
        if host.base_spans or any(_is_ours(p) for p, _ in files_.dropins):
            dropin_args = _without(host.base or [], host.base_spans, set(host.flag_hosts))
    cert_dir = PurePosixPath(paths.cert_dir)
    cert_paths = {"ca": str(cert_dir / CA_FILE), "cert": str(cert_dir / CERT_FILE)}
    cert_paths["key"] = str(cert_dir / KEY_FILE)
    warnings += _tls_settings(new_config, cert_paths)

    dropin_path = str(paths.dropin)
    if dropin_args is not None:
        _check_later_dropins(files_, dropin_path)
    old_dropin = next((t for p, t in files_.dropins if _is_ours(p)), None)
    new_dropin = _dropin_text(dropin_args) if dropin_args is not None else None
    new_json: str | None = None
    if new_config != host.config or files_.daemon_json is None:
        new_json = _edit_daemon_json(files_.daemon_json, host.config, new_config)
    old_mode = files_.daemon_json_mode if files_.daemon_json_mode is not None else files.PUBLIC_FILE

    changes: list[FileChange] = []
    previous: dict[str, bytes | None] = {}

    def change(path: str, old: bytes | None, new: bytes, mode: int, dir_mode: int) -> None:
        if old != new:
            changes.append(FileChange(path, new, mode, dir_mode))
            previous[path] = old

    for name, pem in (("ca", ca_pem), ("cert", cert_pem), ("key", key_pem)):
        mode = files.PRIVATE_FILE if name == "key" else files.PUBLIC_FILE
        path = cert_paths[name]
        change(path, files_.cert_files.get(path), pem, mode, files.PRIVATE_DIR)
    old_json = files_.daemon_json.encode() if files_.daemon_json is not None else None
    if new_json is not None:
        change(dj_path, old_json, new_json.encode(), old_mode, files.PUBLIC_DIR)
    if new_dropin is not None:
        old = old_dropin.encode() if old_dropin is not None else None
        change(dropin_path, old, new_dropin.encode(), files.PUBLIC_FILE, files.PUBLIC_DIR)

    backup: tuple[str, str] | None = None
    if new_json is not None and old_json is not None:
        # Microseconds: two installs within one second must not overwrite the first backup.
        stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")
        backup = (dj_path, f"{dj_path}.certkit-backup-{stamp}")
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
        cert_paths=cert_paths,
        old_daemon_json=files_.daemon_json,
        new_daemon_json=new_json,
        old_dropin=old_dropin,
        new_dropin=new_dropin,
    )


def live_restore_on(files_: HostFiles) -> bool:
    """True when dockerd keeps containers running across its restart."""
    config = _daemon_json_or_empty(files_)
    flag = _flag_value(_expanded(effective_execstart(files_) or [], files_), "live-restore")
    return bool(config.get("live-restore")) or (flag is not None and flag != "false")


# ---------------------------------------------------------------- applying


def _restore(previous: dict[str, bytes | None], modes: dict[str, int]) -> None:
    """Put every file back as it was (None: remove it)."""
    for path, content in previous.items():
        # Best effort, file by file: one that cannot be restored must not stop the others.
        with contextlib.suppress(OSError):
            if content is None:
                Path(path).unlink(missing_ok=True)
            else:
                files.atomic_write(path, content, modes.get(path, files.PUBLIC_FILE))


def apply_plan_locally(plan: InstallPlan) -> None:
    """Write the plan: directories, the daemon.json backup, then every file atomically.

    All new files are staged next to their targets before the first rename;
    if anything fails, the files already replaced are put back, so the host
    is left as it was.
    """
    if not plan.changes:
        return
    for change in plan.changes:
        files.ensure_dir(PurePosixPath(change.path).parent, change.dir_mode)
    if plan.backup and plan.backup_content is not None:
        files.atomic_write(plan.backup[1], plan.backup_content, plan.backup_mode)
    modes = {c.path: c.mode for c in plan.changes}
    try:
        files.atomic_write_many((c.path, c.content, c.mode) for c in plan.changes)
    except BaseException:
        _restore(plan.previous, modes)
        raise


# ---------------------------------------------------------------- restarting

Runner = Callable[[list[str]], int]
PortWaiter = Callable[[str, int, float], bool]


def _run(cmd: list[str]) -> int:
    try:
        return subprocess.run(cmd, check=False).returncode
    except FileNotFoundError:  # no systemctl: not a systemd host
        return 127


def _port_opens(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _probe_address(listen: str) -> str:
    """Where to check a listener locally: a wildcard address is reached on loopback."""
    addr = listen.strip("[]")
    if addr in ("0.0.0.0", ""):
        return "127.0.0.1"
    if addr == "::":
        return "::1"
    return addr


def restart_docker(
    plan: InstallPlan,
    listen: str,
    port: int,
    *,
    run: Runner = _run,
    wait_port: PortWaiter = _port_opens,
    timeout: float = 60,
) -> None:
    """``systemctl daemon-reload`` + ``restart docker``, then wait for the TLS port.

    If Docker does not come back, the previous daemon.json, drop-in and
    certificate files are restored, Docker is restarted with them, and an
    OperationError says so.  ``run`` and ``wait_port`` are injectable: tests
    cannot run systemctl here, so they check this logic with fakes (the
    configuration itself is proven against a real dockerd).
    """

    def restart() -> bool:
        if run(["systemctl", "daemon-reload"]) != 0:
            return False
        return run(["systemctl", "restart", "docker"]) == 0

    if restart() and wait_port(_probe_address(listen), port, timeout):
        return
    _restore(plan.previous, {c.path: c.mode for c in plan.changes})
    back = restart()
    raise OperationError(
        f"Docker did not come back on port {port} after the restart; the previous "
        + (
            "configuration was restored and Docker restarted with it"
            if back
            else "configuration was restored but Docker failed to restart with it too"
        )
        + ": see journalctl -u docker for why."
    )
