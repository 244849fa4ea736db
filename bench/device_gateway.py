"""Benchmark of the device gateway (issue 6): sustained MQTT ingestion end to end, on SQLite and PostgreSQL.

    python -m bench device_gateway [--backend sqlite|postgres|both] [--duration 60] [--rates 2000,4000,...]
                                   [--devices 1000] [--quick] [--no-doc]

A Mosquitto of the benchmark's own (a free port, `max_queued_messages 0`, `max_inflight_messages 0`, no
persistence: the system broker's defaults would drop or throttle QoS 1 bursts) and a `cityplus serve` process (1
worker) whose gateway subscribes to it. One publisher process sends Ultralight measurements
(`<time>|t|<n>|h|<v>`, each with its own timestamp) with QoS 1 at a fixed rate, round-robin over --devices
auto-provisioned devices, for --duration seconds per rate step. Steps double from the first rate until one is not
held, then the midpoint between the last held and the first missed rate is tried (or --rates gives the steps).

A step is **held** when every message published was stored (zero loss: the idempotency receipts and the devices'
message counts both grew by exactly the number published, no dead letters, every device's entity shows its last
published value) and the backlog did not grow (the last message was stored within 1 s of its publication).
**Publish-to-stored latency**: a monitor polls the devices' summed message count (updated in the same transaction
as the entity update) every 20 ms from another connection; since one publisher connection, the broker and the
gateway keep order, the k-th message is stored when the count first reaches k. Each latency is an upper bound off by
at most one polling interval plus the poll's own time.

The limit beside it: the rate this Mosquitto alone delivers, with QoS 1, to one subscriber on the same machine —
a paho subscriber (the gateway's client library) and the C clients `mosquitto_pub -l` / `mosquitto_sub`.

Results are printed and appended to docs/performance.md. No timed assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.context_broker import DOC, Backend, _free_port, _mem_gib, _quiet_logging

TARGET_RATE, TARGET_P95_MS = 5000, 200.0
POLL = 0.02
TEMPERATURE = "https://uri.etsi.org/ngsi-ld/default-context/t"


# --------------------------------------------------------------------------------------------------- broker


@contextmanager
def mosquitto(workdir: Path) -> Iterator[int]:
    """A Mosquitto of our own on a free port, with no queue or in-flight bounds; yields the port."""
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
                    "log_dest stderr\nlog_type error\nlog_type warning\n")
    log = (workdir / "mosquitto.log").open("w")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log, start_new_session=True)
    try:
        import socket

        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"mosquitto did not start: {(workdir / 'mosquitto.log').read_text()}") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _client(port: int, name: str, **kw: Any) -> Any:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:8]}", **kw)
    client.max_inflight_messages_set(0)  # paho's own default (20 unacknowledged) would pace the publisher
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


# --------------------------------------------------------------------------------------------------- publisher


def _publish(port: int, apikey: str, devices: int, rate: float, duration: float, first: int, start_at: float,
             out: Any) -> None:
    """Publisher process: `rate` messages a second for `duration` s from `start_at`; sends back publish times."""
    client = _client(port, "bench-pub")
    n = int(rate * duration)
    times = [0.0] * n
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.time()
    infos = []
    i = 0
    while i < n:
        due = min(n, int((time.time() - t0) * rate) + 1)
        while i < due:
            now = time.time()
            stamp = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
            k = first + i
            infos.append(client.publish(f"/ul/{apikey}/d{k % devices}/attrs", f"{stamp}|t|{k}|h|{k % 97}", qos=1))
            times[i] = now
            i += 1
        time.sleep(0.002)
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()
    out.send(times)
    out.close()


def publish(port: int, apikey: str, devices: int, rate: float, duration: float, first: int) -> tuple[
        mp.Process, Any, float]:
    parent, child = mp.Pipe(duplex=False)
    start_at = time.time() + 1.0
    proc = mp.get_context("fork").Process(target=_publish, args=(port, apikey, devices, rate, duration, first,
                                                                 start_at, child), daemon=True)
    proc.start()
    return proc, parent, start_at


# --------------------------------------------------------------------------------------------------- limit


def _subscribe(port: int, count: int, ready: Any, out: Any) -> None:
    import paho.mqtt.client as mqtt

    got = [0]
    first = [0.0]
    done = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if got[0] == 0:
            first[0] = time.time()
        got[0] += 1
        if got[0] >= count:
            done.set()

    client = _client(port, "bench-sub", protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.subscribe("/limit/#", qos=1)
    time.sleep(0.5)
    ready.set()
    done.wait(300)
    out.send((got[0], first[0], time.time()))
    client.disconnect()
    client.loop_stop()


def limit_paho(port: int, count: int) -> float:
    """Messages a second Mosquitto delivers (QoS 1) from a paho publisher at full speed to a paho subscriber."""
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    parent, child = ctx.Pipe(duplex=False)
    sub = ctx.Process(target=_subscribe, args=(port, count, ready, child), daemon=True)
    sub.start()
    ready.wait(10)
    client = _client(port, "bench-limit-pub")
    infos = [client.publish(f"/limit/d{i % 1000}", f"t|{i}", qos=1) for i in range(count)]
    for info in infos:
        info.wait_for_publish(300)
    got, first, last = parent.recv()
    sub.join(10)
    client.disconnect()
    client.loop_stop()
    return got / max(last - first, 1e-9) if got == count else 0.0


def limit_c(port: int, count: int) -> float:
    """The same with Mosquitto's C clients: `mosquitto_pub -l` (one message a line) → `mosquitto_sub -C count`.
    0 when the clients are missing or the subscriber did not get every message within 120 s."""
    if not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")):
        return 0.0
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-q", "1", "-t", "/limitc/#", "-C", str(count),
                            "-W", "120"], stdout=subprocess.PIPE)
    time.sleep(0.5)
    lines = "".join(f"t|{i}\n" for i in range(count)).encode()
    t0 = time.time()
    subprocess.run(["mosquitto_pub", "-p", str(port), "-q", "1", "-t", "/limitc/x", "-l"], input=lines, check=True)
    out, _ = sub.communicate(timeout=180)
    elapsed = time.time() - t0
    got = out.count(b"\n")
    if got < count:
        print(f"  C clients: the subscriber got {got:,} of {count:,} messages", flush=True)
        return 0.0
    return count / elapsed


# --------------------------------------------------------------------------------------------------- gateway


@contextmanager
def gateway(url: str, port: int, workdir: Path, batch_size: int, batch_ms: float) -> Iterator[subprocess.Popen[bytes]]:
    """`cityplus serve` (1 worker) on `url` with its gateway subscribed to our Mosquitto."""
    http = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYPLUS_")}
    env.update({"CITYPLUS_DATABASE_URL": url, "CITYPLUS_VAR_DIR": str(workdir),
                "CITYPLUS_SECRET_KEY": "bench-secret-key-" + "x" * 40, "CITYPLUS_MQTT_URL": f"mqtt://127.0.0.1:{port}",
                "CITYPLUS_IOT_MQTT_CLIENT_ID": f"bench-gw-{uuid.uuid4().hex[:8]}",
                "CITYPLUS_IOT_DEVICE_RATE": "1000", "CITYPLUS_IOT_DEVICE_BURST": "5000",
                "CITYPLUS_IOT_BATCH_SIZE": str(batch_size), "CITYPLUS_IOT_BATCH_MS": str(batch_ms)})
    log = (workdir / "gateway.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "cityplus", "serve", "--workers", "1", "--port", str(http)],
                            env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError(f"server did not start; see {workdir / 'gateway.log'}")
            time.sleep(0.3)
        if os.environ.get("BENCH_PYSPY"):
            # Profile the gateway (py-spy, not a project dependency): raw stacks for BENCH_PYSPY_SECONDS.
            subprocess.Popen(["py-spy", "record", "-p", str(proc.pid), "-r", "100", "-f", "raw", "-d",
                              os.environ.get("BENCH_PYSPY_SECONDS", "60"), "-o", os.environ["BENCH_PYSPY"]],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


class Store:
    """Read-only views of the gateway's database from the benchmark process."""

    def __init__(self, url: str) -> None:
        from cityplus.core.db import Database

        self.db = Database(url)

    def counts(self) -> tuple[int, int, int]:
        """(summed device message counts, receipts, dead letters)."""
        from sqlalchemy import func, select

        from cityplus.modules.iot.models import DeadLetter, Device, Receipt

        with self.db.session(readonly=True) as s:
            return (int(s.scalar(select(func.coalesce(func.sum(Device.message_count), 0))) or 0),
                    int(s.scalar(select(func.count()).select_from(Receipt)) or 0),
                    int(s.scalar(select(func.count()).select_from(DeadLetter)) or 0))

    def unpublished_events(self) -> int:
        from sqlalchemy import func, select

        from cityplus.core.events import EventOutbox

        with self.db.session(readonly=True) as s:
            return int(s.scalar(select(func.count()).select_from(EventOutbox).where(
                EventOutbox.published_at.is_(None))) or 0)

    def seen(self) -> int:
        from sqlalchemy import func, select

        from cityplus.modules.iot.models import Device

        with self.db.session(readonly=True) as s:
            return int(s.scalar(select(func.coalesce(func.sum(Device.message_count), 0))) or 0)

    def last_values(self, devices: int) -> dict[int, Any]:
        from cityplus.modules.context import service as context

        out: dict[int, Any] = {}
        with self.db.session(readonly=True) as s:
            for d in range(devices):
                try:
                    ent = context.get_entity(s, None, f"urn:ngsi-ld:Thing:d{d}")
                except Exception:  # noqa: BLE001 - a missing entity is a loss, reported as such
                    continue
                out[d] = (ent.attrs.get(TEMPERATURE) or {}).get("value")
        return out


class Monitor(threading.Thread):
    """Polls the stored count every POLL seconds: (time, count) samples."""

    def __init__(self, store: Store) -> None:
        super().__init__(daemon=True)
        self.store, self.samples, self.stop = store, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), self.store.seen()))
            time.sleep(POLL)


def step(store: Store, port: int, apikey: str, devices: int, rate: float, duration: float, first: int
         ) -> dict[str, Any]:
    """One rate step: publish, wait for the backlog, check for loss, compute latencies."""
    before = store.counts()
    mon = Monitor(store)
    mon.start()
    proc, pipe, start_at = publish(port, apikey, devices, rate, duration, first)
    times: list[float] = pipe.recv()
    proc.join(30)
    n = len(times)
    deadline = time.time() + max(30.0, duration)
    while store.seen() < before[0] + n and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(3 * POLL)
    mon.stop.set()
    mon.join()
    after = store.counts()
    stored, receipts, dead = after[0] - before[0], after[1] - before[1], after[2] - before[2]
    # k-th message stored at the first sample whose count reaches k
    lat: list[float] = []
    k = 0
    for t, c in mon.samples:
        c -= before[0]
        while k < min(c, n):
            lat.append(t - times[k])
            k += 1
    values = store.last_values(devices)
    last_sent = {(first + i) % devices: first + i for i in range(n)}
    wrong = sum(1 for d, v in last_sent.items() if values.get(d) != v)
    p95 = statistics.quantiles(lat, n=20)[-1] * 1000 if len(lat) >= 20 else float("nan")
    sent_rate = n / (times[-1] - times[0]) if n > 1 else 0.0
    res = {"rate": rate, "sent": n, "sent_rate": sent_rate, "stored": stored, "receipts": receipts, "dead": dead,
           "wrong_entities": wrong, "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"), "p95_ms": p95,
           "last_ms": lat[-1] * 1000 if len(lat) == n and lat else float("inf")}
    res["lossless"] = stored == n and receipts == n and dead == 0 and wrong == 0
    res["held"] = res["lossless"] and res["last_ms"] <= 1000 and sent_rate >= 0.97 * rate
    print(f"    rate {rate:,.0f}/s: sent {n:,} ({sent_rate:,.0f}/s), stored {stored:,}, receipts {receipts:,}, "
          f"dead letters {dead}, entities not at their last value {wrong}; latency p50 {res['p50_ms']:.0f} ms "
          f"p95 {p95:.0f} ms last {res['last_ms']:.0f} ms → {'held' if res['held'] else 'NOT held'}", flush=True)
    return res


def ingest_in_process(url: str, workdir: Path, devices: int, batches: int = 20, size: int = 1000) -> float:
    """Messages a second `ingest_batch` applies in this process (no MQTT, no server): the gateway's own capacity
    on this machine at this moment, as a ratio baseline for the end-to-end rate."""
    from prometheus_client import CollectorRegistry

    from bench.context_broker import settings_for
    from cityplus.api.app import build_context
    from cityplus.core.audit import Actor
    from cityplus.modules.context import service as context
    from cityplus.modules.iot import service
    from cityplus.modules.iot.ingest import Message, ingest_batch
    from cityplus.modules.iot.ratelimit import RateLimiter
    from cityplus.modules.iot.runtime import IotMetrics, IotRuntime
    from cityplus.modules.iot.schemas import ServiceGroupIn
    from cityplus.modules.iot.settings import IotSettings

    ctx = build_context(settings_for(url, workdir))
    try:
        with ctx.db.session() as s:
            service.create_groups(s, Actor.system("bench"), "", "/", [ServiceGroupIn(
                apikey="inproc", resource="/iot/d", attributes=[{"object_id": "t", "name": "t", "type": "Integer"},
                                                                {"object_id": "h", "name": "h", "type": "Integer"}])])
        rt = IotRuntime(ctx=ctx, settings=IotSettings(), metrics=IotMetrics.register(CollectorRegistry()),
                        limiter=RateLimiter(1e9, 1e9))
        active = context.core_context(ctx)
        k = 0

        def batch() -> list[Message]:
            nonlocal k
            out = []
            for _ in range(size):
                stamp = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
                out.append(Message(transport="mqtt", channel="bench", apikey="inproc", device_id=f"d{k % devices}",
                                   fmt="ul", payload=f"{stamp}|t|{k}|h|{k % 97}".encode()))
                k += 1
            return out

        for _ in range(max(1, devices // size) + 1):  # auto-provision every device first
            with ctx.db.session() as s:
                ingest_batch(s, rt, batch(), active)
        todo = [batch() for _ in range(batches)]
        t0 = time.perf_counter()
        for msgs in todo:
            with ctx.db.session() as s:
                ingest_batch(s, rt, msgs, active)
        return batches * size / (time.perf_counter() - t0)
    finally:
        ctx.db.dispose()


def run_backend(kind: str, args: argparse.Namespace, workdir: Path, port: int) -> tuple[list[str], list[dict]]:
    from cityplus.core.audit import Actor
    from cityplus.core.db import Database
    from cityplus.modules.iot import service
    from cityplus.modules.iot.schemas import ServiceGroupIn

    be = Backend(kind, workdir)
    results: list[dict[str, Any]] = []
    inproc = 0.0
    try:
        version = be.version()
        print(f"\n=== {kind}: {version}, {args.devices} devices, {args.duration:g} s per step ===", flush=True)
        scratch = be.fresh("inproc")
        inproc = ingest_in_process(scratch, workdir, args.devices)
        be.drop(scratch)
        print(f"  ingest_batch in process (batches of 1,000, no MQTT): {inproc:,.0f} messages/s", flush=True)
        url = be.fresh("gw")
        apikey = f"bench{uuid.uuid4().hex[:8]}"
        db = Database(url)
        with db.session() as s:
            service.create_groups(s, Actor.system("bench"), "", "/", [ServiceGroupIn(
                apikey=apikey, resource="/iot/d", attributes=[
                    {"object_id": "t", "name": "t", "type": "Integer"},
                    {"object_id": "h", "name": "h", "type": "Integer"}])])
        db.dispose()
        store = Store(url)
        with gateway(url, port, workdir, args.batch_size, args.batch_ms):
            # warm-up: every device auto-provisioned, its entity created
            print("  warm-up (auto-provisioning)", flush=True)
            first = 0
            w = step(store, port, apikey, args.devices, min(2000, args.devices * 2), args.devices / min(
                2000, args.devices * 2) * 2, first)
            first += w["sent"]
            # Auto-provisioning recorded one event a device: let the relay deliver them before the timed steps.
            deadline = time.time() + 120
            while store.unpublished_events() and time.time() < deadline:
                time.sleep(0.5)
            rates = [float(r) for r in args.rates.split(",")] if args.rates else None
            rate = args.start
            held: float | None = None
            missed: float | None = None
            while True:
                if rates is not None:
                    if not rates:
                        break
                    rate = rates.pop(0)
                r = step(store, port, apikey, args.devices, rate, args.duration, first)
                first += r["sent"]
                results.append(r)
                if rates is not None:
                    continue
                if r["held"]:
                    held = rate
                    if missed is None:
                        rate *= 2
                        if rate > args.max_rate:
                            break
                        continue
                else:
                    missed = rate
                if held is None or missed is None or missed - held <= max(250.0, 0.1 * held):
                    if held is None and rate > args.start / 4:
                        rate /= 2  # even the first step was not held: look lower
                        continue
                    break
                rate = round((held + missed) / 2 / 50) * 50
        store.db.dispose()
        be.drop(url)
    finally:
        be.cleanup()
    best = max((r for r in results if r["held"]), key=lambda r: r["rate"], default=None)
    lines = [f"### {kind} — {version}", "",
             f"The gateway's own capacity at the time, `ingest_batch` in one process without MQTT (20 batches of "
             f"1,000 after auto-provisioning): **{inproc:,.0f} messages/s**.", "",
             "| rate asked (msg/s) | sent (msg/s) | stored / receipts / dead letters | entities at last value | "
             "latency p50 / p95 (ms) | held |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['rate']:,.0f} | {r['sent_rate']:,.0f} | {r['stored']:,} / {r['receipts']:,} / {r['dead']} "
                     f"of {r['sent']:,} | {args.devices - r['wrong_entities']:,} of {args.devices:,} | "
                     f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f} | {'yes' if r['held'] else 'no'} |")
    if best:
        ok = best["rate"] >= TARGET_RATE and best["p95_ms"] <= TARGET_P95_MS
        lines += ["", f"Highest rate held for {args.duration:g} s with zero loss: **{best['rate']:,.0f} "
                      f"measurements/s**, p95 publish-to-stored **{best['p95_ms']:.0f} ms** (target ≥ 5,000/s, "
                      f"p95 ≤ 200 ms: **{'met' if ok else 'missed'}**). Held rate / in-process capacity: "
                      f"{best['rate'] / inproc:.0%}." if inproc else ""]
    else:
        lines += ["", "No rate step was held."]
    lines.append("")
    return lines, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench device_gateway", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--duration", type=float, default=60, help="seconds per rate step")
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--start", type=float, default=2000, help="first rate step (messages/s)")
    p.add_argument("--max-rate", type=float, default=32000)
    p.add_argument("--rates", default="", help="comma-separated rate steps instead of the search")
    p.add_argument("--batch-size", type=int, default=1000, help="CITYPLUS_IOT_BATCH_SIZE of the gateway")
    p.add_argument("--batch-ms", type=float, default=50, help="CITYPLUS_IOT_BATCH_MS of the gateway")
    p.add_argument("--limit-messages", type=int, default=100_000, help="messages for the Mosquitto-alone limit")
    p.add_argument("--quick", action="store_true", help="smoke run: 5 s steps, 200 devices, 2 steps")
    p.add_argument("--no-doc", action="store_true", help="do not append to docs/performance.md")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.devices, args.limit_messages = 5, 200, 20_000
        args.rates = args.rates or "1000,3000"
    _quiet_logging()
    kinds = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    workdir = Path(tempfile.mkdtemp(prefix="cpbench-gw-"))
    started = time.time()
    load_before = os.getloadavg()[0]
    lines: list[str] = []
    try:
        with mosquitto(workdir) as port:
            lp = limit_paho(port, args.limit_messages)
            lc = limit_c(port, args.limit_messages)
            print(f"Mosquitto alone, QoS 1, one subscriber: paho {lp:,.0f} msg/s, C clients {lc:,.0f} msg/s",
                  flush=True)
            for kind in kinds:
                part, results = run_backend(kind, args, workdir, port)
                best = max((r["rate"] for r in results if r["held"]), default=0)
                if best and lp:
                    part.insert(-1, f"Held rate / Mosquitto-alone rate (paho subscriber): {best / lp:.0%}"
                                    + (f"; / C clients: {best / lc:.0%}." if lc else "."))
                lines += part
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cmd = "python -m bench device_gateway " + " ".join(argv if argv is not None else sys.argv[1:])
    head = [
        f"## {dt.date.today().isoformat()} — device gateway (`bench/device_gateway.py`)"
        + (" — quick smoke run, not a measurement" if args.quick else ""),
        "",
        f"Command: `{cmd.strip()}` ({(time.time() - started) / 60:.0f} min). Machine: {os.cpu_count()} cores / "
        f"{_mem_gib()} GiB, shared with other developers' test runs (noisy: compare ratios, not absolutes); Python "
        f"{platform.python_version()}; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the "
        "end. Publisher, Mosquitto (own instance, no queue/in-flight bounds), `cityplus "
        f"serve` (1 worker; micro-batches of up to {args.batch_size} messages or {args.batch_ms:g} ms) and the "
        f"database all on this machine. {args.devices:,} devices, Ultralight `<time>|t|<n>|h|<v>`, QoS 1, "
        f"{args.duration:g} s per step. Stored = the gateway's transaction committed (entity updated, receipt "
        "and health written); latency polled every 20 ms (upper bounds). History rows (temporal) do not exist "
        "yet: the issue's \"→ history row\" is not part of the path measured.",
        "",
        f"Mosquitto alone, QoS 1, one subscriber on this machine (the limit): paho subscriber {lp:,.0f} msg/s; "
        "C clients (`mosquitto_pub -l` → `mosquitto_sub`) "
        + (f"{lc:,.0f} msg/s" if lc else "not measured (the subscriber did not get every message)")
        + f" ({args.limit_messages:,} messages).",
        "",
    ]
    text = "\n".join(head + lines)
    print("\n" + text)
    if not args.no_doc:
        with DOC.open("a", encoding="utf-8") as f:
            f.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
