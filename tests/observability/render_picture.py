"""Draw the dashboard's panels from query results saved by test_stack.py (run with matplotlib).

Usage: render_picture.py PANELS_JSON OUT_PNG. Runs in .tools/obs-venv (make observability-tools),
since matplotlib is a tool of the docs, not a dependency of the service.
"""

from __future__ import annotations

import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

UNIT_SCALE = {
    "s": (1000.0, "ms"),
    "percentunit": (100.0, "%"),
    "reqps": (1.0, "req/s"),
    "ops": (1.0, "ops/s"),
    "short": (1.0, ""),
}


def main(source: str, target: str) -> None:
    data = json.loads(open(source).read())  # noqa: SIM115 - a script, read once
    panels = data["panels"]
    columns = 4
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 5.2, rows * 3.1), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        scale, label = UNIT_SCALE.get(panel["unit"], (1.0, panel["unit"]))
        for series in panel["series"]:
            xs = [float(t) - data["start"] for t, _v in series["values"]]
            ys = [float(v) * scale for _t, v in series["values"]]
            ax.plot(xs, ys, label=series["legend"][:28], linewidth=1.4)
        ax.set_title(panel["title"], fontsize=10, loc="left")
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if 0 < len(panel["series"]) <= 6:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle(
        "orders-service dashboard panels, drawn from a real Prometheus scrape "
        "(x: seconds into the test run: hits/misses, Redis outage, MySQL outage)",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(target, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
