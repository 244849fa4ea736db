"""Errors of the device gateway: problem details that also carry the IoT Agent's own `name` and `message`.

FIWARE IoT Agent clients read `{"name": "DEVICE_NOT_FOUND", "message": "..."}`; the platform's clients read RFC 9457
problem details. One body carries both (the IoT Agent fields are problem extension members).
"""

from __future__ import annotations

from typing import Any

from cityplus.core.errors import DomainError

TYPE_BASE = "https://cityplus.dev/problems/iot/"


class IotError(DomainError):
    """An error of the IoT Agent API; `name` is the IoT Agent error name."""

    name = "GENERIC_ERROR"

    def __init_subclass__(cls) -> None:
        cls.type_uri = TYPE_BASE + cls.name
        cls.title = cls.name.replace("_", " ").capitalize()
        cls.type_slug = "iot-" + cls.name.lower().replace("_", "-")

    def extensions(self) -> dict[str, Any]:
        return {"name": self.name, "message": self.detail}


class WrongSyntax(IotError):
    status, name = 400, "WRONG_SYNTAX"


class BadTenant(IotError):
    status, name = 400, "BAD_TENANT"


class UnsupportedFeature(IotError):
    status, name = 422, "UNSUPPORTED_FEATURE"


class UnsupportedContentType(IotError):
    status, name = 415, "UNSUPPORTED_CONTENT_TYPE"


class DuplicateGroup(IotError):
    status, name = 409, "DUPLICATE_GROUP"


class DuplicateDevice(IotError):
    status, name = 409, "DUPLICATE_DEVICE_ID"


class GroupNotFound(IotError):
    status, name = 404, "DEVICE_GROUP_NOT_FOUND"


class DeviceNotFound(IotError):
    status, name = 404, "DEVICE_NOT_FOUND"


class MalformedPayload(IotError):
    """A device message that cannot be read or mapped (also the dead-letter reason `malformed_payload`)."""

    status, name = 400, "MALFORMED_PAYLOAD"


class PayloadTooLarge(IotError):
    status, name = 413, "PAYLOAD_TOO_LARGE"


class Rejected(IotError):
    """The context broker refused the mapped update (e.g. an invalid geometry)."""

    status, name = 400, "ENTITY_UPDATE_REJECTED"


class CommandNotFound(IotError):
    status, name = 404, "COMMAND_NOT_FOUND"


class RateLimited(IotError):
    """A device sending faster than its limit (a runaway device): refused, so it cannot swamp the platform."""

    status, name = 429, "TOO_MANY_REQUESTS"
