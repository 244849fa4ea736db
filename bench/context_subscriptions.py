"""Benchmark of the context broker, part 2 (issue 5): notifications, subscription matching, temporal aggregation.

    python -m bench context_subscriptions [--backend sqlite|postgres|both] [--rate 500] [--seconds 20]
                                          [--subs 10000] [--updates 2000] [--reps 3] [--quick] [--no-doc]

(1) Notification latency: `cityplus serve` (one process) with a subscription to a local webhook (a real HTTP
    server in this process); single-attribute PATCHes are sent at --rate per second for --seconds; latency is from
    the PATCH's 204 to the webhook receiving that value. p50/p95, and how many arrived.
(2) Update throughput with 0 vs --subs subscriptions: single-attribute PATCHes through the HTTP API in-process, one
    after the other, --updates per run. The subscriptions: half name entity ids that are never written (they match
    nothing), half name one updated entity each (every update fires exactly one). The outbox rows are written (as in
    production) but the notifier's delivery is off, so the figure is the write path's cost alone. 0 and N runs
    alternate, --reps each.
(3) Temporal: one attribute with 30 days of 1-minute instances (43,200), `GET /temporal/entities/{id}` with
    `options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=PT1H` over the 30 days: p50/p95.

Prints a table and appends a dated section to docs/performance.md (unless --no-doc). No timed assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.context_broker import DOC, JSON_CT, App, Backend, _env, _free_port, _quiet_logging, percentile

TYPE = "ParkingSpot"
TARGETS = {"latency_p95_ms": 50.0, "slowdown": 0.20, "temporal_p95_ms": 100.0}


def _ids(n: int) -> list[str]:
    return [f"urn:ngsi-ld:{TYPE}:bench-{i:05d}" for i in range(n)]


def _entity(eid: str) -> dict[str, Any]:
    return {"id": eid, "type": TYPE, "free": {"type": "Property", "value": 0},
            "name": {"type": "Property", "value": eid[-5:]}}


# --------------------------------------------------------------------------------------------- (1) latency


class _Webhook:
    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                now = time.perf_counter()
                for e in body["data"]:
                    hook.arrivals.setdefault(int(e["free"]["value"]), now)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def latency(url: str, workdir: Path, rate: int, seconds: int) -> dict[str, float]:
    import httpx

    hook = _Webhook()
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYPLUS_")},
           "CITYPLUS_DATABASE_URL": url, "CITYPLUS_SECRET_KEY": "bench-secret-key-" + "x" * 40,
           "CITYPLUS_VAR_DIR": str(workdir / "var-latency"), "CITYPLUS_CONTEXT_AUTH": "none",
           "CITYPLUS_LOG_LEVEL": "WARNING"}
    log = (workdir / "latency-server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "cityplus", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        ids = _ids(50)
        httpx.post(f"{base}/ngsi-ld/v1/entityOperations/upsert", headers=JSON_CT,
                   content=json.dumps([_entity(i) for i in ids]), timeout=60).raise_for_status()
        sub = {"type": "Subscription", "entities": [{"type": TYPE}], "watchedAttributes": ["free"],
               "notification": {"endpoint": {"uri": hook.url}, "attributes": ["free"]}}
        httpx.post(f"{base}/ngsi-ld/v1/subscriptions", headers=JSON_CT, content=json.dumps(sub),
                   timeout=10).raise_for_status()

        accepted: dict[int, float] = {}
        errors: list[int] = []

        async def drive() -> None:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
                total = rate * seconds
                start = time.perf_counter()
                tasks = []

                gate = asyncio.Semaphore(64)  # in flight at once; a slower server lowers the achieved rate

                async def one(v: int) -> None:
                    async with gate:
                        try:
                            await _patch(v)
                        except httpx.HTTPError:  # e.g. a keep-alive connection the server closed: not accepted
                            errors.append(v)

                async def _patch(v: int) -> None:
                    r = await client.patch(f"/ngsi-ld/v1/entities/{ids[v % len(ids)]}/attrs", headers=JSON_CT,
                                           content=json.dumps({"free": {"type": "Property", "value": v}}))
                    if r.status_code == 204:
                        accepted[v] = time.perf_counter()

                for v in range(1, total + 1):
                    due = start + (v - 1) / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(one(v)))
                await asyncio.gather(*tasks)

        t0 = time.perf_counter()
        asyncio.run(drive())
        sent_for = time.perf_counter() - t0
        deadline = time.monotonic() + 30
        while len(hook.arrivals) < len(accepted) and time.monotonic() < deadline:
            time.sleep(0.1)
        lat = [max(hook.arrivals[v] - t, 0.0) * 1000 for v, t in accepted.items() if v in hook.arrivals]
        return {"sent": rate * seconds, "accepted": len(accepted), "received": len(lat), "errors": len(errors),
                "achieved_rate": len(accepted) / sent_for, "p50": percentile(lat, 50) if lat else float("nan"),
                "p95": percentile(lat, 95) if lat else float("nan")}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        hook.close()


# --------------------------------------------------------------------------------------------- (2) matching

_APP_CTX: list[Any] = []


class _TrackedApp(App):
    """The in-process app, remembering its AppContext (to stop the notifier, add subscriptions, load history)."""

    async def __aenter__(self) -> Any:
        client = await super().__aenter__()
        _APP_CTX.append(self.ctx)
        return client



def _add_subscriptions(ctx: Any, n: int, updated: list[str]) -> None:
    from cityplus.modules.context import service, subscriptions

    active = service.core_context(ctx)
    with ctx.db.session() as session:
        t = service.tenant(session, None, create=True)
        for i in range(n):
            eid = updated[i % len(updated)] if i % 2 else f"urn:ngsi-ld:{TYPE}:never-{i}"
            body = {"type": "Subscription", "entities": [{"type": TYPE, "id": eid}],
                    "notification": {"endpoint": {"uri": "http://127.0.0.1:9/unused"}}}
            subscriptions.create(session, t.id, subscriptions.parse(body, active), None)


def update_rate(url: str, workdir: Path, updates: int, subs: int) -> float:
    ids = _ids(max(1, min(updates, 500)))

    async def run() -> float:
        from cityplus.modules.context import notifier

        async with _TrackedApp(url, workdir) as client:
            app_ctx = _APP_CTX[-1]
            await notifier.stop(app_ctx)  # delivery off: measure the write path
            r = await client.post("/ngsi-ld/v1/entityOperations/upsert", headers=JSON_CT,
                                  content=json.dumps([_entity(i) for i in ids]))
            assert r.status_code in (201, 204), r.text
            if subs:
                await asyncio.to_thread(_add_subscriptions, app_ctx, subs, ids)
                # one warm-up write: the process compiles the tenant's subscriptions once
                await client.patch(f"/ngsi-ld/v1/entities/{ids[0]}/attrs", headers=JSON_CT,
                                   content=json.dumps({"free": {"type": "Property", "value": -1}}))
            t0 = time.perf_counter()
            for v in range(updates):
                r = await client.patch(f"/ngsi-ld/v1/entities/{ids[v % len(ids)]}/attrs", headers=JSON_CT,
                                       content=json.dumps({"free": {"type": "Property", "value": v}}))
                assert r.status_code == 204, r.text
            return updates / (time.perf_counter() - t0)

    return asyncio.run(run())


# --------------------------------------------------------------------------------------------- (3) temporal


def temporal_latency(url: str, workdir: Path, requests: int) -> dict[str, float]:
    eid = "urn:ngsi-ld:AirQualityObserved:bench-history"
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)

    async def run() -> list[float]:
        from cityplus.modules.context import service, temporal

        async with _TrackedApp(url, workdir) as client:
            ctx = _APP_CTX[-1]
            active = service.core_context(ctx)
            with ctx.db.session() as session:
                t = service.tenant(session, None, create=True)
                body = {"id": eid, "type": "AirQualityObserved",
                        "pm25": {"type": "Property", "value": 35, "observedAt": start.isoformat()}}
                service.create_entity(session, None, service.expand_compact(body, active))
                attr = active.expand_term("pm25")
                minutes = 30 * 24 * 60
                for chunk in range(0, minutes, 5000):
                    insts = [{"type": "Property", "value": 20 + (m % 97) * 0.5,
                              "observedAt": (start + dt.timedelta(minutes=m)).isoformat().replace("+00:00", "Z")}
                             for m in range(chunk, min(chunk + 5000, minutes))]
                    temporal.add_instances(session, t.id, eid, None, {attr: insts})
            params = {"attrs": "pm25", "options": "aggregatedValues", "aggrMethods": "avg",
                      "aggrPeriodDuration": "PT1H", "timerel": "between",
                      "timeAt": start.isoformat().replace("+00:00", "Z"),
                      "endTimeAt": (start + dt.timedelta(days=30)).isoformat().replace("+00:00", "Z")}
            r = await client.get(f"/ngsi-ld/v1/temporal/entities/{eid}", params=params)
            assert r.status_code == 200 and len(r.json()["pm25"]["avg"]) == 720, r.text[:300]
            times = []
            for _ in range(requests):
                t0 = time.perf_counter()
                r = await client.get(f"/ngsi-ld/v1/temporal/entities/{eid}", params=params)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
            return times

    times = asyncio.run(run())
    return {"p50": percentile(times, 50), "p95": percentile(times, 95)}


# --------------------------------------------------------------------------------------------- driver


def run_backend(kind: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    be = Backend(kind, workdir)
    lines = [f"#### {be.version()}", ""]
    try:
        url = be.fresh("latency")
        lat = latency(url, workdir, args.rate, args.seconds)
        be.drop(url)
        lines += [f"(1) notification latency at {args.rate} PATCH/s for {args.seconds} s (one `cityplus serve` "
                  f"process, generator and webhook on the same 2 cores): achieved {lat['achieved_rate']:.0f}/s, "
                  f"{lat['received']}/{lat['accepted']} notifications received ({lat['errors']} client errors), "
                  f"p50 {lat['p50']:.1f} ms, "
                  f"**p95 {lat['p95']:.1f} ms** (target ≤ {TARGETS['latency_p95_ms']:.0f} ms: "
                  f"{'met' if lat['p95'] <= TARGETS['latency_p95_ms'] else 'not met'})", ""]
        print("\n".join(lines[-2:]), flush=True)
        pairs = []
        for rep in range(args.reps):
            for subs in (0, args.subs):
                url = be.fresh(f"m{rep}_{subs}")
                rate = update_rate(url, workdir, args.updates, subs)
                be.drop(url)
                pairs.append((subs, rate))
                print(f"  rep {rep + 1}: {subs} subscriptions: {rate:.0f} updates/s", flush=True)
        base = statistics.median(r for s, r in pairs if s == 0)
        loaded = statistics.median(r for s, r in pairs if s == args.subs)
        slow = 1 - loaded / base
        lines += [f"(2) PATCH throughput in-process, {args.updates} updates per run, medians of {args.reps}: "
                  f"0 subscriptions {base:.0f}/s, {args.subs:,} subscriptions {loaded:.0f}/s → "
                  f"**{slow * 100:.1f} % slower** (target ≤ {TARGETS['slowdown'] * 100:.0f} %: "
                  f"{'met' if slow <= TARGETS['slowdown'] else 'not met'}); per run: "
                  + ", ".join(f"{s}: {r:.0f}" for s, r in pairs), ""]
        print(lines[-2], flush=True)
        url = be.fresh("temporal")
        tl = temporal_latency(url, workdir, args.requests)
        be.drop(url)
        met = "met" if tl["p95"] <= TARGETS["temporal_p95_ms"] else "not met"
        lines += [f"(3) hourly avg over 30 days of 1-minute data (43,200 instances, 720 buckets), {args.requests} "
                  f"requests in-process: p50 {tl['p50']:.1f} ms, **p95 {tl['p95']:.1f} ms** (target ≤ "
                  f"{TARGETS['temporal_p95_ms']:.0f} ms: {met})", ""]
        print(lines[-2], flush=True)
    finally:
        be.cleanup()
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench context_subscriptions", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--rate", type=int, default=500, help="PATCHes per second for (1)")
    p.add_argument("--seconds", type=int, default=20, help="duration of (1)")
    p.add_argument("--subs", type=int, default=10_000, help="subscriptions for (2)")
    p.add_argument("--updates", type=int, default=2000, help="PATCHes per run of (2)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--requests", type=int, default=100, help="timed requests for (3)")
    p.add_argument("--quick", action="store_true", help="smoke run: small numbers")
    p.add_argument("--no-doc", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.rate, args.seconds, args.subs, args.updates, args.reps, args.requests = 50, 2, 200, 100, 1, 5
    _quiet_logging()
    kinds = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    out = [f"### Context broker part 2 (subscriptions, temporal) — {dt.date.today().isoformat()}", "",
           f"Machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}. Command: "
           f"`python -m bench context_subscriptions {' '.join(argv or [])}`.", ""]
    with tempfile.TemporaryDirectory(prefix="cpbench2-") as tmp, _env(CITYPLUS_LOG_LEVEL="WARNING"):
        for kind in kinds:
            out += run_backend(kind, args, Path(tmp))
    text = "\n".join(out)
    print(text)
    if not args.no_doc and not args.quick:
        with DOC.open("a", encoding="utf-8") as f:
            f.write("\n" + text + "\n")
    return 0
