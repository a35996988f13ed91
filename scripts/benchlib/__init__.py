"""The pieces of ``scripts/bench`` (no certkit import: it times the installed command).

* :mod:`.tools`: the peers (openssl, mkcert, cfssl, easy-rsa), their recipes and seeds;
* :mod:`.cases`: what is timed, in which interleaved group, how many runs;
* :mod:`.timer`: runs a group round-robin from fresh copies of its seeds;
* :mod:`.report`: ratios, the issue's targets, the console table, and the
  Markdown tables of README.md and docs/benchmark.md, generated from the JSON.
"""
