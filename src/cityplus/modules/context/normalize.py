"""Entity structure: validate input, turn concise attributes into normalized ones, shape output formats."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime
from typing import Any

from cityplus.modules.context.errors import BadRequestData

ATTR_TYPES = ("Property", "Relationship", "GeoProperty", "LanguageProperty", "VocabProperty", "ListProperty",
              "ListRelationship", "JsonProperty")
# Members of an attribute that are not sub-attributes.
MEMBERS = frozenset({"type", "value", "object", "objectList", "valueList", "languageMap", "vocab", "json",
                     "observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "deletedAt", "instanceId",
                     "objectType", "lang"})
SYSTEM = frozenset({"createdAt", "modifiedAt", "deletedAt"})
ENTITY_RESERVED = frozenset({"id", "type", "scope", "@context", "createdAt", "modifiedAt", "deletedAt"})
GEOJSON_TYPES = frozenset({"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"})
VALUE_MEMBER = {"Property": "value", "GeoProperty": "value", "Relationship": "object", "LanguageProperty":
                "languageMap", "VocabProperty": "vocab", "ListProperty": "valueList", "ListRelationship":
                "objectList", "JsonProperty": "json"}
URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
NAME_RE = re.compile(r"^[^\s<>\"'=;()\[\]]{1,256}$")
MAX_DEPTH = 8
NGSI_NULL = "urn:ngsi-ld:null"
# Core terms that are members of an attribute, never attribute names themselves (§4.5.1).
CORE_MEMBER_NAMES = frozenset({"datasetId", "instanceId", "observedAt", "unitCode"})
# Output-only members (notifications carry them); a request that sends them is malformed (§4.5.2.2, §4.5.3.2).
OUTPUT_ONLY = frozenset({"previousValue", "previousObject", "previousObjectList", "previousValueList",
                         "previousLanguageMap", "previousVocab", "previousJson"})
SEALED = frozenset({"entityIdSealed", "entityTypeSealed"})  # members of ngsildproof only
CORE_GEO_PROPERTIES = frozenset({"location", "observationSpace", "operationSpace"})
LANG_STRING = frozenset({"langString", "rdf:langString", "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"})


# Characters that render as nothing (or as a blank) and make two different ids look the same: refused in URIs.
_INVISIBLE = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800})


def _visible(ch: str) -> bool:
    code = ord(ch)
    if code < 0x80:
        return True
    if code in _INVISIBLE or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:
        return False  # fillers, blank patterns, variation selectors
    return unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 512 and bool(URI_RE.match(value)) and \
        all(_visible(ch) for ch in value)


def check_datetime(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequestData(f"{where} must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequestData(f"{where} is not an ISO 8601 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        raise BadRequestData(f"{where} must carry a time zone (e.g. Z): {value!r}")
    return value


def entity_types(value: Any) -> list[str]:
    """The entity's type(s) as a non-empty list of names."""
    types = value if isinstance(value, list) else [value]
    if not types or not all(isinstance(t, str) and NAME_RE.match(t) for t in types):
        raise BadRequestData("entity type must be a name or a non-empty list of names")
    for t in types:
        # §4.6.2: a name starts with a letter (a URI does, too); "type" and "id" are the keywords' aliases.
        if t[0].isdigit() or t in ("type", "id") or t.startswith("@"):
            raise BadRequestData(f"invalid entity type {t[:80]!r}: a type name starts with a letter")
    return list(dict.fromkeys(types))


def normalize_entity(body: Any, *, require_id: bool = True, require_type: bool = True) -> dict[str, Any]:
    """Validate an entity (normalized or concise) and return it normalized; raises BadRequestData."""
    if not isinstance(body, dict):
        raise BadRequestData("an entity must be a JSON object")
    for keyword, alias in (("@id", "id"), ("@type", "type")):  # §4.4: the keywords are accepted on input
        if keyword in body:
            if alias in body:
                raise BadRequestData(f"the entity gives both {keyword} and {alias}")
            body = {(alias if k == keyword else k): v for k, v in body.items()}
    out: dict[str, Any] = {}
    if "id" in body or require_id:
        if not is_uri(body.get("id")):
            raise BadRequestData("entity id must be a URI (e.g. urn:ngsi-ld:Building:1)")
        out["id"] = body["id"]
    if "type" in body or require_type:
        if "type" not in body:
            raise BadRequestData("entity type is missing")
        out["type"] = entity_types(body["type"])
    if "scope" in body:
        out["scope"] = check_scopes(body["scope"])
    for name, value in body.items():
        if name in ENTITY_RESERVED:
            continue
        if name in CORE_MEMBER_NAMES or name in OUTPUT_ONLY or name.startswith("@"):
            raise BadRequestData(f"{name!r} is a core member, not an attribute name")
        out[check_name(name)] = normalize_attribute(name, value)
        if name in CORE_GEO_PROPERTIES and not all(_geo_like(i) for i in _as_list(out[name])):
            raise BadRequestData(f"{name} is a GeoProperty (§4.7.1)")
    return out


def _geo_like(inst: dict[str, Any]) -> bool:
    # Some Smart Data Models examples (DeviceMeasurement) type location as a Property holding GeoJSON: kept.
    value = inst.get("value")
    return inst.get("type") == "GeoProperty" or (inst.get("type") == "Property" and isinstance(value, dict)
                                                 and value.get("type") in GEOJSON_TYPES)


def _as_list(attr: Any) -> list[dict[str, Any]]:
    return attr if isinstance(attr, list) else [attr]


def reject_nulls(entity: dict[str, Any]) -> None:
    """NGSI-LD Null only means "delete" in updates: in a created entity it is BadRequestData (§5.2.1, §5.5.4)."""
    if entity.get("id") == NGSI_NULL or NGSI_NULL in (entity.get("scope") or []):
        raise BadRequestData("urn:ngsi-ld:null (NGSI-LD Null) cannot be an entity id or scope")
    for name, attr in entity.items():
        if name not in ("id", "type", "scope") and _has_null(attr):
            raise BadRequestData(f"attribute {name}: NGSI-LD Null (urn:ngsi-ld:null) is only meaningful in an "
                                 "update; a new entity cannot hold it")


def _has_null(value: Any) -> bool:
    if value == NGSI_NULL:
        return True
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


def nested_null(value: Any) -> bool:
    """Whether NGSI-LD Null appears inside a compound value (only a merge may remove keys that way, §5.5.4)."""
    return isinstance(value, dict | list) and _has_null(value)


def check_scopes(value: Any) -> list[str]:
    scopes = value if isinstance(value, list) else [value]
    for s in scopes:
        if not isinstance(s, str) or not re.fullmatch(r"(/[^/#+\s]+)+", s):
            raise BadRequestData(f"invalid scope {s!r}: scopes look like /Madrid/Gardens")
    return scopes


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadRequestData(f"invalid attribute name {name!r}")
    return name


def normalize_attribute(name: str, value: Any, depth: int = 0, *, partial: bool = False
                        ) -> dict[str, Any] | list[dict[str, Any]]:
    """One attribute, or a list of instances told apart by datasetId (partial: a patch fragment, value optional)."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and _looks_like_attribute(v) for v in value):
        instances = [_normalize_instance(name, v, depth, partial) for v in value]
        seen: set[str | None] = set()
        for inst in instances:
            ds = inst.get("datasetId")
            if ds in seen:
                label = "the default instance" if ds is None else f"datasetId {ds}"
                raise BadRequestData(f"attribute {name}: {label} appears twice")
            seen.add(ds)
        return instances if len(instances) > 1 else instances[0]
    return _normalize_instance(name, value, depth, partial)


def _looks_like_attribute(v: dict[str, Any]) -> bool:
    return v.get("type") in ATTR_TYPES or any(k in v for k in ("value", "object", "languageMap", "vocab",
                                                                "valueList", "objectList", "json"))


def _normalize_instance(name: str, value: Any, depth: int, partial: bool = False) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise BadRequestData(f"attribute {name}: sub-attributes nested too deeply")
    if not isinstance(value, dict):
        if value is None:
            raise BadRequestData(f"attribute {name}: null is not a value (NGSI-LD Null is urn:ngsi-ld:null)")
        return {"type": "Property", "value": value}
    kind = value.get("type")
    if kind not in ATTR_TYPES:
        kind = _concise_kind(value)
        if kind == "GeoProperty" and "value" not in value:
            value = {"value": value}  # concise GeoProperty: the GeoJSON geometry itself
        elif kind == "Property" and not partial and not any(k in value for k in VALUE_MEMBER.values()):
            value = {"value": value}  # a JSON object as the value of a concise Property (a patch names members)
    out: dict[str, Any] = {"type": kind}
    member = VALUE_MEMBER[kind]
    _check_members(name, kind, value, depth)
    if member in value and value[member] == NGSI_NULL:
        out[member] = NGSI_NULL  # NGSI-LD Null: "delete this" in updates, whatever the attribute type
    elif member in value:
        out[member] = _check_value(name, kind, value[member])
    elif not partial:
        raise BadRequestData(f"attribute {name}: a {kind} needs '{member}'")
    for key, sub in value.items():
        if key in ("type", member):
            continue
        if key == "observedAt":
            out[key] = check_datetime(sub, f"attribute {name}: observedAt")
        elif key == "unitCode":
            if not isinstance(sub, str):
                raise BadRequestData(f"attribute {name}: unitCode must be a string")
            out[key] = sub
        elif key == "datasetId":
            if sub == "@none":
                continue  # §4.5.5: "@none" names the default instance, which carries no datasetId
            if sub == NGSI_NULL:
                raise BadRequestData(f"attribute {name}: a datasetId cannot be deleted with urn:ngsi-ld:null")
            if not is_uri(sub):
                raise BadRequestData(f"attribute {name}: datasetId must be a URI")
            out[key] = sub
        elif key in SYSTEM or key in ("instanceId",):
            continue  # system-generated; ignored on input
        elif key in MEMBERS:
            if key == "objectType" or key == "lang":
                out[key] = sub
            else:
                raise BadRequestData(f"attribute {name}: '{key}' does not belong in a {kind}")
        else:
            out[check_name(key)] = normalize_attribute(key, sub, depth + 1)
    return out


def _check_members(name: str, kind: str, value: dict[str, Any], depth: int) -> None:
    """Members an attribute of this type shall never carry on input (§4.5.2.2, §4.5.3.2, §4.5.24.2, §5.5.7)."""
    if "@context" in value:
        raise BadRequestData(f"attribute {name}: an @context belongs to the request, not inside an attribute")
    for key in value:
        if key in OUTPUT_ONLY:
            raise BadRequestData(f"attribute {name}: '{key}' is output only (notifications)")
        if key in SEALED and name != "ngsildproof":
            raise BadRequestData(f"attribute {name}: '{key}' is only allowed in ngsildproof")
        if key in SEALED and not isinstance(value[key], str):
            raise BadRequestData(f"attribute {name}: '{key}' must be a string")
    if name == "ngsildproof" and depth == 0 and "value" in value and not isinstance(value["value"], dict):
        raise BadRequestData("ngsildproof: the value is a W3C Data Integrity proof object")
    if "unitCode" in value and kind in ("Relationship", "ListRelationship", "JsonProperty"):
        raise BadRequestData(f"attribute {name}: a {kind} has no unitCode")
    if kind == "LanguageProperty" and "valueType" in value and value["valueType"] not in LANG_STRING:
        raise BadRequestData(f"attribute {name}: the valueType of a LanguageProperty is langString")


def _concise_kind(value: dict[str, Any]) -> str:
    if "object" in value:
        return "Relationship"
    if "objectList" in value:
        return "ListRelationship"
    if "languageMap" in value:
        return "LanguageProperty"
    if "vocab" in value:
        return "VocabProperty"
    if "valueList" in value:
        return "ListProperty"
    if "json" in value:
        return "JsonProperty"
    if value.get("type") in GEOJSON_TYPES and "coordinates" in value:
        return "GeoProperty"
    inner = value.get("value")
    if isinstance(inner, dict) and inner.get("type") in GEOJSON_TYPES and "coordinates" in inner:
        return "GeoProperty"
    return "Property"


def _check_value(name: str, kind: str, v: Any) -> Any:
    if kind == "Property":
        if v is None:
            raise BadRequestData(f"attribute {name}: a Property value cannot be null")
        return v
    if kind == "GeoProperty":
        from cityplus.modules.context.geo import InvalidGeometry, geometry_from_geojson

        if isinstance(v, str) and v.lstrip().startswith("{"):
            try:  # §4.7.2: a string holding GeoJSON is accepted and stored as the geometry object
                v = json.loads(v)
            except ValueError:
                raise BadRequestData(f"attribute {name}: the string value is not GeoJSON") from None
        if isinstance(v, dict) and v.get("type") == "GeometryCollection":
            raise BadRequestData(f"attribute {name}: GeometryCollection is not a GeoProperty value (§4.7.1)")
        try:
            geometry_from_geojson(v)
        except InvalidGeometry as exc:
            raise BadRequestData(f"attribute {name}: {exc}") from None
        return v
    if kind == "Relationship":
        targets = v if isinstance(v, list) else [v]
        if not targets or not all(is_uri(t) for t in targets):
            raise BadRequestData(f"attribute {name}: a Relationship object must be a URI")
        return v
    if kind == "ListRelationship":
        items = [t.get("object") if isinstance(t, dict) else t for t in v] if isinstance(v, list) else None
        if items is None or not all(is_uri(t) for t in items):
            raise BadRequestData(f"attribute {name}: objectList must be a list of URIs")
        return v
    if kind == "LanguageProperty":
        if not isinstance(v, dict) or not v or not all(isinstance(k, str) and k and _strings(t) for k, t in v.items()):
            raise BadRequestData(f"attribute {name}: languageMap must map language tags to strings")
        return v
    if kind == "VocabProperty":
        terms = v if isinstance(v, list) else [v]
        if not terms or not all(isinstance(t, str) and t for t in terms):
            raise BadRequestData(f"attribute {name}: vocab must be a term or a list of terms")
        return v
    if kind == "ListProperty":
        if not isinstance(v, list):
            raise BadRequestData(f"attribute {name}: valueList must be a list")
        return v
    if not isinstance(v, dict | list):
        raise BadRequestData(f"attribute {name}: json is a JSON object or array, not a {type(v).__name__}")
    return v  # JsonProperty: raw JSON, kept verbatim


def _strings(t: Any) -> bool:
    return isinstance(t, str) or (isinstance(t, list) and all(isinstance(x, str) for x in t))


def is_null(value: Any) -> bool:
    """Whether an attribute (instance) is NGSI-LD Null, i.e. asks for its deletion."""
    if value == NGSI_NULL:
        return True
    if isinstance(value, dict):
        member = value.get(VALUE_MEMBER.get(value.get("type", ""), "value"))
        # A LanguageProperty's Null is {"@none": "urn:ngsi-ld:null"} (GS CIM 009 §4.5.18).
        return member == NGSI_NULL or member == {"@none": NGSI_NULL}
    return False


def without_nulls(attr: Any) -> Any:
    """An attribute without NGSI-LD Null instances or sub-attributes (None when nothing is left)."""
    if isinstance(attr, list):
        kept = [a for a in (without_nulls(i) for i in attr) if a is not None]
        return kept[0] if len(kept) == 1 else (kept or None)
    if is_null(attr):
        return None
    return {k: v for k, v in attr.items() if k in MEMBERS or not is_null(v)}


def without_system(attr: Any) -> Any:
    """An attribute (or instance list) with createdAt/modifiedAt removed, recursively."""
    if isinstance(attr, list):
        return [without_system(a) for a in attr]
    if not isinstance(attr, dict):
        return attr
    return {k: without_system(v) if k not in MEMBERS else v for k, v in attr.items() if k not in SYSTEM}


def simplified(attr: Any, lang: str | None = None) -> Any:
    """keyValues form of one attribute: just its value (instances become a list)."""
    if isinstance(attr, list):
        return [simplified(a, lang) for a in attr]
    kind = attr.get("type")
    member = VALUE_MEMBER.get(kind, "value")
    value = attr.get(member)
    if kind == "LanguageProperty" and lang:
        return _pick_language(value, lang)
    if kind == "LanguageProperty":
        return {"languageMap": value}
    if kind == "ListRelationship" and isinstance(value, list):
        return [i.get("object") if isinstance(i, dict) else i for i in value]  # bare target ids
    return value


def object_list_entries(attr: Any) -> Any:
    """A ListRelationship's objectList as {"object": uri} entries (§4.5.22.3), whichever form it was given in."""
    if isinstance(attr, list):
        return [object_list_entries(a) for a in attr]
    if not isinstance(attr, dict) or attr.get("type") != "ListRelationship" or \
            not isinstance(attr.get("objectList"), list):
        return attr
    return {**attr, "objectList": [i if isinstance(i, dict) else {"object": i} for i in attr["objectList"]]}


def concise(attr: Any, lang: str | None = None) -> Any:
    """Concise form: drop 'type' where the member implies it; Property with no metadata becomes its value."""
    if isinstance(attr, list):
        return [concise(a, lang) for a in attr]
    kind = attr.get("type")
    out = {k: (concise(v, lang) if k not in MEMBERS else v) for k, v in attr.items() if k != "type"}
    if kind == "LanguageProperty" and lang:
        out.pop("languageMap", None)
        out["lang"], out["value"] = choose_language(attr.get("languageMap"), lang)
    if kind in ("Property", "GeoProperty") and set(out) == {"value"}:
        return out["value"]
    return out


def _pick_language(value: Any, lang: str) -> Any:
    return choose_language(value, lang)[1]


def parse_lang(lang: str) -> list[str]:
    """The language ranges of a `lang` parameter (RFC 9110 Accept-Language syntax), best first (q, then order)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(lang.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        k, _, v = params.strip().partition("=")
        if k.strip() == "q":
            try:
                q = float(v)
            except ValueError:
                q = 1.0
        if tag.strip() and q > 0:
            ranked.append((-q, i, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranked)]


def choose_language(value: Any, lang: str) -> tuple[str | None, Any]:
    """(tag, string) of a languageMap for a `lang` parameter (§4.15, RFC 4647 lookup, case-insensitive).

    Each range, best first: an exact tag, then a longer tag it is a prefix of (en → en-US), then the range truncated
    (nl-BE → nl); `*` takes any tag. Failing all of them: `@none`, else any language the map has.
    """
    if not isinstance(value, dict) or not value:
        return None, value
    tags = {str(k).lower(): k for k in value}
    for rng in parse_lang(lang):
        if rng == "*":
            key = next((k for k in value if k != "@none"), next(iter(value)))
            return key, value[key]
        if rng in tags:
            return tags[rng], value[tags[rng]]
        longer = next((t for t in tags if t.startswith(rng + "-")), None)
        if longer is not None:
            return tags[longer], value[tags[longer]]
        parts = rng.split("-")
        while len(parts) > 1:
            parts.pop()
            shorter = "-".join(parts)
            if shorter in tags:
                return tags[shorter], value[tags[shorter]]
    key = "@none" if "@none" in value else next(iter(value))
    return key, value[key]
