"""The chart renders, lints and validates under every supported way of installing it."""

from __future__ import annotations

import pytest

from tests.support.chart import (
    CHART,
    KUBE_VERSIONS,
    SCENARIOS,
    Scenario,
    render_text,
    run,
    tool,
)


def test_helm_lint_strict_passes_with_defaults_and_the_prod_overlay(helm: str) -> None:
    for args in ([], ["-f", str(CHART / "values-prod.yaml")]):
        result = run([helm, "lint", "--strict", str(CHART), *args])
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_rendering_is_valid_kubernetes(
    scenario: Scenario, kube_version: str, tmp_path: pytest.TempPathFactory
) -> None:
    """kubernetes-validate --strict: unknown fields are errors, as the API server's strict mode."""
    rendered = tmp_path / "rendered.yaml"  # type: ignore[operator]
    rendered.write_text(render_text(tuple(scenario.args()), kube_version))
    result = run(
        [
            tool("kubernetes-validate"),
            "--kubernetes-version",
            kube_version,
            "--strict",
            "--quiet",
            str(rendered),
        ]
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Only the prometheus-operator CRDs may lack a schema here; test_chart_crds.py validates them.
    unvalidated = [line for line in output.splitlines() if "Couldn't find schema" in line]
    assert all("monitoring.coreos.com" in line for line in unvalidated), unvalidated


def test_the_validator_rejects_an_unknown_field(tmp_path: pytest.TempPathFactory) -> None:
    """Guards the test above: a typo in a Deployment must fail, not pass silently."""
    broken = render_text((), KUBE_VERSIONS[0]).replace(
        "revisionHistoryLimit: 5", "revisionHistoryLimit: 5\n  replicaz: 3", 1
    )
    path = tmp_path / "broken.yaml"  # type: ignore[operator]
    path.write_text(broken)
    result = run([tool("kubernetes-validate"), "-k", KUBE_VERSIONS[0], "--strict", str(path)])
    assert result.returncode != 0
