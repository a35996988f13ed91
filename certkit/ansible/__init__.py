"""certkit's Ansible collection ``certkit.docker``, shipped inside the package.

``certkit fleet collection-path`` prints :data:`COLLECTIONS_PATH` for
``ANSIBLE_COLLECTIONS_PATH`` (or ``collections_path`` in ansible.cfg).  The
collection holds the controller-side action plugin ``certkit.docker.daemon_tls``
(:mod:`certkit.fleet.action` does its work), the role of the same name and
the playbook ``certkit fleet apply`` runs.  Nothing here imports Ansible.
"""

from __future__ import annotations

from pathlib import Path

COLLECTIONS_PATH = Path(__file__).resolve().parent
COLLECTION = COLLECTIONS_PATH / "ansible_collections" / "certkit" / "docker"
APPLY_PLAYBOOK = COLLECTION / "playbooks" / "apply.yml"
ROLLING_PLAYBOOK = COLLECTION / "playbooks" / "rolling.yml"  # --gate, --pause between batches
