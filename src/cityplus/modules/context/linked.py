"""Linked entity retrieval (GS CIM 009 v1.8 §4.5.23): `join=inline|flat` and `joinLevel` on entity reads.

The entities a Relationship points to are fetched through the service's public query, one query per hop level for
all entities of that level. `inline` puts each linked entity into its Relationship (`"entity"` member; in the
simplified format it replaces the Relationship's target id), `flat` appends the linked entities, each once, after
the entities asked for. pick/omit selections nested with `{...}` apply to the linked entities of that Relationship.
Linked entities that do not exist (or that the caller may not see) are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from cityplus.modules.context import service
from cityplus.modules.context.params import Join, Projection, project, sub_projection

FETCH_BATCH = 500

Render = Callable[[Any], dict[str, Any]]  # ContextEntity -> rendered document before pick/omit


@dataclass
class _Node:
    entity: Any  # ContextEntity
    doc: dict[str, Any]
    pick: Projection | None
    omit: Projection | None


def _relationships(ent: Any, doc: dict[str, Any], compact: Callable[[str], str]) -> Iterator[tuple[str, list[str]]]:
    """(rendered member name, target ids) of each Relationship the rendered document still carries."""
    for iri, attr in ent.attrs.items():
        key = compact(iri)
        if key not in doc:
            continue
        targets: list[str] = []
        for inst in service.instances(attr):
            if inst.get("type") != "Relationship":
                continue
            obj = inst.get("object")
            targets.extend(t for t in (obj if isinstance(obj, list) else [obj]) if isinstance(t, str))
        if targets:
            yield key, list(dict.fromkeys(targets))


def _fetch(session: Session, tenant: str | None, ids: list[str], visible: Callable[[Any], bool]
           ) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for i in range(0, len(ids), FETCH_BATCH):
        chunk = ids[i:i + FETCH_BATCH]
        page, _ = service.query_entities(session, tenant, service.EntityQuery(ids=chunk, limit=len(chunk)))
        found.update((e.entity_id, e) for e in page if visible(e))
    return found


def _attach(doc: dict[str, Any], key: str, linked: dict[str, dict[str, Any]], simplified: bool) -> None:
    """Put the linked documents into the rendered Relationship `key` of `doc`."""

    def one(value: Any) -> Any:
        if simplified:
            if isinstance(value, str):
                return linked.get(value, value)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return [linked.get(v, v) for v in value]
            return value
        if isinstance(value, dict) and "object" in value:
            obj = value["object"]
            if isinstance(obj, str) and obj in linked:
                return {**value, "entity": linked[obj]}
            if isinstance(obj, list):
                docs = [linked[o] for o in obj if isinstance(o, str) and o in linked]
                return {**value, "entity": docs} if docs else value
        return value

    value = doc[key]
    if isinstance(value, list) and not (simplified and all(isinstance(v, str) for v in value)):
        doc[key] = [one(v) for v in value]
    else:
        doc[key] = one(value)


def join_linked(session: Session, tenant: str | None, roots: list[tuple[Any, dict[str, Any]]], join: Join,
                render: Render, compact: Callable[[str], str], *, pick: Projection | None,
                omit: Projection | None, simplified: bool, visible: Callable[[Any], bool]) -> list[dict[str, Any]]:
    """Follow the Relationships of the rendered roots up to join.level hops.

    Inline: the roots' documents are changed in place and the result is empty. Flat: the linked entities' documents,
    in the order they were reached, each once and none that is already a root.
    """
    frontier = [_Node(ent, doc, pick, omit) for ent, doc in roots]
    cache: dict[str, Any] = {}
    flat: list[dict[str, Any]] = []
    emitted = {ent.entity_id for ent, _ in roots}
    for _level in range(join.level):
        wanted = [t for node in frontier for _, targets in _relationships(node.entity, node.doc, compact)
                  for t in targets if t not in cache]
        if wanted:
            wanted = list(dict.fromkeys(wanted))
            found = _fetch(session, tenant, wanted, visible)
            cache.update({t: found.get(t) for t in wanted})
        nxt: list[_Node] = []
        for node in frontier:
            for key, targets in list(_relationships(node.entity, node.doc, compact)):
                sub_pick, sub_omit = sub_projection(node.pick, key), sub_projection(node.omit, key)
                docs: dict[str, dict[str, Any]] = {}
                for t in targets:
                    linked = cache.get(t)
                    if linked is None:
                        continue
                    doc = project(render(linked), sub_pick, sub_omit)
                    docs[t] = doc
                    nxt.append(_Node(linked, doc, sub_pick, sub_omit))
                    if join.mode == "flat" and t not in emitted:
                        emitted.add(t)
                        flat.append(doc)
                if join.mode == "inline" and docs:
                    _attach(node.doc, key, docs, simplified)
        if not nxt:
            break
        frontier = nxt
    return flat
