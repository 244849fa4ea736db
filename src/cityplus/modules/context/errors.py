"""NGSI-LD ProblemDetails errors with the ETSI error type URIs (GS CIM 009 §5.5.2)."""

from __future__ import annotations

from cityplus.core.errors import DomainError

ETSI_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiLdError(DomainError):
    """An NGSI-LD error; `type_uri` is the ETSI error type."""

    name = "InternalError"

    def __init_subclass__(cls) -> None:
        cls.type_uri = ETSI_ERRORS + cls.name
        cls.title = cls.name
        cls.type_slug = cls.name


class InvalidRequest(NgsiLdError):
    status, name = 400, "InvalidRequest"


class BadRequestData(NgsiLdError):
    status, name = 400, "BadRequestData"


class AlreadyExists(NgsiLdError):
    status, name = 409, "AlreadyExists"


class OperationNotSupported(NgsiLdError):
    status, name = 422, "OperationNotSupported"


class ResourceNotFound(NgsiLdError):
    status, name = 404, "ResourceNotFound"


class TooManyResults(NgsiLdError):
    status, name = 403, "TooManyResults"


class LdContextNotAvailable(NgsiLdError):
    status, name = 503, "LdContextNotAvailable"


class NonexistentTenant(NgsiLdError):
    status, name = 404, "NonexistentTenant"


class NotAcceptable(NgsiLdError):
    status, name = 406, "NotAcceptable"


class UnsupportedMediaType(NgsiLdError):
    status, name = 415, "UnsupportedMediaType"
