"""GeoJSON representation of entities (GS CIM 009 §4.5.16/§4.5.17, `Accept: application/geo+json`).

An entity becomes a Feature: its id, `"type": "Feature"`, the value of the GeoProperty named by `geometryProperty`
(default `location`, the default instance of a multi-attribute) as `geometry` — null when the entity lacks it or it is
not a geometry — and everything else (with the entity type, without the id) under `properties`. A query answers a
FeatureCollection. The @context goes into the top-level object unless the caller asked for a Link header.
"""

from __future__ import annotations

from typing import Any

from cityplus.modules.context.normalize import GEOJSON_TYPES


def _geometry(value: Any) -> dict[str, Any] | None:
    """The GeoJSON geometry in one rendered attribute (normalized, concise or simplified), or None."""
    if isinstance(value, list):
        default = [v for v in value if not (isinstance(v, dict) and "datasetId" in v)]
        return _geometry(default[0]) if default else None
    if not isinstance(value, dict):
        return None
    if value.get("type") in GEOJSON_TYPES and "coordinates" in value:
        return value
    if value.get("type") in ("GeoProperty", None) and isinstance(value.get("value"), dict):
        return _geometry(value["value"])
    return None


def feature(doc: dict[str, Any], geometry_property: str) -> dict[str, Any]:
    """One rendered entity as a GeoJSON Feature (without @context)."""
    props = {k: v for k, v in doc.items() if k not in ("id", "@context")}
    out: dict[str, Any] = {}
    if "id" in doc:
        out["id"] = doc["id"]
    out["type"] = "Feature"
    out["geometry"] = _geometry(doc.get(geometry_property))
    out["properties"] = props
    return out


def to_geojson(content: Any, geometry_property: str, context: Any) -> Any:
    """A Feature for one entity, a FeatureCollection for a list; other content is left alone."""
    if isinstance(content, dict) and "id" in content:
        out = feature(content, geometry_property)
    elif isinstance(content, list):
        out = {"type": "FeatureCollection",
               "features": [feature(c, geometry_property) for c in content if isinstance(c, dict)]}
    else:
        return content
    if context is not None:
        out["@context"] = context
    return out
