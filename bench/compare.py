"""``make bench-compare``: two git revisions of the service side by side, in one run.

Each revision is checked out into a temporary git worktree under .run/compare/ and installed into
its own venv there (pip's cache makes the second install quick; a venv is kept per commit). The
floor (from this checkout) and both revisions then run the hit-throughput and CPU-per-hit phase
interleaved, so a change that costs more per hit shows as a ratio B/A before it lands. Revision B
"HEAD" means this working tree as it is, uncommitted edits included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import phases, report
from bench.context import REPO, context, database_name, orders_service, prepare_database
from bench.formatting import ratio
from bench.servers import VENV_BIN, BenchError

ROOT = REPO / ".run" / "compare"
WORKING_TREE = "HEAD"


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _frozen_dependencies() -> str:
    """``pip freeze`` of this checkout's venv, without the project itself."""
    proc = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    )
    keep = [
        line
        for line in proc.stdout.splitlines()
        if line and not line.startswith(("-e", "orders-service", "orders_service"))
    ]
    return "\n".join(keep) + "\n"


def default_rev_a() -> str:
    """origin/main when there is a remote, else main."""
    with contextlib.suppress(BenchError):
        _git("rev-parse", "--verify", "--quiet", "origin/main^{commit}")
        return "origin/main"
    return "main"


def resolve(rev: str) -> str:
    return _git("rev-parse", "--verify", f"{rev}^{{commit}}")


@contextlib.contextmanager
def installed(rev: str) -> Iterator[tuple[Path, Path, str]]:
    """(bin dir, checkout, label) of ``rev``; the working tree itself for ``HEAD``."""
    if rev == WORKING_TREE:
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
        label = f"working tree ({resolve('HEAD')[:10]}{', with edits' if dirty else ''})"
        yield VENV_BIN, REPO, label
        return
    sha = resolve(rev)
    ROOT.mkdir(parents=True, exist_ok=True)
    tree = ROOT / f"tree-{sha[:12]}"
    venv = ROOT / f"venv-{sha[:12]}"
    if tree.exists():
        _git("worktree", "remove", "--force", str(tree))
    _git("worktree", "add", "--detach", str(tree), sha)
    try:
        stamp = venv / ".installed"
        if not stamp.exists():
            print(f"installing {rev} ({sha[:10]}) into {venv} ...", flush=True)
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            subprocess.run([*pip, "--upgrade", "pip"], check=True)
            # the working tree's dependency versions as constraints: the comparison is about
            # the code, so both revisions run on the same libraries where they can; not
            # editable, so the venv stays valid after the worktree is removed
            constraints = ROOT / f"constraints-{sha[:12]}.txt"
            constraints.write_text(_frozen_dependencies())
            subprocess.run([*pip, "-c", str(constraints), str(tree)], check=True)
            stamp.touch()
        yield venv / "bin", tree, f"{rev} ({sha[:10]})"
    finally:
        with contextlib.suppress(BenchError):
            _git("worktree", "remove", "--force", str(tree))


def ratios(measured: dict[str, Any]) -> dict[str, float | None]:
    """B over A for throughput and CPU per hit, and each over the floor of the same rounds."""
    a, b, floor = measured["rev_a"], measured["rev_b"], measured["floor"]
    return {
        "rps_b_over_a": ratio(b["rps"], a["rps"]),
        "cpu_b_over_a": ratio(b["cpu_us_per_request"], a["cpu_us_per_request"]),
        "rps_a_over_floor": ratio(a["rps"], floor["rps"]),
        "rps_b_over_floor": ratio(b["rps"], floor["rps"]),
        "cpu_a_over_floor": ratio(a["cpu_us_per_request"], floor["cpu_us_per_request"]),
        "cpu_b_over_floor": ratio(b["cpu_us_per_request"], floor["cpu_us_per_request"]),
    }


def markdown(doc: dict[str, Any]) -> str:
    m, r, h = doc["measured"], doc["ratios"], doc["labels"]

    def x(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}x"

    rows = [
        ("Flask floor", m["floor"], "1.000x", "1.000x"),
        (f"A: {h['rev_a']}", m["rev_a"], x(r["rps_a_over_floor"]), x(r["cpu_a_over_floor"])),
        (f"B: {h['rev_b']}", m["rev_b"], x(r["rps_b_over_floor"]), x(r["cpu_b_over_floor"])),
    ]
    lines = [
        "# bench-compare",
        "",
        f"Measured {doc['machine']['date']}; closed loop, {doc['rounds']} interleaved rounds of "
        f"{doc['seconds']:g} s (median), hot pages 1-{doc['hot_pages']}; 1-minute load average "
        f"{doc['loadavg'][0]:.1f} before, {doc['loadavg'][1]:.1f} after.",
        "",
        "| system | req/s | x floor | server CPU us / req | CPU x floor |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {v['rps']:,.0f} | {xr} | {v['cpu_us_per_request']:,.0f} | {xc} |"
            for name, v, xr, xc in rows
        ],
        "",
        f"**B / A: throughput {x(r['rps_b_over_a'])}, server CPU per hit {x(r['cpu_b_over_a'])}** "
        "(CPU per hit is the steadier figure on a shared machine).",
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    rev_a = args.rev_a or default_rev_a()
    rev_b = args.rev_b or WORKING_TREE
    plan = phases.Plan(closed_seconds=args.compare_seconds, rounds=args.compare_rounds)
    load_before = os.getloadavg()[0]
    with (
        installed(rev_a) as (bin_a, tree_a, label_a),
        installed(rev_b) as (bin_b, tree_b, label_b),
        context(args, database_name(plan.orders)) as ctx,
    ):
        prepare_database(ctx, plan.orders)
        for bin_dir in (bin_a, bin_b):  # each revision's own migrations (idempotent)
            orders_service("migrate", env=ctx.service_env(), bin_dir=bin_dir)
        a = ctx.service("rev_a", bin_dir=bin_a, cwd=tree_a)
        b = ctx.service("rev_b", bin_dir=bin_b, cwd=tree_b)
        floor = None
        try:
            a.start(ready_path="/healthz")
            b.start(ready_path="/healthz")
            body = ctx.scratch / "page-1.json"
            body.write_bytes(phases.fetch(f"{b.base_url}/orders/1")[2])
            floor = ctx.floor(body)
            floor.start(ready_path="/healthz")
            systems = [floor, a, b]
            for server in systems:
                phases.warm(server, plan.hot_pages)
            print(f"hit throughput: floor, A={label_a}, B={label_b} ...", flush=True)
            measured = phases.closed_loop(systems, plan)
        finally:
            for server in [a, b, *([floor] if floor else [])]:
                server.stop()
    doc: dict[str, Any] = {
        "machine": report.machine(),
        "labels": {"rev_a": label_a, "rev_b": label_b},
        "rounds": plan.rounds,
        "seconds": plan.closed_seconds,
        "hot_pages": plan.hot_pages,
        "loadavg": [load_before, os.getloadavg()[0]],
        "measured": measured,
    }
    doc["ratios"] = ratios(measured)
    text = markdown(doc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "compare.md").write_text(text)
    return text
