"""What the tests, the benchmarks (bench/), the load tooling (load/) and the deployment checks
(deploy/) share: real photographs and distortions (``images``), seeded weights files and test
settings (``settings``), servers in-process, in a thread or as a process (``servers``, ``env``),
multipart bodies and hostile files (``http``, ``attacks``, ``structures``, ``framing``,
``sockets``), an OTLP receiver (``otlp``) and the reference packages' builders (``packages``).

The tools stand on this package and on the library, never on the tests: an import contract in
pyproject.toml forbids app/, bench/, load/, deploy/ and this package from importing ``tests``.
"""
