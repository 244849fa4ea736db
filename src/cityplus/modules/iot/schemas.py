"""Provisioning payloads exactly as FIWARE IoT Agents take them (service groups and devices), validated strictly.

Every field of the IoT Agent datamodel is accepted, so existing provisioning scripts work unchanged; fields that
only matter to an IoT Agent talking to a remote broker (cbHost, trust, ngsiVersion…) are kept and echoed back but
have no effect here. Unknown fields are refused with a 400 naming them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cityplus.modules.iot.errors import WrongSyntax

# Device ids and apikeys are MQTT topic levels: no '/', '+', '#', whitespace or control characters.
TOPIC_LEVEL = r"^[^/#+\s\x00-\x1f]{1,128}$"
DEVICE_ID = r"^[^/#+\s\x00-\x1f]{1,256}$"
NAME = r"^[^\s<>\"'=;()\[\]\x00-\x1f]{1,256}$"
RESERVED_ATTRS = frozenset({"id", "type", "scope", "@context", "createdAt", "modifiedAt", "deletedAt"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _attr_name(v: str) -> str:
    if v in RESERVED_ATTRS:
        raise ValueError(f"{v!r} is reserved by NGSI-LD and cannot name an attribute")
    return v


class AttributeMapping(_Strict):
    """An active (or lazy) attribute: measure `object_id` → entity attribute `name` of `type`."""

    object_id: str | None = Field(default=None, min_length=1, max_length=256)
    name: str = Field(pattern=NAME)
    type: str = Field(min_length=1, max_length=64)
    metadata: dict[str, Any] | None = None
    unitCode: str | None = Field(default=None, min_length=1, max_length=64)  # noqa: N815 (CityPlus shorthand)
    expression: str | None = None
    skipValue: Any = None  # noqa: N815
    entity_name: str | None = None
    entity_type: str | None = None
    reverse: list[Any] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _attr_name(v)


class StaticAttribute(_Strict):
    """An attribute every entity of the group or device carries as given (e.g. its location, a serial number)."""

    name: str = Field(pattern=NAME)
    type: str = Field(min_length=1, max_length=64)
    value: Any = None
    metadata: dict[str, Any] | None = None
    unitCode: str | None = Field(default=None, min_length=1, max_length=64)  # noqa: N815
    object_id: str | None = None
    link: dict[str, Any] | None = None
    entity_name: str | None = None
    entity_type: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _attr_name(v)


class CommandMapping(_Strict):
    """A command the device accepts (e.g. `switch` on a streetlight)."""

    name: str = Field(pattern=NAME)
    type: str = Field(default="command", min_length=1, max_length=64)
    object_id: str | None = Field(default=None, min_length=1, max_length=256)
    value: Any = None
    metadata: dict[str, Any] | None = None
    expression: str | None = None
    payloadType: str | None = None  # noqa: N815
    contentType: str | None = None  # noqa: N815
    mqtt: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _attr_name(v)


class _Provisioned(_Strict):
    """Fields shared by service groups and devices."""

    entity_type: str | None = Field(default=None, pattern=NAME)
    timestamp: bool | None = None
    explicitAttrs: bool | None = None  # noqa: N815 (JEXL expressions are not supported: true or false)
    attributes: list[AttributeMapping] | None = Field(default=None, max_length=500)
    lazy: list[AttributeMapping] | None = Field(default=None, max_length=500)
    commands: list[CommandMapping] | None = Field(default=None, max_length=200)
    static_attributes: list[StaticAttribute] | None = Field(default=None, max_length=500)
    internal_attributes: Any = None
    transport: str | None = Field(default=None, max_length=16)
    endpoint: str | None = Field(default=None, max_length=512)
    timezone: str | None = Field(default=None, max_length=64)
    ngsiVersion: str | None = Field(default=None, max_length=8)  # noqa: N815
    payloadType: str | None = Field(default=None, max_length=16)  # noqa: N815
    useCBflowControl: bool | None = None  # noqa: N815
    storeLastMeasure: bool | None = None  # noqa: N815
    expected_interval: int | None = Field(default=None, ge=1, le=31 * 86_400)  # CityPlus: seconds between messages

    @field_validator("transport")
    @classmethod
    def _transport(cls, v: str | None) -> str | None:
        if v is not None and v.upper() not in ("MQTT", "HTTP", "AMQP"):
            raise ValueError("transport must be MQTT or HTTP")
        return v.upper() if v is not None else None


class ServiceGroupIn(_Provisioned):
    """A service group as POSTed in `{"services": [...]}` (all fields optional for PUT)."""

    apikey: str | None = Field(default=None, pattern=TOPIC_LEVEL)
    resource: str | None = Field(default=None, pattern=r"^/[^\s?#]{0,255}$")
    type: str | None = Field(default=None, pattern=NAME)  # older IoT Agents' name for entity_type
    autoprovision: bool | None = None
    service: str | None = None  # taken from the Fiware-Service header; kept for payloads that carry it
    subservice: str | None = None
    service_path: str | None = None
    trust: str | None = None  # Keystone trust: meaningless here (in-process broker), never stored
    token: str | None = None
    cbHost: str | None = Field(default=None, max_length=512)  # noqa: N815
    cbroker: str | None = Field(default=None, max_length=512)
    entityNameExp: str | None = None  # noqa: N815
    defaultEntityNameConjunction: str | None = Field(default=None, max_length=8)  # noqa: N815
    expressionLanguage: str | None = Field(default=None, max_length=16)  # noqa: N815
    protocol: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=500)


class DeviceIn(_Provisioned):
    """A device as POSTed in `{"devices": [...]}` (device_id optional for PUT)."""

    device_id: str | None = Field(default=None, pattern=DEVICE_ID)
    entity_name: str | None = Field(default=None, max_length=512)
    apikey: str | None = Field(default=None, pattern=TOPIC_LEVEL)
    protocol: str | None = Field(default=None, max_length=64)
    service: str | None = None
    service_path: str | None = None
    polling: bool | None = None
    health: dict[str, Any] | None = None  # read-only (GET output); ignored when a device is PUT back


class ServicesBody(_Strict):
    services: list[ServiceGroupIn] = Field(min_length=1, max_length=100)


class DevicesBody(_Strict):
    devices: list[DeviceIn] = Field(min_length=1, max_length=1000)


# Options: IoT Agent fields with no effect here, stored as given and returned on GET.
GROUP_OPTIONS = ("cbHost", "cbroker", "ngsiVersion", "payloadType", "transport", "endpoint", "timezone",
                 "useCBflowControl", "storeLastMeasure", "defaultEntityNameConjunction", "protocol", "description")
DEVICE_OPTIONS = ("ngsiVersion", "payloadType", "endpoint", "timezone", "useCBflowControl", "storeLastMeasure",
                  "polling")


def parse(model: type[BaseModel], body: Any) -> Any:
    """Validate a body; a ValidationError becomes WRONG_SYNTAX naming each field."""
    if not isinstance(body, dict):
        shape = " like {" + ", ".join(f'"{f}": [...]' for f in model.model_fields) + "}" \
            if model in (ServicesBody, DevicesBody) else ""
        raise WrongSyntax(f"the body must be a JSON object{shape}", errors=[{"field": "body", "message": "object"}])
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise WrongSyntax(f"invalid provisioning payload: {summary}", errors=errors) from None
