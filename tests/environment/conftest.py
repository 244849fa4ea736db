"""Fixtures of the environment tests: the portal's browser-like client."""

from tests.web.conftest import browser  # noqa: F401 - re-exported fixture
