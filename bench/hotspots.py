"""Where a cache hit spends its time: py-spy's collapsed stacks reduced to a readable table.

Inclusive share: fraction of the worker's busy samples with that frame anywhere on the stack.
Self share: fraction with that frame at the top (where the CPU actually was).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(raw: str) -> str:
    """``func (path/to/module.py:123)`` -> ``module.py:func``; line numbers merged."""
    match = _FRAME.match(raw.strip())
    if not match:
        return raw.strip()
    path = match["file"]
    short = "/".join(path.split("/")[-2:]) if "site-packages" not in path else path.split("/")[-1]
    for marker in ("site-packages/",):
        if marker in path:
            short = path.split(marker, 1)[1]
    return f"{short}:{match['func']}"


# (layer, substrings of a frame's file); the first layer found walking from the leaf up wins
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "observability: logging, metrics, tracing hooks",
        ("service/observability", "structlog/", "prometheus_client/", "opentelemetry/"),
    ),
    ("cache lookup: near cache, Redis client", ("service/cache", "redis/")),
    ("view: validate, headers, body envelope", ("service/api", "service/orders")),
    ("Flask/Werkzeug: routing, contexts, Response", ("flask/", "werkzeug/")),
    ("gunicorn: parse, Date header, write, thread pool", ("gunicorn/",)),
)


def _file_of(raw: str) -> str:
    match = _FRAME.match(raw.strip())
    return match["file"] if match else raw


def layers(collapsed: Path) -> list[tuple[str, float]]:
    """Share of busy samples per layer of the stack (the innermost recognised frame decides)."""
    shares: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        layer = "other: threads, queues, stdlib"
        for frame in reversed(stack.split(";")):
            path = _file_of(frame)
            found = next((name for name, keys in LAYERS if any(k in path for k in keys)), None)
            if found:
                layer = found
                break
        shares[layer] += count
    return [(name, n / total) for name, n in shares.most_common()] if total else []


def summarise(collapsed: Path, top: int = 30) -> tuple[int, list[tuple[str, float, float]]]:
    """Total samples and the ``top`` frames by self share (where the CPU was), with inclusive."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    rows = [(name, inclusive[name] / total, n / total) for name, n in own.most_common(top)]
    return total, rows


def markdown(
    collapsed: Path, name: str, rps: float | None = None, cpu_us: float | None = None, top: int = 25
) -> str:
    """One system's profile: per-layer shares (with estimated us per request) and top frames."""
    total, rows = summarise(collapsed, top)
    lines = [
        f"## {name}: where a cache hit spends its time",
        "",
        f"py-spy --gil on one worker under closed-loop hit load; {total:,} samples"
        + (f"; {rps:,.0f} req/s across all workers" if rps else "")
        + (f"; {cpu_us:,.0f} us of server CPU per request (all processes)" if cpu_us else "")
        + ". Time in syscalls with the GIL released (socket reads and writes) is not sampled.",
        "",
        "| layer (innermost recognised frame) | share of GIL samples | ~us per request |",
        "|---|---|---|",
    ]
    for layer, share in layers(collapsed):
        est = f"{share * cpu_us:,.0f}" if cpu_us else "n/a"
        lines.append(f"| {layer} | {share:.1%} | {est} |")
    lines += ["", "| frame | inclusive | self |", "|---|---|---|"]
    lines += [f"| `{frame}` | {inc:.1%} | {own:.1%} |" for frame, inc, own in rows]
    return "\n".join(lines) + "\n"


def difference(floor: tuple[Path, float], service: tuple[Path, float]) -> list[str]:
    """Per layer, the service's estimated us per hit minus the floor's: what there is to remove.

    Each layer's share of GIL samples times the process's measured CPU per request; a rough
    split (GIL-released syscalls are not sampled), but both systems are split the same way.
    """
    (floor_raw, floor_cpu), (service_raw, service_cpu) = floor, service
    f = {name: share * floor_cpu for name, share in layers(floor_raw)}
    s = {name: share * service_cpu for name, share in layers(service_raw)}
    names = sorted(set(f) | set(s), key=lambda n: -(s.get(n, 0) - f.get(n, 0)))
    lines = [
        f"Server CPU per hit: service {service_cpu:,.0f} us, floor {floor_cpu:,.0f} us "
        f"({service_cpu - floor_cpu:+,.0f} us).",
        "",
        "| layer | floor ~us / hit | service ~us / hit | service - floor |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {f.get(n, 0):,.0f} | {s.get(n, 0):,.0f} | {s.get(n, 0) - f.get(n, 0):+,.0f} |"
        for n in names
    ]
    service_total, service_rows = summarise(service_raw, 12)
    lines += [
        "",
        f"Top service frames by self time ({service_total:,} samples; inclusive in brackets):",
        "",
    ]
    lines += [
        f"{i}. `{frame}`: {own:.1%} self ({inc:.1%})"
        for i, (frame, inc, own) in enumerate(service_rows, 1)
    ]
    return [*lines, ""]
