# certkit.docker.sh: run one certkit script on a host with ``sh -s`` through Ansible's
# connection (become honoured), for `certkit renew server` on a host `fleet apply`
# installed.  The script is read on the controller from ``script_file`` (a private file
# certkit wrote and removes): it can hold a private key, so it never goes on a command line.
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False
    _supports_check_mode = False
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        path = self._task.args.get("script_file")
        if not path:
            raise AnsibleActionFail("certkit.docker.sh needs script_file.")
        with open(path, "rb") as f:
            script = f.read()
        done = self._low_level_execute_command("/bin/sh -s", sudoable=True, in_data=script)
        result.update(
            changed=True,
            rc=int(done["rc"]),
            stdout=to_text(done["stdout"]),
            stderr=to_text(done["stderr"]),
        )
        return result
