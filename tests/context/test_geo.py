"""NGSI-LD geo-queries: parsing, exact predicates, bbox narrowing (property-tested) and the SQL geo index."""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import MetaData, create_engine, insert, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url

from cityplus.modules.context.geo import (
    DEFAULT_GEOPROPERTY,
    GeoQuery,
    GeoQueryError,
    InvalidGeometry,
    bbox,
    bbox_condition,
    candidate_bbox,
    distance_m,
    geo_index_table,
    geometry_from_geojson,
    index_row,
    matches,
    parse_geo_query,
    sqlite_has_rtree,
    sqlite_rtree_ddl,
)
from tests.conftest import PG_URL, need, shared_dir

TIANFU = (104.0657, 30.6595)  # Tianfu Square, Chengdu
R = 6_371_008.8
LOC = DEFAULT_GEOPROPERTY


def _expand(term: str) -> str:
    return term if ":" in term else f"https://example.org/ns/{term}"


def q(georel: str, geometry: str, coordinates: Any) -> GeoQuery:
    """Parse a geo-query that must be valid."""
    coords = coordinates if isinstance(coordinates, str) else json.dumps(coordinates)
    parsed = parse_geo_query(georel, geometry, coords, None, _expand)
    assert parsed is not None
    return parsed


def ref_distance(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance by the Vincenty sphere formula (independent of the module's haversine)."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    num = math.hypot(math.cos(p2) * math.sin(dl),
                     math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl))
    den = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return R * math.atan2(num, den)


def destination(lon: float, lat: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """The point `dist_m` metres from lon/lat along `bearing_deg` (sphere)."""
    p1, l1, th, d = math.radians(lat), math.radians(lon), math.radians(bearing_deg), dist_m / R
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(th))
    l2 = l1 + math.atan2(math.sin(th) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    lon2 = (math.degrees(l2) + 540) % 360 - 180
    return lon2, math.degrees(p2)


def grid() -> list[tuple[float, float]]:
    """~2,000 jittered points within ±0.1° of Tianfu Square, plus points just inside/outside 2 km."""
    rnd = random.Random(20150101)
    pts = [(TIANFU[0] + (i - 22) * 0.0045 + rnd.uniform(-0.001, 0.001),
            TIANFU[1] + (j - 22) * 0.0045 + rnd.uniform(-0.001, 0.001)) for i in range(45) for j in range(45)]
    for bearing in range(0, 360, 15):
        pts.append(destination(*TIANFU, bearing, 1999.9))
        pts.append(destination(*TIANFU, bearing, 2000.1))
    return pts


GRID = grid()


def boxes_intersect(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


# ----------------------------------------------------------------------------------------------- parsing


def test_parse_near_max_distance_from_url_parameters() -> None:
    parsed = parse_geo_query("near;maxDistance==2000", "Point", "[104.0657,30.6595]", None, _expand)
    assert parsed == GeoQuery("near", 2000.0, None, Point(TIANFU), LOC)


def test_parse_variants() -> None:
    assert q("near;minDistance==10", "Point", [8, 40]).min_distance == 10.0
    poly = q("within", "Polygon", [[[100, 0], [101, 0], [101, 1], [100, 1], [100, 0]]])
    assert poly.georel == "within" and poly.geometry.equals(Polygon([(100, 0), (101, 0), (101, 1), (100, 1)]))
    assert q("intersects", "Point", [8, 40, 500]).geometry.equals(Point(8, 40))  # altitude ignored
    assert q("equals", "MultiPoint", [[8, 40], [9, 41]]).geometry.geom_type == "MultiPoint"
    assert q("overlaps", "MultiLineString", [[[8, 40], [9, 41]], [[1, 1], [2, 2]]]).geometry.geom_type == \
        "MultiLineString"
    for rel in ("contains", "disjoint"):
        assert q(rel, "LineString", [[8, 40], [9, 41]]).georel == rel


def test_parse_geo_q_body_with_list_coordinates_and_geoproperty() -> None:
    body = {"georel": "within", "geometry": "MultiPolygon", "geoproperty": "observationSpace",
            "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]], [[[2, 2], [3, 2], [3, 3], [2, 2]]]]}
    parsed = parse_geo_query(body["georel"], body["geometry"], body["coordinates"], body["geoproperty"], _expand)
    assert parsed is not None
    assert parsed.geoproperty == "https://example.org/ns/observationSpace"
    assert isinstance(parsed.geometry, MultiPolygon) and len(parsed.geometry.geoms) == 2


def test_parse_absent_is_none() -> None:
    assert parse_geo_query(None, None, None, None, _expand) is None
    assert parse_geo_query("", "", "", None, _expand) is None


INVALID = [
    ("near;maxDistance==10", "Point", None, "coordinates: georel, geometry and coordinates must be given together"),
    (None, "Point", "[8,40]", "georel: georel, geometry and coordinates must be given together"),
    ("within", None, None, "geometry, coordinates: georel, geometry and coordinates must be given together"),
    ("nearby", "Point", "[8,40]", "georel: unknown relation 'nearby'; expected one of near, within, contains"),
    ("Within", "Point", "[8,40]", "georel: unknown relation 'Within'"),
    ("near", "Point", "[8,40]", "georel: near requires maxDistance or minDistance"),
    ("near;maxDistance=2000", "Point", "[8,40]", "georel: bad near modifier 'maxDistance=2000'"),
    ("near;maxDistance==-5", "Point", "[8,40]", "georel: bad near modifier 'maxDistance==-5'"),
    ("near;maxDistance==abc", "Point", "[8,40]", "georel: bad near modifier"),
    ("near;distance==5", "Point", "[8,40]", "georel: bad near modifier 'distance==5'"),
    ("near;maxDistance==1e999", "Point", "[8,40]", "georel: maxDistance must be a finite number of metres"),
    ("near;maxDistance==1;maxDistance==2", "Point", "[8,40]", "georel: maxDistance given twice"),
    ("near;minDistance==100;maxDistance==1000", "Point", "[8,40]",
     "georel: near takes one of maxDistance or minDistance, not both"),
    ("near;maxDistance==0", "Point", "[8,40]", "georel: maxDistance must be a positive number of metres"),
    ("within;maxDistance==10", "Polygon", "[[[0,0],[1,0],[1,1],[0,0]]]", "georel: 'within' takes no modifiers"),
    ("within", "Circle", "[8,40]", "geometry: unsupported type 'Circle'; expected one of Point, MultiPoint"),
    ("within", "point", "[8,40]", "geometry: unsupported type 'point'"),
    ("near;maxDistance==1", "Point", "8,40", "coordinates: not a JSON array ('8,40')"),
    ("near;maxDistance==1", "Point", "[8,40", "coordinates: not a JSON array"),
    ("near;maxDistance==1", "Point", '{"lon": 8}', 'coordinates: must be a JSON array, got {"lon": 8}'),
    ("near;maxDistance==1", "Point", "[200,40]", "coordinates: longitude 200 is outside -180..180"),
    ("near;maxDistance==1", "Point", "[8,95]", "coordinates: latitude 95 is outside -90..90"),
    ("near;maxDistance==1", "Point", "[8]", "coordinates: position [8] must be [longitude, latitude]"),
    ("near;maxDistance==1", "Point", "[8,40,1,2]", "coordinates: position [8, 40, 1, 2] must be"),
    ("near;maxDistance==1", "Point", "[8,true]", "coordinates: position [8, true] must be"),
    ("near;maxDistance==1", "Point", '[8,"40"]', 'coordinates: position [8, "40"] must be'),
    ("near;maxDistance==1", "Point", "[NaN,40]", "coordinates: position [NaN, 40] must be"),
    ("near;maxDistance==1", "Point", "[[8,40]]", "coordinates: nesting depth 2 does not match geometry Point"),
    ("within", "Polygon", "[[8,40],[9,40],[9,41],[8,40]]",
     "coordinates: nesting depth 2 does not match geometry Polygon (expected 3)"),
    ("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]",
     "coordinates: polygon ring is not closed (first position [0.0, 0.0] differs from last [0.0, 1.0])"),
    ("within", "Polygon", "[[[0,0],[1,0],[0,0]]]", "coordinates: a polygon ring needs an array of at least 4"),
    ("intersects", "LineString", "[[8,40]]", "coordinates: a LineString needs an array of at least 2 positions"),
    ("intersects", "MultiLineString", "[[[8,40],[9,40]],[[8,40]]]", "coordinates: a LineString needs an array"),
    ("intersects", "MultiPoint", "[[8,40],[8,-91]]", "coordinates: latitude -91 is outside -90..90"),
    ("within", "MultiPolygon", "[]", "coordinates: nesting depth 1 does not match geometry MultiPolygon"),
]


@pytest.mark.parametrize(("georel", "geometry", "coordinates", "message"), INVALID)
def test_parse_invalid(georel: str | None, geometry: str | None, coordinates: str | None, message: str) -> None:
    with pytest.raises(GeoQueryError) as info:
        parse_geo_query(georel, geometry, coordinates, None, _expand)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_invalid_body_and_geoproperty() -> None:
    with pytest.raises(GeoQueryError, match=r"^coordinates: must be a JSON array, got \{\"x\": 1\}$"):
        parse_geo_query("within", "Point", {"x": 1}, None, _expand)
    with pytest.raises(GeoQueryError, match="^geoproperty: only allowed together with georel, geometry and coord"):
        parse_geo_query(None, None, None, "location", _expand)
    with pytest.raises(GeoQueryError, match="^geoproperty: invalid attribute name 'a b'$"):
        parse_geo_query("within", "Point", [8, 40], "a b", _expand)


# ----------------------------------------------------------------------------------------------- GeoJSON values


def test_invalid_polygons_are_repaired_not_refused() -> None:
    """A self-intersecting ring (the ETSI suite's building fixture has one) is accepted; predicates use make_valid."""
    bowtie = geometry_from_geojson({"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]})
    assert bowtie.is_valid and bowtie.area == pytest.approx(2.0)
    assert matches(q("intersects", "Polygon", [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]), Point(0.5, 1))
    assert not matches(q("intersects", "Polygon", [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]), Point(1, 0.5))
    hole_outside = geometry_from_geojson({"type": "Polygon", "coordinates": [
        [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[5, 5], [6, 5], [6, 6], [5, 5]]]})
    assert hole_outside.is_valid


def test_geometry_from_geojson_valid() -> None:
    assert geometry_from_geojson({"type": "Point", "coordinates": [8, 40, 12.5]}).equals(Point(8, 40))
    assert not geometry_from_geojson({"type": "Point", "coordinates": [8, 40, 12.5]}).has_z
    hole = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]],
                                               [[1, 1], [1, 2], [2, 2], [2, 1], [1, 1]]]}
    assert geometry_from_geojson(hole).area == 15
    gc = geometry_from_geojson({"type": "GeometryCollection", "geometries": [hole, {"type": "Point",
                                                                                   "coordinates": [9, 9]}]})
    assert gc.geom_type == "GeometryCollection" and bbox(gc) == (0, 0, 9, 9)


@pytest.mark.parametrize(("value", "message"), [
    ("POINT (8 40)", "GeoProperty value: must be a GeoJSON geometry object with 'type' and 'coordinates'"),
    ({"coordinates": [8, 40]}, "GeoProperty value: must be a GeoJSON geometry object"),
    ({"type": "Feature", "geometry": {}}, "GeoProperty value: unsupported GeoJSON type 'Feature'"),
    ({"type": "Point"}, "GeoProperty value: Point has no 'coordinates'"),
    ({"type": "Point", "coordinates": [40, 181]}, "GeoProperty value coordinates: latitude 181 is outside -90..90"),
    ({"type": "LineString", "coordinates": [8, 40]}, "GeoProperty value coordinates: a LineString needs an array"),
    ({"type": "GeometryCollection", "geometries": []}, "GeoProperty value: a GeometryCollection needs a non-empty"),
])
def test_geometry_from_geojson_invalid(value: Any, message: str) -> None:
    with pytest.raises(InvalidGeometry) as info:
        geometry_from_geojson(value)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, GeoQueryError)


def _reference_locations() -> list[tuple[str, Any]]:
    root = shared_dir()
    base = root / "reference" / "smart-data-models" if root else None
    if base is None or not base.is_dir():
        return []
    found = []
    for path in sorted(base.glob("*/example-normalized.json*")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for entity in data if isinstance(data, list) else [data]:
            loc = entity.get("location")
            if isinstance(loc, dict) and "value" in loc:
                found.append((f"{path.parent.name}/{path.name}", loc["value"]))
    return found


REFERENCE = _reference_locations()


def test_reference_examples_exist() -> None:
    if not REFERENCE:
        need(False, "shared/reference/smart-data-models is missing")
    assert len(REFERENCE) >= 20


@pytest.mark.parametrize(("name", "value"), REFERENCE, ids=[n for n, _ in REFERENCE])
def test_reference_example_location_parses(name: str, value: Any) -> None:
    geom = geometry_from_geojson(value)
    assert geom.is_valid and not geom.is_empty
    assert index_row(1, LOC, None, value)["minx"] == bbox(geom)[0]


# ----------------------------------------------------------------------------------------------- near


def _grid_matches(query: GeoQuery) -> set[int]:
    return {i for i, p in enumerate(GRID) if matches(query, Point(p))}


def test_near_max_distance_grid_equals_brute_force() -> None:
    query = q("near;maxDistance==2000", "Point", list(TIANFU))
    expected = {i for i, (x, y) in enumerate(GRID) if ref_distance(*TIANFU, x, y) <= 2000}
    got = _grid_matches(query)
    assert got == expected
    assert 60 < len(got) < 110  # π·2² km² / (0.5 × 0.43 km² per point) ≈ 58, plus the 24 just inside
    inside = {len(GRID) - 48 + 2 * k for k in range(24)}
    assert inside <= got and not ({i + 1 for i in inside} & got)


def test_near_min_distance() -> None:
    far = q("near;minDistance==1000", "Point", list(TIANFU))
    assert _grid_matches(far) == {i for i, (x, y) in enumerate(GRID) if ref_distance(*TIANFU, x, y) >= 1000}
    assert matches(q("near;maxDistance==0.001", "Point", [8, 40]), Point(8, 40))  # inclusive
    assert matches(q("near;minDistance==0", "Point", [8, 40]), Point(8, 40))


def _brute_distance(geom: BaseGeometry, lon: float, lat: float) -> float:
    """Minimum reference distance from lon/lat to a densely sampled geometry boundary (or 0 inside)."""
    if geom.intersects(Point(lon, lat)):
        return 0.0
    boundary = geom.boundary if geom.geom_type.endswith("Polygon") else geom
    coords = []
    for part in getattr(boundary, "geoms", [boundary]):
        line = part
        n = max(2, int(line.length / 1e-5))
        coords += [line.interpolate(k / n, normalized=True).coords[0] for k in range(n + 1)]
    return min(ref_distance(lon, lat, x, y) for x, y in coords)


@pytest.mark.parametrize("geom", [
    LineString([(104.08, 30.60), (104.08, 30.70)]),
    LineString([(104.03, 30.64), (104.10, 30.67), (104.12, 30.63)]),
    Polygon([(104.07, 30.665), (104.09, 30.665), (104.09, 30.68), (104.07, 30.68)]),
    Polygon([(104.0, 30.6), (104.2, 30.6), (104.2, 30.8), (104.0, 30.8)],
            [[(104.05, 30.65), (104.08, 30.65), (104.08, 30.67), (104.05, 30.67)]]),  # Tianfu is in the hole
    MultiPolygon([Polygon([(104.1, 30.7), (104.11, 30.7), (104.11, 30.71)]),
                  Polygon([(103.95, 30.55), (104.0, 30.55), (104.0, 30.6)])]),
])
def test_distance_to_lines_and_polygons_within_one_metre(geom: BaseGeometry) -> None:
    expected = _brute_distance(geom, *TIANFU)
    assert expected > 100
    assert abs(distance_m(geom, Point(TIANFU)) - expected) < 1.0
    assert abs(distance_m(Point(TIANFU), geom) - expected) < 1.0
    assert matches(q(f"near;maxDistance=={expected + 2}", "Point", list(TIANFU)), geom)
    assert not matches(q(f"near;maxDistance=={expected - 2}", "Point", list(TIANFU)), geom)
    assert matches(q(f"near;minDistance=={expected - 2}", "Point", list(TIANFU)), geom)


def test_distance_to_long_edges_follows_lon_lat_lines() -> None:
    """A 10°-long edge passing ~1.3 km from the query point: densification keeps the error under a metre."""
    line = LineString([(99.0, 30.672), (109.0, 30.672)])
    poly = Polygon([(99.0, 30.672), (109.0, 30.672), (109.0, 35.0), (99.0, 35.0)])
    expected = _brute_distance(LineString([(103.9, 30.672), (104.2, 30.672)]), *TIANFU)
    assert 1300 < expected < 1450
    assert abs(distance_m(line, Point(TIANFU)) - expected) < 1.0
    assert abs(distance_m(poly, Point(TIANFU)) - expected) < 1.0


def test_distance_special_cases() -> None:
    square = Polygon([(104.0, 30.6), (104.1, 30.6), (104.1, 30.7), (104.0, 30.7)])
    assert distance_m(square, Point(TIANFU)) == 0.0
    assert distance_m(Point(179.999, 0), Point(-179.999, 0)) == pytest.approx(222.4, abs=0.1)  # antimeridian
    other = Polygon([(104.2, 30.6), (104.3, 30.6), (104.3, 30.7)])
    assert distance_m(square, other) == pytest.approx(ref_distance(104.1, 30.65, 104.2, 30.65), rel=2e-3)
    assert matches(q("near;maxDistance==300", "Point", [179.999, 0]), Point(-179.999, 0))


# ----------------------------------------------------------------------------------------------- DE-9IM relations

SQUARE = [[104.0, 30.6], [104.1, 30.6], [104.1, 30.7], [104.0, 30.7], [104.0, 30.6]]
HOLE = [[104.04, 30.64], [104.04, 30.66], [104.06, 30.66], [104.06, 30.64], [104.04, 30.64]]
RELS = ("within", "contains", "intersects", "disjoint", "equals", "overlaps")


def _poly(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


RELATION_CASES = [
    # (query geometry, query coordinates, entity, set of relations that hold)
    ("Polygon", [SQUARE], Point(104.05, 30.65), {"within", "intersects"}),
    ("Polygon", [SQUARE], Point(104.2, 30.65), {"disjoint"}),
    ("Polygon", [SQUARE], Point(104.1, 30.65), {"intersects"}),  # on the boundary: not within
    ("Polygon", [SQUARE, HOLE], Point(104.05, 30.65), {"disjoint"}),  # in the hole
    ("Polygon", [SQUARE, HOLE], Point(104.02, 30.65), {"within", "intersects"}),
    ("Polygon", [SQUARE], LineString([(104.01, 30.61), (104.09, 30.69)]), {"within", "intersects"}),
    ("Polygon", [SQUARE], LineString([(104.05, 30.65), (104.2, 30.65)]), {"intersects"}),
    ("Polygon", [SQUARE, HOLE], LineString([(104.01, 30.65), (104.09, 30.65)]), {"intersects"}),
    ("Polygon", [SQUARE], Polygon([(104.1, 30.7), (104.0, 30.7), (104.0, 30.6), (104.1, 30.6)]),
     {"within", "contains", "intersects", "equals"}),
    ("Polygon", [SQUARE], _poly(103.9, 30.5, 104.2, 30.8), {"contains", "intersects"}),
    ("Polygon", [SQUARE], _poly(104.05, 30.65, 104.2, 30.8), {"intersects", "overlaps"}),
    ("Polygon", [SQUARE], _poly(104.1, 30.6, 104.2, 30.7), {"intersects"}),  # shares an edge only
    ("Polygon", [SQUARE, HOLE], _poly(104.045, 30.645, 104.055, 30.655), {"disjoint"}),
    ("Polygon", [SQUARE], MultiPolygon([_poly(104.01, 30.61, 104.02, 30.62), _poly(104.03, 30.61, 104.04, 30.62)]),
     {"within", "intersects"}),
    ("Polygon", [SQUARE], MultiPolygon([_poly(104.01, 30.61, 104.02, 30.62), _poly(104.3, 30.61, 104.4, 30.62)]),
     {"intersects", "overlaps"}),
    ("MultiPolygon", [[SQUARE], [[[105, 31], [106, 31], [106, 32], [105, 32], [105, 31]]]],
     Point(105.5, 31.5), {"within", "intersects"}),
    ("Point", [104.05, 30.65], _poly(104.0, 30.6, 104.1, 30.7), {"contains", "intersects"}),
    ("Point", [104.05, 30.65], Point(104.05, 30.65), {"within", "contains", "intersects", "equals"}),
    ("LineString", [[104.0, 30.6], [104.1, 30.6]], LineString([(104.05, 30.6), (104.2, 30.6)]),
     {"intersects", "overlaps"}),
    ("LineString", [[104.0, 30.6], [104.1, 30.6]], LineString([(104.05, 30.5), (104.05, 30.7)]), {"intersects"}),
    ("LineString", [[104.0, 30.6], [104.1, 30.6]], Point(104.05, 30.6), {"within", "intersects"}),
    ("MultiPoint", [[104.0, 30.6], [104.1, 30.6]], Point(104.0, 30.6), {"within", "intersects"}),
]


@pytest.mark.parametrize(("geometry", "coords", "entity", "holds"), RELATION_CASES)
def test_relations(geometry: str, coords: Any, entity: BaseGeometry, holds: set[str]) -> None:
    got = {rel for rel in RELS if matches(q(rel, geometry, coords), entity)}
    assert got == holds
    for rel in got - {"disjoint"}:  # the narrowing box never excludes a true match
        box = candidate_bbox(q(rel, geometry, coords))
        assert box is not None and boxes_intersect(box, bbox(entity))
    assert candidate_bbox(q("disjoint", geometry, coords)) is None


# ----------------------------------------------------------------------------------------------- candidate_bbox


@settings(max_examples=200, deadline=None)
@given(lon=st.floats(-180, 180), lat=st.floats(-89, 89), dist=st.floats(0.5, 300_000), bearing=st.floats(0, 360),
       frac=st.floats(0, 1.2), line=st.booleans())
def test_candidate_bbox_never_excludes_a_near_match(lon: float, lat: float, dist: float, bearing: float,
                                                     frac: float, line: bool) -> None:
    query = GeoQuery("near", dist, None, Point(lon, lat))
    target = destination(lon, lat, bearing, dist * frac)
    entity: BaseGeometry = Point(target)
    if line:  # a 500 m segment starting at the target (not wrapping around the antimeridian)
        far = destination(*target, bearing, 500.0)
        if abs(far[0] - target[0]) < 90:
            entity = LineString([target, far])
    box = candidate_bbox(query)
    assert box is not None and box[0] <= box[2] and box[1] <= box[3]
    if matches(query, entity):
        assert boxes_intersect(box, bbox(entity)), (box, bbox(entity))
    if frac <= 0.999 and entity.geom_type == "Point":
        assert matches(query, entity)


@settings(max_examples=200, deadline=None)
@given(x0=st.floats(-170, 160), y0=st.floats(-80, 70), w=st.floats(0.001, 5), h=st.floats(0.001, 5),
       ex=st.floats(-1, 2), ey=st.floats(-1, 2), ew=st.floats(0, 1.5), eh=st.floats(0, 1.5),
       rel=st.sampled_from(RELS))
def test_candidate_bbox_never_excludes_a_relation_match(x0: float, y0: float, w: float, h: float, ex: float,
                                                         ey: float, ew: float, eh: float, rel: str) -> None:
    query = GeoQuery(rel, None, None, _poly(x0, y0, x0 + w, y0 + h))
    ax, ay = x0 + ex * w, y0 + ey * h
    entity = Point(ax, ay) if ew * eh == 0 else _poly(ax, ay, ax + ew * w, ay + eh * h)
    box = candidate_bbox(query)
    if rel == "disjoint":
        assert box is None
    elif matches(query, entity):
        assert box is not None and boxes_intersect(box, bbox(entity))


def test_candidate_bbox_shapes() -> None:
    box = candidate_bbox(q("near;maxDistance==2000", "Point", list(TIANFU)))
    assert box is not None
    half_w_m = (box[2] - box[0]) / 2 * R * math.pi / 180 * math.cos(math.radians(TIANFU[1]))
    half_h_m = (box[3] - box[1]) / 2 * R * math.pi / 180
    assert 2000 < half_w_m < 2010 and 2000 < half_h_m < 2010  # conservative, but tight
    assert candidate_bbox(q("near;minDistance==10", "Point", [8, 40])) is None
    assert candidate_bbox(q("near;maxDistance==1000", "Point", [179.995, 10]))[::2] == (-180.0, 180.0)
    assert candidate_bbox(q("near;maxDistance==50000", "Point", [10, 89.9]))[::2] == (-180.0, 180.0)
    assert candidate_bbox(q("within", "Polygon", [SQUARE])) == (104.0, 30.6, 104.1, 30.7)


# ----------------------------------------------------------------------------------------------- SQL storage


def _entities() -> list[tuple[int, dict[str, Any]]]:
    """The grid as Points plus a few lines/polygons around Tianfu Square, as (entity_pk, GeoJSON)."""
    rows = [(i, {"type": "Point", "coordinates": list(p)}) for i, p in enumerate(GRID)]
    extra = [
        {"type": "LineString", "coordinates": [[104.08, 30.60], [104.08, 30.70]]},
        {"type": "Polygon", "coordinates": [[[104.07, 30.665], [104.09, 30.665], [104.09, 30.68], [104.07, 30.68],
                                             [104.07, 30.665]]]},
        {"type": "Polygon", "coordinates": [SQUARE, HOLE]},
        {"type": "Polygon", "coordinates": [[[104.2, 30.8], [104.3, 30.8], [104.3, 30.9], [104.2, 30.8]]]},
        {"type": "MultiPolygon", "coordinates": [[[[104.05, 30.65], [104.06, 30.65], [104.06, 30.66],
                                                   [104.05, 30.65]]], [[[104.5, 31], [104.6, 31], [104.6, 31.1],
                                                                        [104.5, 31]]]]},
    ]
    return rows + [(10_000 + k, g) for k, g in enumerate(extra)]


@pytest.fixture(params=["sqlite", "sqlite-btree", pytest.param("postgres", marks=pytest.mark.postgres)])
def geo_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, bool]]:
    """An engine on a scratch database, and whether to use the SQLite rtree."""
    if request.param != "postgres":
        engine = create_engine(f"sqlite:///{tmp_path / 'geo.db'}")
        yield engine, request.param == "sqlite"
        engine.dispose()
        return
    need(bool(PG_URL), "CITYPLUS_TEST_POSTGRES_URL is not set (PostgreSQL tests)")
    admin_url = make_url(PG_URL).set(database=make_url(PG_URL).database or "postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"cityplus_geo_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(admin_url.set(database=name))
    try:
        yield engine, False
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


SQL_QUERIES = [
    ("near;maxDistance==2000", "Point", list(TIANFU)),
    ("near;maxDistance==500", "Point", [104.08, 30.67]),
    ("within", "Polygon", [[[104.05, 30.64], [104.07, 30.64], [104.07, 30.66], [104.05, 30.66], [104.05, 30.64]]]),
    ("contains", "Point", [104.08, 30.67]),
    ("intersects", "LineString", [[104.06, 30.65], [104.09, 30.68]]),
    ("equals", "Polygon", [SQUARE, HOLE]),
    ("overlaps", "Polygon", [[[104.05, 30.63], [104.07, 30.63], [104.07, 30.65], [104.05, 30.65], [104.05, 30.63]]]),
]


def test_geo_index_in_sql(geo_engine: tuple[Engine, bool]) -> None:
    engine, use_rtree = geo_engine
    metadata = MetaData()
    t = geo_index_table(metadata)
    metadata.create_all(engine)
    sqlite = engine.dialect.name == "sqlite"
    names = inspect(engine).get_table_names()
    assert "context_geo_index" in names
    assert ("context_geo_rtree" in names) == (sqlite and sqlite_has_rtree())
    entities = _entities()
    with engine.begin() as conn:
        conn.execute(insert(t), [index_row(pk, LOC, None, g) for pk, g in entities])
        conn.execute(insert(t), [index_row(pk, "https://example.org/ns/other", "urn:ds:1", g) for pk, g in entities])
    by_pk = {pk: geometry_from_geojson(g) for pk, g in entities}
    total = len(entities)
    for georel, geometry, coords in SQL_QUERIES:
        query = q(georel, geometry, coords)
        cond = bbox_condition(query, t, engine.dialect.name, use_rtree=use_rtree if sqlite else None)
        assert cond is not None
        with engine.connect() as conn:
            cand = set(conn.scalars(select(t.c.entity_pk).where(t.c.attr == query.geoproperty, cond)))
        exact = {pk for pk, g in by_pk.items() if matches(query, g)}
        assert exact, georel
        assert exact <= cand, (georel, exact - cand)
        assert len(cand) < total / 4, (georel, len(cand))
        if georel == "near" and query.max_distance == 2000:
            assert len(cand) < total / 10 and len(cand) < 1.5 * len(exact) + 10
    assert bbox_condition(q("disjoint", "Point", [8, 40]), t, engine.dialect.name) is None
    assert bbox_condition(q("near;minDistance==5", "Point", [8, 40]), t, engine.dialect.name) is None


@pytest.mark.skipif(not sqlite_has_rtree(), reason="SQLite without the rtree module")
def test_sqlite_rtree_triggers_stay_in_sync(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'rtree.db'}")
    metadata = MetaData()
    t = geo_index_table(metadata)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(t), [index_row(1, LOC, None, {"type": "Point", "coordinates": [1, 2]})])
            for name in ("context_geo_rtree_ai", "context_geo_rtree_au", "context_geo_rtree_ad"):
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
            conn.exec_driver_sql("DROP TABLE context_geo_rtree")
            conn.execute(insert(t), [index_row(4, LOC, None, {"type": "Point", "coordinates": [9, 9]})])
            for _ in range(2):  # a migration creating the rtree late backfills; the DDL is idempotent
                for stmt in sqlite_rtree_ddl():
                    conn.exec_driver_sql(stmt)
            assert conn.exec_driver_sql("SELECT count(*) FROM context_geo_rtree").scalar() == 2
            conn.execute(insert(t), [index_row(2, LOC, None, {"type": "Point", "coordinates": [3, 4]})])
            conn.execute(insert(t), [{"entity_pk": 3, "attr": LOC}])  # a row without bbox is not indexed
            conn.execute(update(t).where(t.c.entity_pk == 2).values(minx=5, maxx=6, miny=7, maxy=8))
            conn.execute(t.delete().where(t.c.entity_pk == 1))
            rows = conn.exec_driver_sql("SELECT id, minx, maxx, miny, maxy FROM context_geo_rtree").all()
            ids = dict(conn.execute(select(t.c.entity_pk, t.c.id)).all())
        assert sorted(tuple(r) for r in rows) == sorted([(ids[2], 5.0, 6.0, 7.0, 8.0), (ids[4], 9.0, 9.0, 9.0, 9.0)])
    finally:
        engine.dispose()


def test_sqlite_rtree_ddl_shape() -> None:
    ddl = sqlite_rtree_ddl()
    if not sqlite_has_rtree():
        assert ddl == []
        return
    assert ddl[0] == "CREATE VIRTUAL TABLE IF NOT EXISTS context_geo_rtree USING rtree(id, minx, maxx, miny, maxy)"
    assert sum("CREATE TRIGGER" in s for s in ddl) == 3

