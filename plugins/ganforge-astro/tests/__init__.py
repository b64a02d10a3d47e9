"""ganforge-astro's tests, a package so that they collect next to ganforge's own tests/ (same module basenames, two
conftest.py files) in one pytest run: modules import as ``tests.<name>``, the root ones as ``<name>``."""
