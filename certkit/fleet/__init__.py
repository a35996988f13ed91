"""Many Docker hosts through Ansible: ``certkit fleet apply`` / ``verify`` and the collection.

What runs where:

* on the controller (this machine), in Ansible's workers: the action plugin
  ``certkit.docker.daemon_tls`` (:mod:`.action`) converges each host
  (:mod:`.converge`): it reads the host through :class:`.target.AnsibleTarget`,
  issues a certificate with certkit's CA only when the installed one is not
  good, plans the change with certkit's own ``plan_install`` and checks over
  TLS that dockerd serves the installed certificate;
* on the hosts: only certkit's read and write scripts (``sh``, coreutils,
  ``systemctl``), through Ansible's connection with its ``become``;
* in the ``certkit`` process: :mod:`.apply` runs the bundled playbook through
  ansible-runner and writes docker contexts (:mod:`.admin`); :mod:`.verify`
  audits every host of the inventory (:mod:`.inventory`) in parallel.

Nothing here is imported by ``certkit --help``; Ansible itself is imported
only by the fleet commands.
"""
