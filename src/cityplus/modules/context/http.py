"""Request parsing and response shaping for the NGSI-LD API (content types, contexts, options, tenants)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from cityplus.modules.context import jsonld
from cityplus.modules.context.errors import (
    BadRequestData,
    InvalidRequest,
    LdContextNotAvailable,
    NotAcceptable,
    UnsupportedMediaType,
)
from cityplus.modules.context.normalize import choose_language, concise, object_list_entries, simplified

JSON, JSONLD, MERGE_PATCH = "application/json", "application/ld+json", "application/merge-patch+json"
GEOJSON = "application/geo+json"
TENANT_HEADER = "ngsild-tenant"
FORMATS = {"normalized", "concise", "simplified", "keyValues"}


def tenant_of(request: Request) -> str | None:
    return request.headers.get(TENANT_HEADER)


def _no_constant(name: str) -> Any:
    """json.loads accepts NaN, Infinity and -Infinity; RFC 8259 JSON has no such numbers."""
    raise ValueError(f"{name} is not a JSON number")


async def read_body(request: Request, *, merge_patch: bool = False) -> tuple[Any, str]:
    """The JSON body and its media type; 415 for other content types, 400 InvalidRequest for bad JSON."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = {JSON, JSONLD} | ({MERGE_PATCH} if merge_patch else set())
    if ctype not in allowed:
        raise UnsupportedMediaType(f"Content-Type must be one of {', '.join(sorted(allowed))}, not {ctype or 'none'}")
    raw = await request.body()
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    return body, ctype


@dataclass
class LdRequest:
    """The caller's @context, resolved, and how the response must carry it."""

    active: jsonld.ActiveContext
    context: Any  # what the caller sent (URL, object, list) or None for the core context
    accept: str
    tenant: str | None = None  # echoed in NGSILD-Tenant on responses
    geometry_property: str = "location"  # GeoJSON: the GeoProperty that becomes a Feature's geometry
    body_context: bool = True  # GeoJSON: @context in the body (Prefer: body=json moves it to a Link header)


def negotiate(request: Request, *, geo: bool = False) -> str:
    """The response media type (RFC 9110 §12.5.1): each representation takes the weight of the most specific
    Accept range that matches it; the highest weight above 0 wins, ties go to application/json, then ld+json.
    application/geo+json is only offered where the operation can produce GeoJSON (geo=True)."""
    accept = request.headers.get("accept", "*/*").lower()
    if not accept.strip():
        return JSON
    offered = [JSON, JSONLD, *([GEOJSON] if geo else [])]
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip() == "q":
                try:
                    q = min(max(float(v), 0.0), 1.0)
                except ValueError:
                    q = 1.0  # a malformed weight is ignored: the range keeps the default weight
        if media.strip():
            ranges.append((media.strip(), q))

    def weight(media: str) -> float | None:
        best: tuple[int, float] | None = None
        for rng, q in ranges:
            specificity = 2 if rng == media else 1 if rng == media.split("/")[0] + "/*" else 0 if rng == "*/*" \
                else -1
            if specificity >= 0 and (best is None or specificity > best[0]):
                best = (specificity, q)
        return best[1] if best else None

    scored = [(w, -i, m) for i, m in enumerate(offered) if (w := weight(m)) is not None and w > 0]
    if not scored:
        raise NotAcceptable(f"cannot produce {accept[:200]}; use application/json or application/ld+json"
                            + (" or application/geo+json" if geo else ""))
    return max(scored)[2]


def resolve(request: Request, resolver: jsonld.ContextResolver, body: Any = None, media: str | None = None,
            *, geo: bool = False) -> LdRequest:
    """Apply the spec's rules on where the @context comes from and resolve it."""
    try:
        context, _ = jsonld.request_context(media or request.headers.get("content-type"),
                                            request.headers.get("link"), body)
    except jsonld.UnsupportedMediaType as exc:
        raise UnsupportedMediaType(str(exc)) from None
    except jsonld.ContextRuleError as exc:
        raise BadRequestData(str(exc)) from None
    try:
        active = resolver.resolve(context)
    except jsonld.LdContextNotAvailable as exc:
        raise LdContextNotAvailable(str(exc)) from None
    except jsonld.InvalidContext as exc:
        raise BadRequestData(f"invalid @context: {exc}") from None
    prefer = request.headers.get("prefer", "").replace(" ", "").lower()
    return LdRequest(active=active, context=context, accept=negotiate(request, geo=geo), tenant=tenant_of(request),
                     geometry_property=request.query_params.get("geometryProperty") or "location",
                     body_context="body=json" not in prefer.split(","))


def options(request: Request) -> tuple[set[str], str]:
    """The `options` flags and the output format (`format` wins over keyValues/concise options)."""
    opts = {o.strip() for o in request.query_params.get("options", "").split(",") if o.strip()}
    known = {"keyValues", "simplified", "concise", "normalized", "sysAttrs", "noOverwrite", "update", "replace"}
    unknown = opts - known
    if unknown:
        raise InvalidRequest(f"unknown options: {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    fmt = request.query_params.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(sorted(FORMATS))}, not {fmt[:40]!r}")
    if fmt is None:
        fmt = "simplified" if opts & {"keyValues", "simplified"} else "concise" if "concise" in opts else "normalized"
    return opts, "simplified" if fmt == "keyValues" else fmt


def shape(doc: dict[str, Any], fmt: str, lang: str | None) -> dict[str, Any]:
    """Apply the output format and language selection to a compacted entity."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("id", "type", "scope", "createdAt", "modifiedAt", "@context"):
            out[key] = value
        elif fmt == "simplified":
            out[key] = simplified(value, lang)
        elif fmt == "concise":
            out[key] = concise(object_list_entries(value), lang)
        else:
            value = object_list_entries(value)
            out[key] = _lang_normalized(value, lang) if lang else value
    return out


def _lang_normalized(attr: Any, lang: str) -> Any:
    if isinstance(attr, list):
        return [_lang_normalized(a, lang) for a in attr]
    if isinstance(attr, dict) and attr.get("type") == "LanguageProperty":
        tag, chosen = choose_language(attr.get("languageMap"), lang)
        rest = {k: v for k, v in attr.items() if k not in ("type", "languageMap")}
        return {"type": "Property", "value": chosen, "lang": tag, **rest}
    return attr


def compact(doc: dict[str, Any], ld: LdRequest) -> dict[str, Any]:
    out = jsonld.compact_entity(doc, ld.active)
    if ld.accept == JSONLD:
        out["@context"] = ld.context if ld.context is not None else jsonld.CORE_CONTEXT_URL
    return out


def link_header(ld: LdRequest) -> dict[str, str]:
    if ld.accept == JSONLD or (ld.accept == GEOJSON and ld.body_context):
        return {}
    url = ld.context if isinstance(ld.context, str) else jsonld.CORE_CONTEXT_URL
    return {"Link": jsonld.response_link_header(url)}


def tenant_header(ld: LdRequest) -> dict[str, str]:
    return {"NGSILD-Tenant": ld.tenant} if ld.tenant else {}


def ld_response(content: Any, ld: LdRequest, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON, JSON-LD or GeoJSON response: the @context goes in a Link header, or (ld+json) into every body object,
    or (geo+json) into the Feature or FeatureCollection."""
    context = ld.context if ld.context is not None else jsonld.CORE_CONTEXT_URL
    if ld.accept == JSONLD:
        if isinstance(content, dict):
            content = {**content, "@context": content.get("@context", context)}
        elif isinstance(content, list):
            content = [{**c, "@context": c.get("@context", context)} if isinstance(c, dict) else c for c in content]
    elif ld.accept == GEOJSON:
        from cityplus.modules.context.geojson import to_geojson

        content = to_geojson(content, ld.geometry_property, context if ld.body_context else None)
    return JSONResponse(content, status_code=status, media_type=ld.accept,
                        headers={**link_header(ld), **tenant_header(ld), **(headers or {})})


def bool_param(request: Request, name: str) -> bool:
    """A true/false URL parameter (absent: false); anything else is 400 naming the parameter."""
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise BadRequestData(f"{name} must be true or false, not {raw[:20]!r}")
    return raw == "true"


def int_param(request: Request, name: str, default: int, *, minimum: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestData(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise BadRequestData(f"{name} must be at least {minimum}")
    return value
