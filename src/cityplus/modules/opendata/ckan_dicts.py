"""CKAN dictionaries: our catalogue objects as CKAN package/resource/organization/group dicts, and back."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cityplus.core.errors import Unprocessable
from cityplus.core.identity.models import Organisation
from cityplus.modules.opendata.models import Dataset, Resource
from cityplus.modules.opendata.quality import quality
from cityplus.modules.opendata.schemas import DatasetFields, ResourceFields
from cityplus.modules.opendata.vocab import LICENCES, THEMES


def _iso(v: Any) -> str | None:
    return v.replace(tzinfo=None).isoformat() if v is not None else None


def org_dict(org: Organisation, package_count: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": org.code, "name": org.code, "title": org.name_zh, "display_name": org.name_zh,
                           "title_en": org.name_en, "description": org.full_name_zh, "type": "organization",
                           "is_organization": True, "state": "active", "image_url": "", "approval_status": "approved"}
    if package_count is not None:
        out["package_count"] = package_count
    return out


def group_dict(code: str, package_count: int | None = None) -> dict[str, Any]:
    t = THEMES[code]
    out: dict[str, Any] = {"id": code, "name": code, "title": t.zh, "display_name": t.zh, "title_en": t.en,
                           "description": t.uri, "type": "group", "is_organization": False, "state": "active",
                           "image_url": ""}
    if package_count is not None:
        out["package_count"] = package_count
    return out


def resource_dict(res: Resource, base_url: str, dataset_name: str) -> dict[str, Any]:
    url = res.url
    if res.kind == "file":
        url = f"{base_url.rstrip('/')}/opendata/dataset/{dataset_name}/resource/{res.id}/download"
    return {"id": res.id, "package_id": res.dataset_id, "name": res.name, "description": res.description,
            "format": res.format, "url": url, "url_type": "upload" if res.kind == "file" else "",
            "resource_type": res.kind, "size": res.size, "hash": f"sha256:{res.sha256}" if res.sha256 else "",
            "mimetype": None, "created": _iso(res.created_at), "last_modified": _iso(res.modified_at),
            "position": res.position, "state": "active", "datastore_active": bool(res.datastore_table),
            "encoding": res.encoding}


def package_dict(ds: Dataset, org: Organisation | None, base_url: str) -> dict[str, Any]:
    lic = LICENCES.get(ds.licence)
    q = quality(ds)
    return {
        "id": ds.id, "name": ds.name, "title": ds.title_zh, "title_en": ds.title_en, "notes": ds.description_zh,
        "notes_en": ds.description_en, "type": "dataset", "state": "deleted" if ds.state == "deleted" else "active",
        "private": ds.state != "published", "publication_state": ds.state, "version": str(ds.version),
        "owner_org": ds.org_code, "organization": org_dict(org) if org else None,
        "license_id": ds.licence or None, "license_title": lic.zh if lic else None,
        "license_url": lic.uri if lic else None,
        "maintainer": ds.contact_name, "maintainer_email": ds.contact_email, "author": org.name_zh if org else "",
        "author_email": None, "url": "",
        "metadata_created": _iso(ds.created_at), "metadata_modified": _iso(ds.modified_at),
        "tags": [{"name": k, "display_name": k, "state": "active"} for k in ds.keywords],
        "num_tags": len(ds.keywords),
        "groups": [group_dict(t) for t in ds.themes],
        "resources": [resource_dict(r, base_url, ds.name) for r in ds.resources],
        "num_resources": len(ds.resources),
        "frequency": ds.frequency, "spatial": ds.spatial,
        "temporal_start": ds.temporal_start.isoformat() if ds.temporal_start else None,
        "temporal_end": ds.temporal_end.isoformat() if ds.temporal_end else None,
        "opening": ds.opening, "sharing": ds.sharing, "grade": ds.grade, "demo": ds.demo,
        "quality_score": q.score, "quality_checks": {c.key: c.passed for c in q.checks},
        "downloads": ds.downloads,
        "extras": [],
    }


# CKAN key → our field; our own keys are accepted as they are, and as `extras` entries.
PACKAGE_KEYS = {"name": "name", "title": "title_zh", "title_en": "title_en", "notes": "description_zh",
                "notes_en": "description_en", "owner_org": "org_code", "license_id": "licence",
                "maintainer": "contact_name", "maintainer_email": "contact_email"}
OWN_KEYS = ("frequency", "spatial", "temporal_start", "temporal_end", "opening", "sharing", "grade")


CKAN_NAMES = {v: k for k, v in PACKAGE_KEYS.items()} | {"keywords": "tags", "themes": "groups"}


def validation_error(exc: ValidationError) -> Unprocessable:
    """A pydantic error as a domain error whose `errors` name the CKAN fields."""
    reverse = CKAN_NAMES
    errors = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        field = reverse.get(loc[0], loc[0]) if loc else "__all__"
        errors.append({"field": field, "message": e.get("msg", "invalid")})
    return Unprocessable("invalid " + ", ".join(sorted({e["field"] for e in errors})), errors=errors)


def _names(value: Any, field: str) -> list[str]:
    if not isinstance(value, list):
        raise Unprocessable(f"{field} must be a list", errors=[{"field": field, "message": "must be a list"}])
    out = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("name")
        if not isinstance(item, str):
            raise Unprocessable(f"{field} entries must be names", errors=[{"field": field, "message": "bad entry"}])
        out.append(item)
    return out


def package_fields(data: dict[str, Any]) -> DatasetFields:
    """Our metadata from a CKAN package dict (unknown keys, such as package_show's computed ones, are ignored)."""
    raw: dict[str, Any] = {}
    extras = data.get("extras") or []
    if not isinstance(extras, list):
        raise Unprocessable("extras must be a list", errors=[{"field": "extras", "message": "must be a list"}])
    for e in extras:
        if isinstance(e, dict) and e.get("key") in OWN_KEYS:
            raw[e["key"]] = e.get("value")
    for ckan_key, ours in PACKAGE_KEYS.items():
        if ckan_key in data:
            raw[ours] = data[ckan_key]
    for k in OWN_KEYS:
        if k in data:
            raw[k] = data[k]
    if "owner_org" not in data and isinstance(data.get("organization"), dict):
        raw["org_code"] = data["organization"].get("name")
    if "tags" in data:
        raw["keywords"] = _names(data["tags"], "tags")
    if "groups" in data:
        raw["themes"] = _names(data["groups"], "groups")
    for k in ("licence", "contact_email", "frequency"):
        if raw.get(k) is None and k in raw:
            raw[k] = ""
    try:
        return DatasetFields.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


RESOURCE_KEYS = ("name", "description", "format", "url")


def resource_fields(data: dict[str, Any], base_url: str = "") -> ResourceFields:
    """Our resource metadata from a CKAN resource dict (our own download URLs coming back from a dump are dropped)."""
    raw = {k: data[k] for k in RESOURCE_KEYS if k in data and data[k] is not None}
    if data.get("resource_type") in ("file", "link", "api", "documentation"):
        raw["kind"] = data["resource_type"]
    if data.get("url_type") == "upload" or str(raw.get("url", "")).startswith(base_url.rstrip("/") + "/opendata/"):
        raw.pop("url", None)
    try:
        return ResourceFields.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None
