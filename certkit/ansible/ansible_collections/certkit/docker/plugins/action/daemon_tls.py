# certkit.docker.daemon_tls: converge one Docker host to mutual TLS, on the controller.
# The work is certkit's (certkit.fleet.action); this file only lends it Ansible's
# connection to the host: ``sh -s`` with a script on stdin, become honoured.
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase

# Imported here, at the plugin's load: Ansible's strategy loads this class in its main
# process before it forks a worker per host, so every worker inherits certkit already
# imported (about 0.6-0.9 s of imports each otherwise, all on the controller's cores).
try:
    from certkit.fleet.action import preload, run_action
    from certkit.fleet.target import HostUnreachable
except ImportError as e:  # the controller's Python lacks certkit
    _MISSING: ImportError | None = e
else:
    _MISSING = None
    preload()


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        if _MISSING is not None:
            raise AnsibleActionFail(
                f"certkit is not importable by Ansible's Python on the controller ({_MISSING}): "
                "install certkit[fleet] into the environment that runs ansible-playbook."
            )

        def sh(script: str) -> tuple[int, str, str]:
            try:
                done = self._low_level_execute_command(
                    "/bin/sh -s", sudoable=True, in_data=to_bytes(script)
                )
            except AnsibleConnectionFailure as e:
                # A failed host, not only an unreachable one: --max-fail counts it.
                raise HostUnreachable(f"{self._task.get_name()}: {e}".strip()) from None
            return int(done["rc"]), to_text(done["stdout"]), to_text(done["stderr"])

        hostvars = {
            k: self._templar.template((task_vars or {}).get(k))
            for k in (
                "inventory_hostname",
                "ansible_host",
                "ansible_user",
                "ansible_port",
                "certkit_force",
                "inventory_file",
            )
        }
        hostvars["become"] = bool(self._connection.become)
        hostvars["remote_user"] = self._play_context.remote_user
        result.update(
            run_action(dict(self._task.args), hostvars, sh, check=bool(self._task.check_mode))
        )
        return result
