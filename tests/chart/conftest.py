"""Fixtures for the chart tests; the helpers themselves live in tests/support/chart.py."""

from __future__ import annotations

import shutil

import pytest

from tests.support.chart import NODE_MODULES, tool


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


@pytest.fixture(scope="session")
def node() -> str:
    """node plus the prometheus-operator models it validates CRDs with."""
    path = shutil.which("node")
    if path is None:
        pytest.fail(
            "node is missing: install Debian's nodejs/npm, then `make chart-tools`", pytrace=False
        )
    if not (NODE_MODULES / "@kubernetes-models" / "prometheus-operator").is_dir():
        pytest.fail(
            "@kubernetes-models/prometheus-operator is missing: run `make chart-tools`",
            pytrace=False,
        )
    return path
