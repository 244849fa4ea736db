"""Benchmark of the environment module: AQI recomputation for N air-quality stations (issue 12 target: 1,000 in ≤ 1 s).

    python -m bench environment [--backend sqlite|postgres|both] [--stations 1000] [--reps 5] [--quick] [--no-doc]

End to end, as `POST /api/v1/environment/air/recompute` does it, in one transaction: read every AirQualityObserved
entity from the context broker (`query_entities`, pages of 1,000), compute each station's real-time AQI (HJ 633—2026)
and the district and city aggregates, write `airQualityIndex`, `airQualityLevel` and `primaryPollutant` back onto
every station (`batch_write`, one set-based batch), append the audit entry and commit. Before each repetition the
stations get a new hour of values (untimed), so every repetition writes real changes; on PostgreSQL a
`VACUUM ANALYZE` follows (untimed), standing in for the autovacuum these machines run without. Also timed, in the
same repetition: the read and compute part alone (`network_aqi`, which includes the O3 8-hour means from the
broker's history: one grouped query), the pure computation on data already in memory, the public read routes'
cache (`cached_network`: a miss after the write-back, then hits, each with its version query), and one station's
history page data (`station_history`: 24 hours and 30 days from 31 days of hourly values in the broker's history,
validity rules, hourly and daily AQI).

Prints a table and appends a dated section to docs/performance.md (`--no-doc` to skip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.context_broker import DISTRICTS, DOC, Backend, _mem_gib, _met, _quiet_logging, settings_for

TARGET_S = 1.0


def stations(n: int, at: datetime, seed: int) -> list[dict[str, Any]]:
    """N station entities around Chengdu with one hour of plausible values."""
    from cityplus.modules.environment import service

    rng = random.Random(seed)
    out = []
    for i in range(n):
        values = {"pm25": round(rng.uniform(10, 160)), "pm10": round(rng.uniform(20, 250)),
                  "no2": round(rng.uniform(5, 120)), "so2": round(rng.uniform(2, 30)),
                  "o3": round(rng.uniform(10, 220)), "co": round(rng.uniform(0.3, 2.5), 1)}
        out.append(service.station_entity(
            f"bench-{i:05d}", f"站点{i}", f"Station {i}", DISTRICTS[i % len(DISTRICTS)],
            30.66 + rng.uniform(-0.2, 0.2), 104.06 + rng.uniform(-0.25, 0.25), point_type="urban", values=values,
            observed_at=at, provider="CityPlus benchmark (synthetic)"))
    return out


HITS = 20
HISTORY_STATION = "urn:ngsi-ld:AirQualityObserved:chengdu-bench-00000"


def seed_history(ctx: Any, active: Any, before: datetime) -> None:
    """31 days of hourly values (six items) before `before` in the history of the first station (untimed)."""
    from cityplus.modules.context import service as context
    from cityplus.modules.context import temporal

    rng = random.Random(1)
    hours = [before - timedelta(hours=k) for k in range(1, 31 * 24 + 1)]
    attrs = {active.expand_term(p): [{"type": "Property", "value": round(rng.uniform(lo, hi), 1),
                                      "observedAt": h.isoformat().replace("+00:00", "Z")} for h in hours]
             for p, lo, hi in (("pm25", 10, 160), ("pm10", 20, 250), ("no2", 5, 120), ("so2", 2, 30),
                               ("o3", 10, 220), ("co", 0.3, 2.5))}
    with ctx.db.session() as session:
        temporal.add_instances(session, context.tenant(session, None, create=False).id, HISTORY_STATION, None, attrs)


def run_backend(kind: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    from cityplus.api.app import build_context
    from cityplus.core.audit import Actor
    from cityplus.modules.context import service as context
    from cityplus.modules.environment import aqi, service

    be = Backend(kind, workdir)
    try:
        version = be.version()
        url = be.fresh("env")
        ctx = build_context(settings_for(url, workdir))
        active = context.core_context(ctx)
        actor = Actor.system("bench")
        base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=args.reps + 1)
        with ctx.db.session() as session:
            service.upsert_stations(session, active, actor, stations(args.stations, base, 0))
        seed_history(ctx, active, base)
        if kind == "postgres":
            be.analyze(url)
        totals, reads, computes, checked = [], [], [], []
        misses, hits, histories, o3s = [], [], [], []
        for rep in range(args.reps):
            at = base + timedelta(hours=rep + 1)
            with ctx.db.session() as session:  # a new hour of values (untimed)
                service.upsert_stations(session, active, actor, stations(args.stations, at, rep + 1))
            if kind == "postgres":
                be.analyze(url)  # what autovacuum would do between hourly runs (it is off on these machines)
            now = at + timedelta(minutes=5)
            t0 = time.perf_counter()
            with ctx.db.session() as session:
                network = service.recompute(session, active, actor, now=now)
            totals.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with ctx.db.session(readonly=True) as session:
                again = service.network_aqi(session, active, now=now)
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with ctx.db.session(readonly=True) as session:
                service.with_o3_8h(session, active, again.stations, now=now)
            o3s.append(time.perf_counter() - t0)
            inputs = [s.concentrations for s in again.stations]
            t0 = time.perf_counter()
            for c in inputs:
                aqi.compute(c, edition="2026", period="hourly")
            computes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with ctx.db.session(readonly=True) as session:
                service.cached_network(session, active)
            misses.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(HITS):
                with ctx.db.session(readonly=True) as session:
                    service.cached_network(session, active)
            hits.append((time.perf_counter() - t0) / HITS)
            t0 = time.perf_counter()
            with ctx.db.session(readonly=True) as session:
                hist = service.station_history(session, active, HISTORY_STATION, now=now)
            histories.append(time.perf_counter() - t0)
            assert sum(1 for d in hist.daily if d.result is not None) >= 29, "history days missing"
            # what was written is what is read back
            written = sum(1 for s in network.stations if s.result is not None)
            checked.append(written)
            print(f"  rep {rep + 1}: recompute {totals[-1]:.3f} s, read+compute {reads[-1]:.3f} s, "
                  f"compute {computes[-1]:.3f} s, {written} stations written, city AQI {network.city.result.aqi}",
                  flush=True)
        with ctx.db.session(readonly=True) as session:
            ent = context.get_entity(session, None, "urn:ngsi-ld:AirQualityObserved:chengdu-bench-00000")
            assert active.expand_term("airQualityIndex") in ent.attrs, "write-back missing"
        ctx.db.dispose()
    finally:
        be.cleanup()
    med = statistics.median(totals)
    return [
        f"### {kind} — {version}, {args.stations:,} stations",
        "",
        "| measure | median | min | max | target | result |",
        "|---|---|---|---|---|---|",
        f"| recompute end to end (read, compute, write back, audit, commit) | {med:.3f} s | {min(totals):.3f} s | "
        f"{max(totals):.3f} s | ≤ {TARGET_S:g} s | {_met(med <= TARGET_S)} |",
        f"| read + compute only (`network_aqi`) | {statistics.median(reads):.3f} s | {min(reads):.3f} s | "
        f"{max(reads):.3f} s | | |",
        f"| of which O3 8-hour means (`with_o3_8h`: one grouped history query + AQI again) | "
        f"{statistics.median(o3s) * 1000:.1f} ms | {min(o3s) * 1000:.1f} ms | {max(o3s) * 1000:.1f} ms | | |",
        f"| pure computation (`aqi.compute` × {args.stations:,}) | {statistics.median(computes):.3f} s | "
        f"{min(computes):.3f} s | {max(computes):.3f} s | | |",
        f"| write back + audit + commit (recompute − read+compute, medians) | "
        f"{med - statistics.median(reads):.3f} s | | | | |",
        f"| public read, cache miss (`cached_network`: version query + `network_aqi`) | "
        f"{statistics.median(misses):.3f} s | {min(misses):.3f} s | {max(misses):.3f} s | | |",
        f"| public read, cache hit (version query only; mean of {HITS}) | {statistics.median(hits) * 1000:.1f} ms | "
        f"{min(hits) * 1000:.1f} ms | {max(hits) * 1000:.1f} ms | | |",
        f"| one station's history (`station_history`, 24 h + 30 days from 31 days of hourly values) | "
        f"{statistics.median(histories) * 1000:.1f} ms | {min(histories) * 1000:.1f} ms | "
        f"{max(histories) * 1000:.1f} ms | | |",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench environment", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--stations", type=int, default=1000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smoke run: 100 stations, 1 repetition")
    p.add_argument("--no-doc", action="store_true", help="do not append to docs/performance.md")
    args, _unknown = p.parse_known_args(argv)  # `python -m bench --quick` passes the same options to every bench
    if args.quick:
        args.stations, args.reps = min(args.stations, 100), 1
    _quiet_logging()
    kinds = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    workdir = Path(tempfile.mkdtemp(prefix="cpbench-env-"))
    started = time.time()
    lines: list[str] = []
    try:
        for kind in kinds:
            print(f"\n=== {kind}: {args.stations} stations, {args.reps} repetition(s) ===", flush=True)
            lines += run_backend(kind, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cmd = "python -m bench environment " + " ".join(argv if argv is not None else sys.argv[1:])
    head = [
        f"## {dt.date.today().isoformat()} — environment: AQI recomputation, cached reads, station history "
        "(`bench/environment.py`)"
        + (" — quick smoke run, not a measurement" if args.quick else ""),
        "",
        f"Command: `{cmd.strip()}` ({(time.time() - started) / 60:.1f} min). Machine: {os.cpu_count()} cores / "
        f"{_mem_gib()} GiB, shared with other work (noisy); Python {platform.python_version()}. Medians of "
        f"{args.reps} repetition(s), each on {args.stations:,} stations with a fresh hour of values; in-process "
        "service calls (`service.recompute`, what the API route runs), one transaction each.",
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
