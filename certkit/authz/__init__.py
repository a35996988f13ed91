"""Revocation and roles on the Docker host: the authorization plugin and its installer.

:mod:`certkit.authz.plugin` is the program that runs on the host (one stdlib-only
file); :mod:`certkit.authz.install` writes it, its policy and its systemd units
onto a host and registers it with dockerd (SIGHUP, never a restart).  The policy
itself is built from the inventory by :mod:`certkit.revoke`.
"""
