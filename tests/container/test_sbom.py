"""`make image` writes an SBOM (CycloneDX, by trivy, offline) that lists what the image ships: the
service and every runtime dependency at the version the lock pins."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.container.conftest import PODMAN, ROOT, BuiltImage, tool

_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ \\]+)", re.MULTILINE)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_make_image_writes_the_sbom() -> None:
    plan = subprocess.run(
        ["make", "-n", "image"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "hack/sbom.sh localhost/orders-service:dev build/sbom.cdx.json" in plan


def test_the_sbom_lists_the_service_and_every_locked_dependency(
    image: BuiltImage, tmp_path: Path
) -> None:
    output = tmp_path / "sbom.cdx.json"
    env = dict(os.environ, PODMAN=str(PODMAN), TRIVY=str(tool("trivy")))
    done = subprocess.run(
        [str(ROOT / "hack" / "sbom.sh"), image.tag, str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sbom = json.loads(output.read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    shipped = {
        _canonical(c["name"]): c.get("version")
        for c in sbom["components"]
        if c.get("purl", "").startswith("pkg:pypi/")
    }
    assert "orders-service" in shipped
    locked = dict(_PIN.findall((ROOT / "requirements" / "runtime.txt").read_text()))
    for name, version in locked.items():
        assert shipped.get(_canonical(name)) == version, f"{name}=={version} not in the SBOM"
    assert any(c.get("purl", "").startswith("pkg:deb/debian/") for c in sbom["components"])
