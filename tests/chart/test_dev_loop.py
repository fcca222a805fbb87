"""skaffold.yaml and k8s/ agree with the chart; the dev and monitoring values render validly.

No skaffold, kind or cluster runs here, so these tests hold the files to the chart they drive.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.chart_support import CHART, KUBE_VERSIONS, ROOT, find, one, render, run, tool

SKAFFOLD = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def release() -> dict[str, Any]:
    (only,) = SKAFFOLD["deploy"]["helm"]["releases"]
    return dict(only)


def skaffold_values_args(*extra: str) -> list[str]:
    args: list[str] = []
    for values_file in [*release()["valuesFiles"], *extra]:
        args += ["-f", str(ROOT / values_file)]
    return args


def test_skaffold_deploys_the_chart_with_the_image_it_builds() -> None:
    (artifact,) = SKAFFOLD["build"]["artifacts"]
    assert (ROOT / artifact["docker"]["dockerfile"]).is_file()
    assert (ROOT / release()["chartPath"]) == CHART
    key = artifact["image"].replace("-", "_")
    assert release()["setValueTemplates"] == {
        "image.repository": f"{{{{.IMAGE_REPO_{key}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{key}}}}}",
    }
    assert {"repository", "tag"} <= set(VALUES["image"])


def test_skaffold_forwards_the_api_service_to_localhost_5001() -> None:
    (forward,) = SKAFFOLD["portForward"]
    docs = render(skaffold_values_args())
    service = one(docs, "Service", forward["resourceName"])
    assert forward["port"] == service["spec"]["ports"][0]["port"]
    assert forward["localPort"] == 5001
    assert forward["namespace"] == release()["namespace"]


def test_skaffold_has_kind_and_minikube_profiles() -> None:
    contexts = {
        p["name"]: p["activation"][0]["kubeContext"]
        for p in SKAFFOLD["profiles"]
        if "activation" in p
    }
    assert contexts == {"kind": "kind-orders", "minikube": "minikube"}
    kind = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    assert kind["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert f"kind-{kind['name']}" == contexts["kind"]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("monitoring", [False, True], ids=["dev", "dev+monitoring"])
def test_dev_values_render_valid_manifests(
    kube_version: str, monitoring: bool, tmp_path: Any
) -> None:
    extra = ("k8s/values-monitoring.yaml",) if monitoring else ()
    args = skaffold_values_args(*extra)
    result = run(
        [tool("helm"), "template", "orders", str(CHART), "--kube-version", kube_version, *args]
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "dev.yaml"
    path.write_text(result.stdout)
    check = run([tool("kubernetes-validate"), "-k", kube_version, "--strict", "--quiet", str(path)])
    assert check.returncode == 0, check.stdout + check.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    seed = one(docs, "Job", "orders-seed")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert int(seed[seed.index("--orders") + 1]) >= 990  # page 99 exists
    assert bool(find(docs, "ServiceMonitor")) == monitoring


def test_grafana_sidecar_looks_for_the_label_the_chart_sets() -> None:
    stack = yaml.safe_load(
        (ROOT / "k8s" / "monitoring" / "kube-prometheus-stack-values.yaml").read_text()
    )
    sidecar = stack["grafana"]["sidecar"]["dashboards"]
    docs = render(skaffold_values_args("k8s/values-monitoring.yaml"))
    dashboards = [
        c for c in find(docs, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]
    ]
    assert dashboards
    for configmap in dashboards:
        assert configmap["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]
        assert sidecar["folderAnnotation"] in configmap["metadata"]["annotations"]
    # Our ServiceMonitors carry no `release` label, so the stack must select them without one.
    spec = stack["prometheus"]["prometheusSpec"]
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert spec["ruleSelectorNilUsesHelmValues"] is False
