"""The docker client's environment: what overrides a context, and ``certkit env``'s output.

Which endpoint the docker CLI uses: ``--context``, then ``-H``, then a
non-empty ``DOCKER_HOST``, then ``DOCKER_CONTEXT``, then ``currentContext``
(docs/design.md, "The docker CLI's context store").  Tools that ignore contexts
read ``DOCKER_HOST``, ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` instead: :func:`env_variables`
gives them for a context and :func:`render_env` writes them for five shells.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping

from ..errors import UsageError
from ..files import StrPath
from ..untrusted import refuse_controls
from .config import current_context
from .store import TLS_FILES, ContextInfo, check_endpoint

# Variables that make requests (hence docker-py) ignore the context's ca.pem.
CA_BUNDLE_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
SHELLS = ("bash", "zsh", "fish", "powershell", "cmd")


# ---------------------------------------------------------------- overrides and advice


def selected_context(docker_config: StrPath | None = None) -> str | None:
    """The context the docker CLI uses when no ``--context``, ``-H`` or ``DOCKER_HOST`` picks one.

    That is ``DOCKER_CONTEXT``, else ``currentContext`` in config.json; None
    means the built-in default context.
    """
    return os.environ.get("DOCKER_CONTEXT") or current_context(docker_config)


def docker_host_override_warning() -> str | None:
    """The warning to print when ``DOCKER_HOST`` would override contexts, else None."""
    value = os.environ.get("DOCKER_HOST", "")
    if not value:
        return None
    return (
        f"DOCKER_HOST is set ({value}) and overrides the current docker context "
        "(only an explicit `docker --context NAME` beats it): run `unset DOCKER_HOST` "
        "to use the context."
    )


def docker_context_override_warning(name: str) -> str | None:
    """The warning to print when ``DOCKER_CONTEXT`` names another context than ``name``."""
    value = os.environ.get("DOCKER_CONTEXT", "")
    if not value or value == name:
        return None
    return (
        f"DOCKER_CONTEXT is set to {value!r} and overrides currentContext in config.json: "
        f"run `unset DOCKER_CONTEXT` (or `export DOCKER_CONTEXT={name}`) to use {name!r}."
    )


def ca_bundle_override() -> list[str]:
    """The set ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` variables, as ``VAR=value``."""
    return [f"{v}={os.environ[v]}" for v in CA_BUNDLE_VARS if os.environ.get(v)]


def docker_py_advice(name: str | None = None) -> list[str]:
    """Why docker-py fails in this environment and how to fix it, or [] when nothing is in the way.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace the CA
    docker-py sets from ``ca.pem`` (psf/requests#3829, docker/docker-py#2433):
    the daemon's certificate is then checked against the system CAs and
    fails.  Measured with docker 7.2.0: building the client with an explicit
    ``version`` (so the constructor does not call the daemon) and then
    setting ``client.api.trust_env = False`` works.  With ``name`` the fix
    loads that context (docker-py 7.2+); without, it reads ``certkit env``'s
    variables.
    """
    found = [v for v in CA_BUNDLE_VARS if os.environ.get(v)]
    if not found:
        return []
    load = (
        f'docker.DockerClient.from_context("{name}", version="1.41")'
        if name
        else 'docker.from_env(version="1.41")'
    )
    return [
        f"{' and '.join(found)} {'is' if len(found) == 1 else 'are'} set here, and requests "
        "lets them replace the context's ca.pem: docker-py fails with CERTIFICATE_VERIFY_FAILED.",
        "Fix: run docker-py without them (env -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE python ...),"
        f" or in code: client = {load}; client.api.trust_env = False",
    ]


# ---------------------------------------------------------------- certkit env


def env_variables(info: ContextInfo) -> dict[str, str]:
    """What ``certkit env`` exports: the variables ``docker-machine env`` used to.

    The endpoint goes through the endpoint parser again (a meta.json may have
    been written by anyone who could write the docker config dir), and no
    value may hold a control character: each would become shell code.
    """
    host = check_endpoint(info.host, info.name)
    if info.skip_tls_verify:
        raise UsageError(
            f"Context {info.name!r} has SkipTLSVerify: true, which trusts any server; "
            f"recreate it with `certkit client-context {info.name} --force`."
        )
    missing = [f for f in TLS_FILES if not (info.tls_dir / f).exists()]
    if missing:
        raise UsageError(
            f"Context {info.name!r} has no {', '.join(missing)} in {info.tls_dir}; "
            "recreate it with `certkit client-context --force`."
        )
    cert_path = refuse_controls(str(info.tls_dir), "The docker config path")
    return {"DOCKER_TLS_VERIFY": "1", "DOCKER_HOST": host, "DOCKER_CERT_PATH": cert_path}


def render_env(
    variables: Mapping[str, str],
    shell: str,
    command: str,
    *,
    unset: bool = False,
    notes: list[str] | None = None,
) -> str:
    """Shell code that sets (or unsets) ``variables``, then comments, like ``docker-machine env``.

    Each shell's value is encoded so that every character stays itself
    (bash/zsh ``$'\\xHH'`` for anything but ``[A-Za-z0-9_./:,@%+=-]``, so even
    the unquoted ``eval $(certkit env NAME)`` can neither split nor glob it;
    fish and PowerShell single quotes), and cmd, which has no reliable
    quoting, gets only values from a strict allow-list.  Comments come last on
    purpose: the unquoted idiom joins the output into one line, where
    everything after the first ``#`` is ignored.
    """
    if shell not in SHELLS:
        raise UsageError(f"Unknown shell {shell!r}: use one of {', '.join(SHELLS)}.")
    lines = [
        _unset_line(shell, k) if unset else _set_line(shell, k, v) for k, v in variables.items()
    ]
    comment = "REM" if shell == "cmd" else "#"
    for note in notes or []:
        lines.append(f"{comment} {note}" if note else comment)
    lines.append(f"{comment} Run this command to configure your shell: ")
    lines.append(f"{comment} {_eval_hint(shell, command)}")
    return "\n".join(lines) + "\n"


def _set_line(shell: str, key: str, value: str) -> str:
    refuse_controls(value, f"The value of {key}")
    if shell == "fish":
        quoted = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"set -gx {key} '{quoted}';"
    if shell == "powershell":
        # Verbatim string: only the four single-quote characters are special, doubled.
        quoted = "".join(c * 2 if c in _PS_QUOTES else c for c in value)
        return f"$Env:{key} = '{quoted}'"
    if shell == "cmd":
        return f'SET "{key}={_cmd_value(key, value)}"'
    return f"export {key}={_posix_word(value)}"


# Characters bash and zsh take literally even unquoted (no split, no glob, no expansion).
_POSIX_PLAIN = frozenset(string.ascii_letters + string.digits + "_./:,@%+=-")
# PowerShell ends a single-quoted string at any of these (U+2018, U+2019, U+201A, U+201B).
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"
# What cmd gets: letters, digits and path punctuation; never " % ! ^ & | < > or quotes.
_CMD_PUNCTUATION = frozenset(" _.,:/\\@+=~-[]()")


def _posix_word(value: str) -> str:
    """``value`` as one bash/zsh word: plain runs in ``"..."``, others as ``$'\\xHH'``."""
    out, run = [], ""
    for c in value:
        if c in _POSIX_PLAIN:
            run += c
            continue
        if run:
            out.append(f'"{run}"')
            run = ""
        out.append("$'" + "".join(f"\\x{b:02x}" for b in c.encode()) + "'")
    if run or not out:
        out.append(f'"{run}"')
    return "".join(out)


def _cmd_value(key: str, value: str) -> str:
    bad = sorted({c for c in value if not (c.isalnum() or c in _CMD_PUNCTUATION)})
    if bad:
        raise UsageError(
            f"The value of {key} contains {''.join(bad)!r}, which cmd cannot be given safely; "
            "use --shell powershell, or a docker config path of letters, digits and / . _ -."
        )
    return value


def _unset_line(shell: str, key: str) -> str:
    return {
        "fish": f"set -e {key};",
        "powershell": f"Remove-Item Env:\\{key}",
        "cmd": f"SET {key}=",
    }.get(shell, f"unset {key}")


def _eval_hint(shell: str, command: str) -> str:
    if shell == "fish":
        return f"eval ({command})"
    if shell == "powershell":
        return f"& {command} | Invoke-Expression"
    if shell == "cmd":
        return f"\t@FOR /f \"tokens=*\" %i IN ('{command}') DO @%i"
    # Quoted: unquoted $(...) would squeeze runs of spaces in DOCKER_CERT_PATH.
    return f'eval "$({command})"'
