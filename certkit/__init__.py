"""certkit: mutual-TLS remote access to Docker daemons, hard to get wrong.

The command line (``certkit --help``) is built on a small Python API; import
it from :mod:`certkit.api`::

    from certkit import api

    api.init_ca("prod")
    api.issue_server("docker1.example.com", ca="prod", install=True)

This module stays import-light so that ``certkit --help`` is fast.
"""

__version__ = "0.1.0"
