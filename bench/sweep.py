"""``make bench-sweep``: gunicorn settings swept with the floor, the peer and the service all
run under each setting, so every ratio compares like with like.

One factor at a time around the shipped default (workers, threads, keep-alive, worker class),
because a full grid does not fit a shared two-core machine. Within a setting the three systems are
interleaved; across settings drift is possible, which is why the floor is re-measured at each one
and the ratios are shown beside the absolute figures. The report names the setting with the
highest service throughput and the one with the best service-to-floor ratio; choosing the shipped
default from it is left to the maintainers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from bench import phases, report
from bench.context import GunicornShape, context, database_name, prepare_database, shape_from_args
from bench.formatting import ratio
from bench.servers import Gunicorn

DEFAULT_GRID = "workers=2,3,6;threads=1,2,8;keepalive=0,30;worker_class=sync"


def grid(base: GunicornShape, spec: str) -> list[GunicornShape]:
    """The base shape, then each ``field=v1,v2`` variant changing one field (duplicates dropped)."""
    shapes = [base]
    for part in spec.split(";"):
        if not part.strip():
            continue
        name, _, values = part.partition("=")
        name = name.strip()
        if name not in {f.name for f in dataclasses.fields(GunicornShape)}:
            raise ValueError(f"unknown gunicorn setting {name!r} in sweep grid")
        for value in values.split(","):
            typed: Any = value.strip() if name == "worker_class" else int(value)
            shape = dataclasses.replace(base, **{name: typed})
            if shape not in shapes:
                shapes.append(shape)
    return shapes


def best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The winners: highest service req/s, best service/floor ratio, lowest service CPU per hit."""
    ok = [r for r in rows if not r["errors"]] or rows
    return {
        "service_rps": max(ok, key=lambda r: r["service_rps"])["shape"],
        "service_x_floor": max(ok, key=lambda r: r["service_x_floor"] or 0)["shape"],
        "service_cpu": min(ok, key=lambda r: r["service_cpu_us"] or float("inf"))["shape"],
    }


def _row(shape: GunicornShape, measured: dict[str, Any]) -> dict[str, Any]:
    f, p, s = measured["floor"], measured["peer"], measured["service"]
    return {
        "shape": shape.label,
        "settings": dataclasses.asdict(shape),
        "floor_rps": round(f["rps"], 1),
        "peer_rps": round(p["rps"], 1),
        "service_rps": round(s["rps"], 1),
        "service_x_floor": ratio(s["rps"], f["rps"]),
        "service_x_peer": ratio(s["rps"], p["rps"]),
        "service_cpu_us": s["cpu_us_per_request"],
        "floor_cpu_us": f["cpu_us_per_request"],
        "cpu_x_floor": ratio(s["cpu_us_per_request"], f["cpu_us_per_request"]),
        "service_p99_ms": round(s["p99_ms"], 2),
        "errors": f["errors"] + p["errors"] + s["errors"],
    }


def markdown(doc: dict[str, Any]) -> str:
    rows = doc["rows"]
    b = doc["best"]
    lines = [
        "# gunicorn settings sweep",
        "",
        f"Measured {doc['machine']['date']}; for each setting the floor, the peer and the service "
        f"all run under it, closed loop, {doc['rounds']} interleaved rounds of "
        f"{doc['seconds']:g} s "
        f"(median), hot pages 1-{doc['hot_pages']}. 1-minute load average {doc['loadavg'][0]:.1f} "
        f"before, {doc['loadavg'][1]:.1f} after. One factor changed at a time from the first "
        "row.",
        "",
        "| gunicorn setting | floor req/s | peer req/s | service req/s | service x floor | "
        "service x peer | service CPU us/req | CPU x floor | service p99 ms (closed) | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['floor_rps']:,.0f} | {r['peer_rps']:,.0f} | "
            f"{r['service_rps']:,.0f} | {r['service_x_floor']:.2f}x | {r['service_x_peer']:.2f}x | "
            f"{r['service_cpu_us']:,.0f} | {r['cpu_x_floor']:.2f}x | {r['service_p99_ms']:,.1f} | "
            f"{r['errors']} |"
        )
    lines += [
        "",
        f"- Highest service throughput: **{b['service_rps']}**",
        f"- Best service-to-floor ratio: **{b['service_x_floor']}**",
        f"- Lowest service CPU per hit: **{b['service_cpu']}**",
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    base = shape_from_args(args)
    shapes = grid(base, args.grid)
    plan = phases.Plan(closed_seconds=args.compare_seconds, rounds=args.sweep_rounds)
    load_before = os.getloadavg()[0]
    rows = []
    with context(args, database_name(plan.orders), base) as ctx:
        prepare_database(ctx, plan.orders)
        body = ctx.scratch / "page-1.json"
        for shape in shapes:
            ctx.shape = shape
            print(f"sweep: {shape.label} ...", flush=True)
            service, peer = ctx.service(), ctx.peer()
            floor: Gunicorn | None = None
            started: list[Gunicorn] = []
            try:
                for server in (service, peer):
                    server.start(ready_path="/healthz")
                    started.append(server)
                if not body.exists():
                    body.write_bytes(phases.fetch(f"{service.base_url}/orders/1")[2])
                floor = ctx.floor(body)
                floor.start(ready_path="/healthz")
                started.append(floor)
                systems = [floor, peer, service]
                for server in systems:
                    phases.warm(server, plan.hot_pages)
                rows.append(_row(shape, phases.closed_loop(systems, plan)))
                print(f"  {rows[-1]}", flush=True)
            finally:
                for server in started:
                    server.stop()
    doc: dict[str, Any] = {
        "machine": report.machine(),
        "rounds": plan.rounds,
        "seconds": plan.closed_seconds,
        "hot_pages": plan.hot_pages,
        "loadavg": [load_before, os.getloadavg()[0]],
        "rows": rows,
        "best": best(rows),
    }
    text = markdown(doc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "sweep.md").write_text(text)
    return text
