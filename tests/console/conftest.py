"""The console's browser tests use the shared fixtures of :mod:`tests.browser` (registered in tests/conftest.py)."""
