"""Fixtures of the device gateway tests: tokens of an operator (iot.manage) and a read-only token (iot.read)."""

from __future__ import annotations

import pytest

from tests.web.conftest import browser  # noqa: F401 - the browser-like client, for the gateway's pages


@pytest.fixture
def operator(make_user, token_for) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Headers of a department staff member: iot.manage, iot.read and context.read."""
    return token_for(make_user("department_staff"))


@pytest.fixture
def reader(make_user, token_for) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Headers of a read-only API token: iot.read only (and context.read)."""
    return token_for(make_user("department_staff"), scopes=["iot.read", "context.read"])


def weather_group(apikey: str = "wx-key-1", **extra: object) -> dict[str, object]:
    """A service group as FIWARE tutorials provision it (Ultralight, /iot/d)."""
    group: dict[str, object] = {
        "apikey": apikey, "cbroker": "http://orion:1026", "entity_type": "WeatherObserved", "resource": "/iot/d",
        "attributes": [
            {"object_id": "t", "name": "temperature", "type": "Number",
             "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}},
            {"object_id": "h", "name": "relativeHumidity", "type": "Number", "unitCode": "P1"},
        ],
        "static_attributes": [{"name": "source", "type": "Text", "value": "simulated"}],
    }
    group.update(extra)
    return group
