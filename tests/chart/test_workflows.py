"""The GitHub workflows users' forks run: actionlint-clean, and doing what the issue asks.

No GitHub runner executes here, so the tests hold the files to their promises: actionlint (types,
expressions, action inputs, shell) on every workflow, and the steps that must exist in each.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import ROOT, tool

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text()))


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def scripts(workflow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow))


def uses(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["uses"].split("@")[0]: s.get("with", {}) for s in steps(workflow) if "uses" in s}


def actionlint(paths: list[Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint"), "-no-color", *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_there_are_the_three_workflows() -> None:
    assert {p.name for p in WORKFLOWS} == {"ci.yaml", "release.yaml", "kind-e2e.yaml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes(workflow: Path) -> None:
    result = actionlint([workflow])
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """Guards the test above: an undefined input and a bad expression must fail."""
    (tmp_path / ".git").mkdir()
    broken = tmp_path / ".github" / "workflows" / "broken.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: actions/checkout@v5\n        with:\n          no-such-input: 1\n"
        "      - run: echo ${{ github.no_such_context_thing }}\n"
    )
    result = actionlint([broken], cwd=tmp_path)
    assert result.returncode != 0
    assert "no-such-input" in result.stdout


def test_release_builds_two_architectures_with_sbom_and_provenance_and_pushes_the_chart() -> None:
    release = load("release.yaml")
    build = uses(release)["docker/build-push-action"]
    assert set(build["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["push"] is True
    assert build["sbom"] is True
    assert str(build["provenance"]).startswith("mode=max")
    assert "ghcr.io" in uses(release)["docker/login-action"]["registry"]
    assert "actions/attest-build-provenance" in uses(release)
    assert "helm push" in scripts(release)
    assert "oci://ghcr.io/" in scripts(release)


def test_ci_runs_make_test_and_a_dependency_scan() -> None:
    ci = load("ci.yaml")
    assert ".ci/run" in scripts(ci)  # which runs `make test`
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "pip-audit" in scripts(ci)


def test_kind_e2e_covers_the_path_users_take() -> None:
    e2e = load("kind-e2e.yaml")
    text = scripts(e2e)
    kind = uses(e2e)["helm/kind-action"]
    assert kind["version"] == "${{ env.KIND_VERSION }}"
    assert e2e["env"]["KIND_VERSION"].startswith("v0.")  # pinned, and >= v0.24 (NetworkPolicy)
    assert tuple(int(x) for x in e2e["env"]["KIND_VERSION"][1:].split(".")[:2]) >= (0, 24)
    for needed in (
        "ct lint --config ct.yaml",
        "ct install --config ct.yaml",
        "skaffold run --profile kind",
        "helm test orders",
        "port-forward service/orders 5001:5001",
        'test "${first}" = MISS',
        'test "${second}" = HIT',
        "UPDATE orders SET customer_name",
        "-gt 1000",  # visible within a second
        "--set image.tag=e2e-2",
        'test "${before}" = "${after}"',  # MySQL and Redis: same pod UID and restart count
    ):
        assert needed in text, needed
    assert (ROOT / "ct.yaml").is_file()
    ct = yaml.safe_load((ROOT / "ct.yaml").read_text())
    assert ct["chart-dirs"] == ["helm"]


def test_release_checks_that_an_anonymous_user_can_pull_what_it_published() -> None:
    """Issue 22: new GHCR packages are private, so the chart README's first command failed for
    everyone until a maintainer flipped them; the release now says so when they are."""
    release = load("release.yaml")
    public = release["jobs"]["public"]
    assert public["needs"] == "chart"
    assert public["permissions"] == {}  # anonymous: no token at all
    text = "\n".join(step.get("run", "") for step in public["steps"])
    assert "ghcr.io/token?scope=repository:" in text
    assert "orders-service charts/orders" in text
    assert "Change visibility" in text


def test_every_action_is_pinned_by_commit_with_its_tag_beside_it() -> None:
    """A tag can be moved to other code by whoever controls the action's repository; a commit
    cannot. The tag stays in a comment so a reader (and a bump tool) sees the version."""
    import re

    for workflow in sorted((ROOT / ".github" / "workflows").glob("*.yaml")):
        for number, line in enumerate(workflow.read_text().splitlines(), 1):
            if "uses:" not in line:
                continue
            assert re.search(r"uses: [\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), (
                f"{workflow.name}:{number}: {line.strip()}"
            )
