"""The open-data module's public interface: catalogue, access rules, versions, resources and quality.

Access (who sees what) lives here and nowhere else:
- the publisher department (staff of the dataset's organisation) sees its datasets in every state, and only staff
  holding `opendata.publish` of that organisation change them;
- everybody sees published datasets whose opening attribute (开放属性) is 无条件开放 or 有条件开放; the data of
  有条件开放 datasets stays with the publisher until the application flow (part 2) grants it;
- other departments also see published 不予开放 datasets shared with them (共享属性 无条件共享 / 有条件共享), and
  read the data of 无条件共享 ones;
- platform administrators see every dataset that is not deleted.
Drafts and deleted datasets never leave the publisher department.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from cityplus.core import audit, events
from cityplus.core.audit import Actor
from cityplus.core.db import utcnow
from cityplus.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from cityplus.core.identity import service as identity
from cityplus.modules.opendata import search as search_index
from cityplus.modules.opendata.events import DatasetPublished
from cityplus.modules.opendata.models import Dataset, DatasetVersion, Resource, ResourceFile
from cityplus.modules.opendata.schemas import REQUIRED_ON_CREATE, DatasetFields, ResourceFields

DEPARTMENT_ROLES = ("department_staff", "department_admin")
PUBLISH = "opendata.publish"
AUDIT_TYPE = "opendata_dataset"


@dataclass(frozen=True)
class Reader:
    """Who asks: anonymous (actor None) or a principal's actor and scopes."""

    actor: Actor | None = None
    scopes: frozenset[str] = frozenset()

    @classmethod
    def of(cls, principal: Any) -> Reader:
        """From an API/page principal (or None for anonymous callers)."""
        if principal is None:
            return cls()
        return cls(actor=principal.actor, scopes=frozenset(principal.scopes))

    @property
    def department(self) -> str | None:
        a = self.actor
        return a.org_code if a is not None and a.role in DEPARTMENT_ROLES else None

    @property
    def is_admin(self) -> bool:
        return self.actor is not None and self.actor.role == "platform_admin"


ANONYMOUS = Reader()


# --- access --------------------------------------------------------------------------------------------------


def visible_clause(reader: Reader, model: Any = Dataset) -> ColumnElement[bool]:
    """SQL condition: the datasets whose metadata `reader` may see. `model` is Dataset, or an index table that
    carries copies of the columns the rule reads (search terms, facet values)."""
    if reader.is_admin:
        return model.state != "deleted"  # type: ignore[no-any-return]
    published = model.state == "published"
    conds: list[ColumnElement[bool]] = [and_(published, model.opening.in_(("open", "conditional")))]
    dept = reader.department
    if dept:
        conds.append(and_(model.org_code == dept, model.state != "deleted"))
        conds.append(and_(published, model.opening == "closed", model.sharing.in_(("share", "conditional"))))
    return or_(*conds)


def is_publisher(reader: Reader, ds: Dataset) -> bool:
    return reader.department is not None and reader.department == ds.org_code


def can_see(reader: Reader, ds: Dataset) -> bool:
    if ds.state == "deleted":
        return is_publisher(reader, ds)
    if reader.is_admin or is_publisher(reader, ds):
        return True
    if ds.state != "published":
        return False
    if ds.opening in ("open", "conditional"):
        return True
    return reader.department is not None and ds.sharing in ("share", "conditional")


def can_read_data(reader: Reader, ds: Dataset) -> bool:
    """Whether `reader` may download or query the dataset's data (not only its metadata)."""
    if not can_see(reader, ds):
        return False
    if reader.is_admin or is_publisher(reader, ds):
        return True
    if ds.opening == "open":
        return True
    return reader.department is not None and ds.sharing == "share"


def can_edit(reader: Reader, ds: Dataset) -> bool:
    return PUBLISH in reader.scopes and is_publisher(reader, ds)


def _require_edit(reader: Reader, ds: Dataset) -> Actor:
    if not can_see(reader, ds):
        raise NotFound(f"no dataset {ds.name!r}")
    if reader.actor is None or not can_edit(reader, ds):
        raise Forbidden(f"only staff of {ds.org_code} holding {PUBLISH} may change this dataset")
    return reader.actor


# --- datasets --------------------------------------------------------------------------------------------------


def get_dataset(session: Session, reader: Reader, ref: str) -> Dataset:
    """A dataset by id or name; NotFound when it does not exist or `reader` may not see it (no existence leak)."""
    ds = session.get(Dataset, ref) if len(ref) == 36 else None
    if ds is None:
        ds = session.scalar(select(Dataset).where(Dataset.name == ref))
    if ds is None or not can_see(reader, ds):
        raise NotFound(f"no dataset {ref!r}")
    return ds


def list_names(session: Session, reader: Reader, *, limit: int | None = None, offset: int = 0) -> list[str]:
    stmt = select(Dataset.name).where(visible_clause(reader)).order_by(Dataset.name).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def search(session: Session, reader: Reader, **kwargs: Any) -> search_index.SearchResult:
    """Full-text search with facets over what `reader` may see (see `search.search` for the parameters)."""
    return search_index.search(session, lambda model: visible_clause(reader, model), **kwargs)


SNAPSHOT_FIELDS = tuple(DatasetFields.model_fields)


def snapshot(ds: Dataset) -> dict[str, Any]:
    """The metadata of a dataset as plain JSON (versions keep one each)."""
    out: dict[str, Any] = {}
    for f in SNAPSHOT_FIELDS:
        v = getattr(ds, f)
        out[f] = v.isoformat() if isinstance(v, date | datetime) else v
    out["resources"] = [{"id": r.id, "name": r.name, "format": r.format, "kind": r.kind} for r in ds.resources]
    return out


def create_dataset(session: Session, reader: Reader, fields: DatasetFields, *, demo: bool = False) -> Dataset:
    """A new draft dataset of the caller's department."""
    if reader.actor is None or PUBLISH not in reader.scopes:
        raise Forbidden(f"creating datasets needs scope {PUBLISH!r}")
    if fields.org_code is not None and reader.department != fields.org_code:
        raise Forbidden(f"you may only publish for your own department ({reader.department or 'none'})",
                        errors=[{"field": "org_code", "message": "not your department"}])
    missing = [f for f in REQUIRED_ON_CREATE if getattr(fields, f) is None]
    if missing:
        raise Unprocessable("required fields are missing",
                            errors=[{"field": f, "message": "required"} for f in missing])
    identity.get_organisation(session, fields.org_code or "")
    _check_name_free(session, fields.name or "")
    now = utcnow()
    ds = Dataset(id=str(uuid.uuid4()), state="draft", version=0, demo=demo, created_at=now, modified_at=now,
                 themes=[], keywords=[], grade=1, views=0, downloads=0)
    for k, v in fields.model_dump(exclude_unset=True).items():
        setattr(ds, k, "" if v is None and k not in ("temporal_start", "temporal_end", "grade") else v)
    _defaults(ds)
    session.add(ds)
    session.flush()
    search_index.index_dataset(session, ds)
    audit.append(session, reader.actor, "opendata.dataset_create", AUDIT_TYPE, ds.id, snapshot(ds))
    return ds


def _defaults(ds: Dataset) -> None:
    for k in ("title_en", "description_zh", "description_en", "licence", "frequency", "spatial", "contact_name",
              "contact_email"):
        if getattr(ds, k) is None:
            setattr(ds, k, "")
    if ds.grade is None:
        ds.grade = 1


def _check_name_free(session: Session, name: str, but: str | None = None) -> None:
    other = session.scalar(select(Dataset.id).where(Dataset.name == name))
    if other is not None and other != but:
        raise Conflict(f"the name {name!r} is already in use", errors=[{"field": "name", "message": "already in use"}])


def update_dataset(session: Session, reader: Reader, ds: Dataset, fields: DatasetFields, *, note: str = "") -> Dataset:
    """Change the given fields; a published dataset gets a new version with the change note."""
    actor = _require_edit(reader, ds)
    if ds.state == "deleted":
        raise Conflict("the dataset is deleted")
    changes = fields.model_dump(exclude_unset=True)
    if "org_code" in changes and changes["org_code"] != ds.org_code:
        raise Forbidden("a dataset cannot move to another department",
                        errors=[{"field": "org_code", "message": "cannot change"}])
    for k in REQUIRED_ON_CREATE:
        if k in changes and changes[k] is None:
            raise Unprocessable(f"{k} cannot be empty", errors=[{"field": k, "message": "required"}])
    if "name" in changes:
        _check_name_free(session, changes["name"], but=ds.id)
    before = snapshot(ds)
    for k, v in changes.items():
        if v is None and k not in ("temporal_start", "temporal_end"):
            v = 1 if k == "grade" else ""
        setattr(ds, k, v)
    if ds.temporal_start and ds.temporal_end and ds.temporal_start > ds.temporal_end:
        raise Unprocessable("temporal_start is after temporal_end",
                            errors=[{"field": "temporal_start", "message": "after temporal_end"}])
    after = snapshot(ds)
    changed = sorted(k for k in after if after[k] != before[k])
    if not changed:
        return ds
    touch(session, ds, actor, changed, note)
    audit.append(session, actor, "opendata.dataset_update", AUDIT_TYPE, ds.id, {"changed": changed, "after": after})
    return ds


def touch(session: Session, ds: Dataset, actor: Actor, changed: list[str], note: str) -> None:
    """Record a change: modified time, index, and a new version when the dataset is published."""
    ds.modified_at = utcnow()
    session.flush()
    search_index.index_dataset(session, ds)
    if ds.state == "published":
        _new_version(session, ds, actor, changed, note or "updated: " + ", ".join(changed))


def _new_version(session: Session, ds: Dataset, actor: Actor, changed: list[str], note: str) -> None:
    ds.version += 1
    session.add(DatasetVersion(dataset_id=ds.id, version=ds.version, at=utcnow(), actor=actor.username,
                               note=note[:2000], changed=changed, snapshot=snapshot(ds)))
    events.record(session, DatasetPublished(dataset_id=ds.id, name=ds.name, org_code=ds.org_code,
                                            version=ds.version))


def publish_dataset(session: Session, reader: Reader, ds: Dataset, *, note: str = "") -> Dataset:
    """Publish a draft (version 1, or the next version after a withdrawal)."""
    actor = _require_edit(reader, ds)
    if ds.state == "published":
        raise Conflict("the dataset is already published")
    if ds.state == "deleted":
        raise Conflict("the dataset is deleted")
    ds.state = "published"
    ds.published_at = ds.modified_at = utcnow()
    session.flush()
    search_index.index_dataset(session, ds)
    _new_version(session, ds, actor, ["state"], note or "published")
    audit.append(session, actor, "opendata.dataset_publish", AUDIT_TYPE, ds.id, {"version": ds.version})
    return ds


def withdraw_dataset(session: Session, reader: Reader, ds: Dataset) -> Dataset:
    """Back to draft (no longer public); versions are kept."""
    actor = _require_edit(reader, ds)
    if ds.state != "published":
        raise Conflict("only a published dataset can be withdrawn")
    ds.state = "draft"
    ds.modified_at = utcnow()
    session.flush()
    search_index.index_dataset(session, ds)
    audit.append(session, actor, "opendata.dataset_withdraw", AUDIT_TYPE, ds.id, {"version": ds.version})
    return ds


def delete_dataset(session: Session, reader: Reader, ds: Dataset) -> None:
    """Mark deleted (CKAN semantics: the record stays, hidden from everyone but the publisher)."""
    actor = _require_edit(reader, ds)
    if ds.state == "deleted":
        return
    ds.state = "deleted"
    ds.modified_at = utcnow()
    session.flush()
    search_index.index_dataset(session, ds)
    audit.append(session, actor, "opendata.dataset_delete", AUDIT_TYPE, ds.id, {"name": ds.name})


def versions(session: Session, ds: Dataset) -> list[DatasetVersion]:
    return list(session.scalars(select(DatasetVersion).where(DatasetVersion.dataset_id == ds.id)
                                .order_by(DatasetVersion.version.desc())))


# --- resources -------------------------------------------------------------------------------------------------


def get_resource(session: Session, reader: Reader, resource_id: str) -> Resource:
    res = session.get(Resource, resource_id) if len(resource_id) <= 36 else None
    if res is None or not can_see(reader, res.dataset):
        raise NotFound(f"no resource {resource_id!r}")
    return res


def add_resource(session: Session, reader: Reader, ds: Dataset, fields: ResourceFields, *,
                 upload: tuple[str, bytes] | None = None, field_types: dict[str, str] | None = None,
                 max_bytes: int | None = None) -> Resource:
    """Add a link/API resource, or an uploaded file (tabular files are loaded into the DataStore)."""
    from cityplus.modules.opendata import datastore

    actor = _require_edit(reader, ds)
    kind = fields.kind or ("file" if upload else "link")
    if kind == "file" and upload is None:
        raise Unprocessable("a file resource needs an upload", errors=[{"field": "upload", "message": "required"}])
    if kind in ("link", "api") and not fields.url:
        raise Unprocessable("a link or API resource needs a url", errors=[{"field": "url", "message": "required"}])
    now = utcnow()
    name = fields.name or (upload[0] if upload else "") or fields.url or "resource"
    fmt = (fields.format or (datastore.format_of(upload[0]) if upload else ("API" if kind == "api" else "HTML")))
    res = Resource(id=str(uuid.uuid4()), dataset_id=ds.id, position=len(ds.resources), name=name[:200],
                   description=fields.description or "", kind=kind, format=fmt.upper(), url=fields.url or "",
                   created_at=now, modified_at=now, fields=[], primary_key=[], row_count=0)
    ds.resources.append(res)
    session.flush()
    if upload is not None:
        datastore.store_upload(session, res, upload[0], upload[1], field_types=field_types, max_bytes=max_bytes)
    touch(session, ds, actor, ["resources"], f"resource added: {res.name}")
    audit.append(session, actor, "opendata.resource_create", "opendata_resource", res.id,
                 {"dataset": ds.id, "name": res.name, "kind": kind, "format": res.format, "sha256": res.sha256,
                  "rows": res.row_count})
    return res


def update_resource(session: Session, reader: Reader, res: Resource, fields: ResourceFields, *,
                    upload: tuple[str, bytes] | None = None, field_types: dict[str, str] | None = None,
                    max_bytes: int | None = None) -> Resource:
    """Change a resource's metadata, replace its file, or correct its DataStore field types (reloads the data)."""
    from cityplus.modules.opendata import datastore

    ds = res.dataset
    actor = _require_edit(reader, ds)
    changes = fields.model_dump(exclude_unset=True, exclude_none=True)
    for k, v in changes.items():
        setattr(res, k, v.upper() if k == "format" else v)
    if upload is not None:
        datastore.store_upload(session, res, upload[0], upload[1], field_types=field_types, max_bytes=max_bytes)
        changes["upload"] = upload[0]
    elif field_types:
        datastore.retype(session, res, field_types)
        changes["field_types"] = field_types
    if not changes:
        return res
    res.modified_at = utcnow()
    touch(session, ds, actor, ["resources"], f"resource changed: {res.name}")
    audit.append(session, actor, "opendata.resource_update", "opendata_resource", res.id,
                 {"changed": sorted(changes), "sha256": res.sha256, "rows": res.row_count})
    return res


def delete_resource(session: Session, reader: Reader, res: Resource) -> None:
    from cityplus.modules.opendata import datastore

    ds = res.dataset
    actor = _require_edit(reader, ds)
    datastore.drop(session, res)
    ds.resources.remove(res)
    session.flush()
    touch(session, ds, actor, ["resources"], f"resource removed: {res.name}")
    audit.append(session, actor, "opendata.resource_delete", "opendata_resource", res.id, {"dataset": ds.id})


def resource_file(session: Session, res: Resource) -> ResourceFile | None:
    return session.get(ResourceFile, res.id)


def count_download(session: Session, dataset_id: str) -> None:
    """One more download (its own short transaction; counts are approximate by nature)."""
    ds = session.get(Dataset, dataset_id)
    if ds is not None:
        ds.downloads = Dataset.downloads + 1


# --- organisations, usage --------------------------------------------------------------------------------------


def publisher_counts(session: Session, reader: Reader) -> dict[str, int]:
    """Visible datasets per publisher organisation code."""
    rows = session.execute(select(Dataset.org_code, func.count()).where(visible_clause(reader))
                           .group_by(Dataset.org_code))
    return {code: n for code, n in rows}


def usage(session: Session) -> dict[str, int]:
    """Live figures for plan coverage."""
    published = Dataset.state == "published"
    return {
        "datasets": session.scalar(select(func.count()).select_from(Dataset).where(published)) or 0,
        "open_datasets": session.scalar(select(func.count()).select_from(Dataset)
                                        .where(published, Dataset.opening == "open")) or 0,
        "resources": session.scalar(select(func.count()).select_from(Resource).join(Dataset)
                                    .where(published)) or 0,
    }


def catalogue_page(session: Session, reader: Reader, page: int, per_page: int) -> tuple[list[Dataset], int]:
    """One page of the datasets `reader` may see, oldest first (stable paging for harvesters), and the total."""
    visible = visible_clause(reader)
    total = session.scalar(select(func.count()).select_from(Dataset).where(visible)) or 0
    rows = list(session.scalars(select(Dataset).where(visible).order_by(Dataset.created_at, Dataset.id)
                                .limit(per_page).offset((page - 1) * per_page)))
    return rows, total
