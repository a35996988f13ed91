"""The Docker host side: daemon.json, the docker systemd unit, and the ways to reach a host.

``plan`` computes an install without I/O (from ``daemonjson`` and ``systemd``
parsing); ``target`` installs a plan on any host through one protocol,
implemented by ``local`` (this machine) and ``remote`` (SSH, over ``ssh`` and
``scripts``).
"""
