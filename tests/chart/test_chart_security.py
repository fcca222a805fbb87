"""trivy finds nothing in the rendered chart beyond the exceptions written down with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support.chart import ROOT, SCENARIOS, render_text, run, tool

IGNORES = Path(__file__).parent / "trivyignore.yaml"
# Keep trivy's cache in the project, never in $HOME.
CACHE = ["--cache-dir", str(ROOT / ".tools" / "chart-trivy-cache")]


def test_rendered_chart_has_no_unexplained_misconfiguration(tmp_path: Path) -> None:
    # Every scenario, so resources behind flags (HPA, monitoring, external secrets) are scanned too.
    for scenario in SCENARIOS:
        (tmp_path / f"{scenario.name}.yaml").write_text(render_text(tuple(scenario.args())))
    result = run(
        [
            tool("trivy"),
            "config",
            "--skip-check-update",
            *CACHE,
            "--quiet",
            "--format",
            "json",
            "--ignorefile",
            str(IGNORES),
            str(tmp_path),
        ]
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    findings = [
        f"{r['Target']}: {m['Severity']} {m['ID']} {m['Title']}: {m.get('Message', '')}"
        for r in report.get("Results", [])
        for m in r.get("Misconfigurations") or []
        if m.get("Status") == "FAIL"
    ]
    assert findings == [], "\n".join(findings)
    scanned = [r for r in report.get("Results", []) if r.get("Class") == "config"]
    assert len(scanned) == len(SCENARIOS), "trivy did not scan every rendering"


def test_no_high_or_critical_finding_is_ever_ignored() -> None:
    """The ignore file may only hold LOW/MEDIUM exceptions, each with its reason."""
    entries = yaml.safe_load(IGNORES.read_text())["misconfigurations"]
    for entry in entries:
        assert len(entry["statement"]) > 40, entry["id"]
        severity = entry["statement"].split("(")[1].split(")")[0]
        assert severity in {"LOW", "MEDIUM"}, entry


def test_scan_would_catch_a_privileged_container(tmp_path: Path) -> None:
    """Guards the scan: a privileged, root container must be reported at HIGH or above."""
    broken = render_text(()).replace("privileged: false", "privileged: true")
    (tmp_path / "broken.yaml").write_text(broken)
    result = run(
        [
            tool("trivy"),
            "config",
            "--skip-check-update",
            *CACHE,
            "--quiet",
            "--format",
            "json",
            "--severity",
            "HIGH,CRITICAL",
            str(tmp_path),
        ]
    )
    report = json.loads(result.stdout)
    severities = {
        m["Severity"] for r in report.get("Results", []) for m in r.get("Misconfigurations") or []
    }
    assert severities & {"HIGH", "CRITICAL"}, severities
