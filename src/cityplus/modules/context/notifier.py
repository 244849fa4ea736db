"""Delivery of NGSI-LD notifications from the outbox (context_notifications) to HTTP and MQTT endpoints.

Every server process runs one Notifier. It claims due outbox rows with a lease (claimed_by / claimed_until;
`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite), so each row is sent by one process; a process
that dies mid-delivery loses its claim when the lease runs out and another process sends the row. Receivers can
recognise a repeat by the notification id, which is derived from the outbox row.

- A change wakes the notifier of its own process as soon as its transaction commits; others poll.
- The rows of one subscription are sent in order, one at a time; different subscriptions are sent concurrently,
  so a slow or dead receiver holds up only its own subscription, and never an entity write.
- A failed attempt is retried with exponential backoff; after `notify_max_attempts` the row is kept as `failed`.
  After `FAILING_AFTER` failed attempts in a row the subscription's status is `failed`; a success clears it.
- Throttled subscriptions: rows due inside the throttling window wait for its end and are then sent as one
  notification carrying the latest state of each entity (nothing is lost, the receiver is not flooded).
- Periodic subscriptions (timeInterval) are claimed by a compare-and-set on lastNotification and enqueue the
  current state of their entities.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson
import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from cityplus.core.context import AppContext
from cityplus.core.db import utcnow
from cityplus.modules.context import jsonld, subscriptions
from cityplus.modules.context.models import ContextNotification, ContextSubscription, ContextTenant
from cityplus.modules.context.runtime import runtime

log = structlog.get_logger("cityplus.context.notifier")
N = ContextNotification
S = ContextSubscription
CLAIM_BATCH = 200
FAILING_AFTER = 3  # failed attempts in a row after which a subscription's status is `failed`
PERIODIC_BATCH = 1000  # most entities in one periodic notification


@dataclass
class Outcome:
    rows: list[int]
    sub_pk: int
    ok: bool
    error: str | None = None
    attempts: int = 0


@dataclass
class Notifier:
    ctx: AppContext
    holder: str = field(default_factory=lambda: f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    task: asyncio.Task[None] | None = None
    wake_event: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.AbstractEventLoop | None = None
    client: httpx.AsyncClient | None = None
    mqtt: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    mqtt_lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: bool = False
    metrics: Any = None

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        settings = runtime(self.ctx).settings
        self.loop = asyncio.get_running_loop()
        self.client = httpx.AsyncClient(timeout=settings.notify_timeout, follow_redirects=False)
        self.metrics = _metrics(self.ctx)
        subscriptions._WAKERS.add(self.wake)
        self.task = asyncio.create_task(self._run(), name="cityplus-context-notifier")

    async def stop(self) -> None:
        self.stopping = True
        subscriptions._WAKERS.discard(self.wake)
        self.wake()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.client is not None:
            await self.client.aclose()
        for client in self.mqtt.values():
            with contextlib.suppress(Exception):
                client.loop_stop()
                client.disconnect()
        self.mqtt.clear()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._release)

    def wake(self) -> None:
        """Called from any thread after a transaction added outbox rows."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.wake_event.set)

    async def _run(self) -> None:
        settings = runtime(self.ctx).settings
        next_periodic = 0.0
        while not self.stopping:
            try:
                now = asyncio.get_running_loop().time()
                if now >= next_periodic:
                    next_periodic = now + 1.0
                    await asyncio.to_thread(self._periodic)
                if await self.round() == 0:
                    self.wake_event.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake_event.wait(), settings.notify_poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down, say: keep the loop alive and try again later
                log.warning("context.notifier_error", error=str(exc)[:300])
                await asyncio.sleep(min(5.0, settings.notify_poll * 4))

    # --- one round: claim, send, record ----------------------------------------------------------------

    async def round(self) -> int:
        """Claim due rows, deliver them, record the outcomes; the number of rows claimed."""
        claimed = await asyncio.to_thread(self._claim)
        if not claimed:
            return 0
        by_sub: dict[int, list[Any]] = defaultdict(list)
        for row in claimed["rows"]:
            by_sub[row.sub_pk].append(row)
        settings = runtime(self.ctx).settings
        gate = asyncio.Semaphore(settings.notify_concurrency)

        async def one_sub(sub_pk: int, rows: list[Any]) -> list[Outcome]:
            sub = claimed["subs"].get(sub_pk)
            if sub is None:
                return []
            async with gate:
                out = []
                groups = [rows] if sub["spec"].get("throttling") else [[r] for r in rows]
                for group in groups:
                    out.append(await self._send(sub, group))
                    if not out[-1].ok:  # keep the order: the rest wait for the next round
                        out.extend(Outcome([r.pk for r in g], sub_pk, False, "held back: an earlier notification "
                                           "of the subscription failed", attempts=-1)
                                   for g in groups[len(out):])
                        break
                return out

        results = await asyncio.gather(*(one_sub(pk, rows) for pk, rows in by_sub.items()))
        await asyncio.to_thread(self._record, [o for group in results for o in group],
                                {r.pk: r.attempts for r in claimed["rows"]})
        return len(claimed["rows"])

    def _due(self, session: Session) -> Any:
        now = utcnow()
        return (N.state == "pending") & (N.due_at <= now) & or_(N.claimed_until.is_(None), N.claimed_until < now)

    def _claim(self) -> dict[str, Any] | None:
        db = self.ctx.db
        with db.session(readonly=True) as session:  # nothing due: no write lock taken
            if not session.scalar(select(exists().where(self._due(session)))):
                return None
        settings = runtime(self.ctx).settings
        with db.session() as session:
            now = utcnow()
            stmt = select(N.pk, N.sub_pk).where(self._due(session)).order_by(N.pk).limit(CLAIM_BATCH)
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            picked = session.execute(stmt).all()
            if not picked:
                return None
            sub_pks = {p.sub_pk for p in picked}
            subs: dict[int, dict[str, Any]] = {}
            for sub, tenant in session.execute(select(S, ContextTenant.name).join(
                    ContextTenant, ContextTenant.id == S.tenant_id).where(S.pk.in_(sub_pks))):
                subs[sub.pk] = {"pk": sub.pk, "sub_id": sub.sub_id, "spec": sub.spec, "context": sub.context,
                                "tenant": tenant, "last_notification": sub.last_notification,
                                "active": subscriptions.status(sub, now) in ("active", "failed")}
            pks: list[int] = []
            for p in picked:
                sub = subs.get(p.sub_pk)
                if sub is None:
                    continue
                if not sub["active"]:  # paused or expired since the change: not sent, dropped
                    session.execute(delete(N).where(N.pk == p.pk))
                    continue
                throttle = sub["spec"].get("throttling")
                last = sub["last_notification"]
                if throttle and last is not None and last + timedelta(seconds=throttle) > now:
                    session.execute(update(N).where(N.pk == p.pk).values(
                        due_at=last + timedelta(seconds=throttle)))
                    continue
                pks.append(p.pk)
            if not pks:
                return None
            session.execute(update(N).where(N.pk.in_(pks)).values(
                claimed_by=self.holder, claimed_until=now + timedelta(seconds=settings.notify_lease)))
            # timesSent and lastNotification count attempts, as they start (a receiver that looks at the
            # subscription on receipt sees its own notification counted); failures add to timesFailed.
            sends: dict[int, int] = defaultdict(int)
            for p in picked:
                if p.pk in pks:
                    throttled = bool(subs[p.sub_pk]["spec"].get("throttling"))
                    sends[p.sub_pk] = 1 if throttled else sends[p.sub_pk] + 1
            for sub_pk, count in sends.items():
                session.execute(update(S).where(S.pk == sub_pk).values(times_sent=S.times_sent + count,
                                                                       last_notification=now))
            rows = session.execute(select(N.pk, N.sub_pk, N.trigger, N.data, N.attempts)
                                   .where(N.pk.in_(pks)).order_by(N.pk)).all()
        return {"rows": rows, "subs": subs}

    def _record(self, outcomes: list[Outcome], attempts: dict[int, int]) -> None:
        if not outcomes:
            return
        settings = runtime(self.ctx).settings
        now = utcnow()
        with self.ctx.db.session() as session:
            for o in outcomes:
                if o.ok:
                    session.execute(delete(N).where(N.pk.in_(o.rows)))
                    session.execute(update(S).where(S.pk == o.sub_pk).values(last_success=now, failing=False))
                    self.metrics["sent"].inc()
                    continue
                if o.attempts == -1:  # held back behind a failure: released untouched, and not an attempt
                    session.execute(update(N).where(N.pk.in_(o.rows)).values(claimed_by=None, claimed_until=None))
                    session.execute(update(S).where(S.pk == o.sub_pk).values(times_sent=S.times_sent - 1))
                    continue
                tries = max(attempts.get(pk, 0) for pk in o.rows) + 1
                final = tries >= settings.notify_max_attempts
                backoff = min(settings.notify_backoff * (2 ** (tries - 1)), 300.0)
                session.execute(update(N).where(N.pk.in_(o.rows)).values(
                    attempts=tries, claimed_by=None, claimed_until=None, last_error=(o.error or "")[:1000],
                    due_at=now + timedelta(seconds=backoff), state="failed" if final else "pending"))
                values: dict[str, Any] = {"times_failed": S.times_failed + 1, "last_failure": now,
                                          "last_error": (o.error or "")[:1000]}
                if tries >= FAILING_AFTER:
                    values["failing"] = True
                session.execute(update(S).where(S.pk == o.sub_pk).values(**values))
                self.metrics["failed"].inc()
                log.info("context.notification_failed", subscription=o.sub_pk, attempt=tries, final=final,
                         error=(o.error or "")[:200])

    def _release(self) -> None:
        with self.ctx.db.session() as session:
            session.execute(update(N).where(N.claimed_by == self.holder).values(claimed_by=None,
                                                                              claimed_until=None))

    # --- building and sending a notification -------------------------------------------------------------

    def _payload(self, sub: dict[str, Any], rows: list[Any]) -> tuple[dict[str, Any], dict[str, str], str]:
        spec = sub["spec"]
        n = spec["notification"]
        context = spec.get("jsonldContext") or sub["context"]
        active = runtime(self.ctx).resolver.resolve(context)
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            for doc in row.data:
                latest.pop(doc["id"], None)
                latest[doc["id"]] = doc  # a coalesced (throttled) notification carries each entity's last state
        from cityplus.modules.context.http import shape

        data = []
        for doc in latest.values():
            doc = dict(doc)
            types = doc.get("type")
            if isinstance(types, list) and len(types) == 1:
                doc["type"] = types[0]
            scopes = doc.get("scope")
            if isinstance(scopes, list) and len(scopes) == 1:
                doc["scope"] = scopes[0]
            deleted_at = doc.pop("deletedAt", None)
            fmt = n.get("format", "normalized")
            out = shape(jsonld.compact_entity(doc, active), "simplified" if fmt == "keyValues" else fmt,
                        spec.get("lang"))
            if deleted_at is not None:
                out["deletedAt"] = deleted_at
            data.append(out)
        accept = n["endpoint"].get("accept", "application/json")
        url = _context_url(context)
        nid = uuid.uuid5(uuid.NAMESPACE_URL, f"{sub['sub_id']}#{rows[0].pk}")
        body: dict[str, Any] = {"id": f"urn:ngsi-ld:Notification:{nid}", "type": "Notification",
                                "subscriptionId": sub["sub_id"], "notifiedAt": subscriptions._iso(utcnow()),
                                "data": data}
        headers = {"Content-Type": accept}
        if accept == "application/ld+json":
            ctx_value = context if context is not None else jsonld.CORE_CONTEXT_URL
            body["@context"] = ctx_value
            for doc in data:  # each entity is a JSON-LD document of its own, as GET /entities returns them
                doc["@context"] = ctx_value
        else:
            headers["Link"] = jsonld.response_link_header(url)
        if sub["tenant"]:
            headers["NGSILD-Tenant"] = sub["tenant"]
        for kv in n["endpoint"].get("receiverInfo", []):
            headers[kv["key"]] = kv["value"]
        return body, headers, n["endpoint"]["uri"]

    async def _send(self, sub: dict[str, Any], rows: list[Any]) -> Outcome:
        pks = [r.pk for r in rows]
        try:
            body, headers, uri = self._payload(sub, rows)
        except Exception as exc:  # e.g. the subscription's @context is no longer available
            return Outcome(pks, sub["pk"], False, f"cannot build the notification: {exc}")
        scheme = urlsplit(uri).scheme
        started = asyncio.get_running_loop().time()
        try:
            if scheme in ("http", "https"):
                assert self.client is not None
                resp = await self.client.post(uri, content=orjson.dumps(body), headers=headers)
                if not 200 <= resp.status_code < 300:
                    return Outcome(pks, sub["pk"], False, f"HTTP {resp.status_code} from {uri}")
            else:
                await asyncio.to_thread(self._publish_mqtt, uri, body, headers,
                                        sub["spec"]["notification"]["endpoint"].get("notifierInfo", []))
        except Exception as exc:
            return Outcome(pks, sub["pk"], False, f"{type(exc).__name__}: {str(exc)[:300]} ({uri})")
        finally:
            self.metrics["latency"].observe(asyncio.get_running_loop().time() - started)
        return Outcome(pks, sub["pk"], True)

    def _publish_mqtt(self, uri: str, body: dict[str, Any], headers: dict[str, str],
                      notifier_info: list[dict[str, str]]) -> None:
        import paho.mqtt.client as mqtt

        parts = urlsplit(uri)
        info = {kv["key"]: kv["value"] for kv in notifier_info}
        qos = int(info.get("MQTT-QoS", "0"))
        if qos not in (0, 1, 2):
            raise ValueError(f"MQTT-QoS must be 0, 1 or 2, not {qos}")
        v5 = info.get("MQTT-Version", "mqtt3.1.1") == "mqtt5.0"
        tls = parts.scheme == "mqtts"
        key = (parts.hostname, parts.port, parts.username, parts.password, tls, v5)
        settings = runtime(self.ctx).settings
        with self.mqtt_lock:
            client = self.mqtt.get(key)
            if client is None or not client.is_connected():
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.loop_stop()
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                     protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
                if parts.username:
                    client.username_pw_set(unquote(parts.username),
                                           unquote(parts.password) if parts.password else None)
                if tls:
                    client.tls_set_context(ssl.create_default_context())
                connected = threading.Event()
                client.on_connect = lambda *_a, **_k: connected.set()
                client.connect(parts.hostname or "localhost", parts.port or (8883 if tls else 1883), keepalive=30)
                client.loop_start()
                if not connected.wait(settings.notify_timeout):
                    client.loop_stop()
                    raise TimeoutError(f"no CONNACK from {parts.hostname}")
                self.mqtt[key] = client
        payload = {"metadata": {k: v for k, v in headers.items()}, "body": body}
        msg = client.publish(parts.path.lstrip("/"), orjson.dumps(payload), qos=qos)
        msg.wait_for_publish(settings.notify_timeout)
        if not msg.is_published():
            raise TimeoutError("MQTT publish not acknowledged in time")

    # --- periodic subscriptions ----------------------------------------------------------------------------

    def _periodic(self) -> None:
        now = utcnow()
        with self.ctx.db.session(readonly=True) as session:
            subs = session.execute(select(S.pk, S.spec, S.last_notification).where(
                S.is_active.is_(True), or_(S.expires_at.is_(None), S.expires_at > now))).all()
        due = [s for s in subs if "timeInterval" in s.spec and (
            s.last_notification is None or s.last_notification + timedelta(seconds=s.spec["timeInterval"]) <= now)]
        for s in due:
            with self.ctx.db.session() as session:
                prev = S.last_notification.is_(None) if s.last_notification is None else \
                    S.last_notification == s.last_notification
                won = session.execute(update(S).where(S.pk == s.pk, prev).values(last_notification=now)).rowcount
                if not won:
                    continue  # another process took this period
                sub = session.get(S, s.pk)
                if sub is None:
                    continue
                data = _current_entities(session, sub)
                if data:
                    session.add(N(sub_pk=sub.pk, trigger="timeInterval", data=data, created_at=now, due_at=now,
                                  attempts=0, state="pending"))
        if due:
            self.wake()


def _current_entities(session: Session, sub: ContextSubscription) -> list[dict[str, Any]]:
    """The current state of the entities a periodic subscription names (expanded, as notifications carry)."""
    from cityplus.modules.context import service
    from cityplus.modules.context.changefeed import Change

    compiled = subscriptions.compile_spec(sub.pk, sub.spec, True, None)
    compiled.periodic = False
    compiled.triggers = frozenset(subscriptions.TRIGGERS)
    out: dict[str, dict[str, Any]] = {}
    stamp = subscriptions._iso(utcnow()) or ""
    for sel in sub.spec.get("entities", []):
        query = service.EntityQuery(ids=[sel["id"]] if "id" in sel else None, id_pattern=sel.get("idPattern"),
                                    types=service.TypeExpr(tuple(tuple(g) for g in sel["groups"])),
                                    limit=PERIODIC_BATCH)
        tenant = session.scalar(select(ContextTenant.name).where(ContextTenant.id == sub.tenant_id))
        page, _ = service.query_entities(session, tenant, query)
        for ent in page:
            change = Change("updated", ent.entity_id, list(ent.types), ent.scopes, dict(ent.attrs),
                            dict(ent.attrs), set(), ent.created_at, ent.modified_at)
            if compiled.q is not None or compiled.geo is not None or compiled.scope_q is not None:
                change.changed = set(ent.attrs)
                if compiled.fires(change, utcnow()) is None:
                    continue
                change.changed = set()
            out[ent.entity_id] = subscriptions.notification_entity(compiled, change, "timeInterval", stamp)
    return list(out.values())


def _context_url(context: Any) -> str:
    if isinstance(context, str):
        return context
    if isinstance(context, list):
        urls = [c for c in context if isinstance(c, str)]
        if len(urls) == 1 and len(context) == 1:
            return urls[0]
    return jsonld.CORE_CONTEXT_URL


def _metrics(ctx: AppContext) -> dict[str, Any]:
    state = ctx.module_state.setdefault("context.notifier_metrics", {})
    if not state:
        state["sent"] = Counter("cityplus_context_notifications_sent_total", "NGSI-LD notifications delivered",
                                registry=ctx.metrics)
        state["failed"] = Counter("cityplus_context_notifications_failed_total",
                                  "NGSI-LD notification delivery attempts that failed", registry=ctx.metrics)
        state["latency"] = Histogram("cityplus_context_notification_send_seconds",
                                     "Time to hand one notification to its receiver", registry=ctx.metrics)
    return state


async def start(ctx: AppContext) -> None:
    if ctx.module_state.get("context.notifier") is None:
        notifier = Notifier(ctx)
        ctx.module_state["context.notifier"] = notifier
        await notifier.start()


async def stop(ctx: AppContext) -> None:
    notifier = ctx.module_state.pop("context.notifier", None)
    if notifier is not None:
        await notifier.stop()
