"""What the tests, the benchmarks, the load tooling and the deploy checks share: real photographs
and distortions (``images``), seeded weights and settings (``settings``), and ways to run the app
in-process or as a real ``simscore serve`` process (``servers``)."""
