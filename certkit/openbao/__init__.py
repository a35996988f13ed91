"""Team mode: an OpenBao (or Vault) PKI mount issues certkit's certificates.

No CA key on any laptop: the issuer lives in OpenBao, people log in and get short-lived
client certificates whose name OpenBao forces to their identity, and only CSRs leave
certkit (the key is made where the certificate will live).

- :mod:`.client`: reaching OpenBao (``BAO_ADDR``/``VAULT_ADDR``, several addresses tried
  in turn, ``BAO_TOKEN``, ``BAO_CACERT``); every failure is one sentence.
- :mod:`.profile`: certkit's certificate profile as OpenBao roles and policies (data).
- :mod:`.binding`: the store's record that a CA is OpenBao-backed (``openbao.json``).
- :mod:`.setup`: ``init-ca --issuer openbao``: mount, issuer, roles, policies.
- :mod:`.issue`: a CSR to ``<mount>/sign/<role>``, the result kept like any issued cert.
- :mod:`.login`: ``certkit login``: a person's certificate and docker context, renewal.

Only this package imports ``hvac`` (the ``openbao`` extra), and only when a command
talks to OpenBao.
"""
