"""skaffold.yaml and k8s/ agree with the chart; the dev and monitoring values render validly.

No skaffold, kind or cluster runs here, so these tests hold the files to the chart they drive.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, KUBE_VERSIONS, ROOT, find, one, render, run, tool

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
        "image.registry": "",
        "image.repository": f"{{{{.IMAGE_REPO_{key}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{key}}}}}",
    }
    assert {"registry", "repository", "tag"} <= set(VALUES["image"])


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


# ---- skaffold's profile merge, as skaffold does it ------------------------------------------


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), f"skaffold patch paths here are JSON pointers: {path}"
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _apply_patch(config: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 6902 add/replace/remove, the operations skaffold.yaml uses (others fail loudly)."""
    *parents, last = _pointer(patch["path"])
    target: Any = config
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    op = patch["op"]
    if isinstance(target, list):
        if op == "add":
            target.insert(len(target) if last == "-" else int(last), patch["value"])
        elif op == "replace":
            target[int(last)] = patch["value"]
        elif op == "remove":
            del target[int(last)]
        else:
            raise AssertionError(f"unsupported patch op {op}")
    elif op in {"add", "replace"}:
        target[last] = patch["value"]
    elif op == "remove":
        del target[last]
    else:
        raise AssertionError(f"unsupported patch op {op}")


def _overlay(base: Any, profile: Any) -> Any:
    """skaffold's overlay: structs merge field by field, a non-empty list replaces the base's."""
    if isinstance(base, dict) and isinstance(profile, dict):
        merged = dict(base)
        for key, value in profile.items():
            merged[key] = _overlay(base.get(key), value) if key in base else value
        return merged
    return profile if profile not in (None, [], {}) else base


def effective_config(*profiles: str) -> dict[str, Any]:
    """The config `skaffold -p a,b` runs: each profile in order, its patches first, then its
    fields overlaid (schema/profiles.go: patches, then overlayProfileField per section)."""
    import copy

    config = copy.deepcopy({k: v for k, v in SKAFFOLD.items() if k != "profiles"})
    by_name = {p["name"]: p for p in SKAFFOLD["profiles"]}
    for name in profiles:
        profile = by_name[name]
        for patch in profile.get("patches", []):
            _apply_patch(config, patch)
        for section, value in profile.items():
            if section not in {"name", "activation", "patches", "requiresAllActivations"}:
                config[section] = _overlay(config.get(section), value)
    return config


PROFILE_SETS = [(), ("kind",), ("minikube",), ("monitoring",), ("kind", "monitoring")]


@pytest.mark.parametrize("profiles", PROFILE_SETS, ids=lambda p: ",".join(p) or "none")
def test_every_profile_keeps_the_api_forward_on_5001(profiles: tuple[str, ...]) -> None:
    """Before: the monitoring profile had its own portForward list, which skaffold puts in place
    of the top-level one: `-p kind,monitoring` forwarded Grafana but no longer the API."""
    forwards = effective_config(*profiles)["portForward"]
    api = [f for f in forwards if f["resourceName"] == "orders"]
    assert [(f["port"], f["localPort"], f["namespace"]) for f in api] == [(5001, 5001, "orders")]
    if "monitoring" in profiles:
        assert {f["localPort"] for f in forwards} == {5001, 3000}
        valuesfiles = effective_config(*profiles)["deploy"]["helm"]["releases"][0]["valuesFiles"]
        assert valuesfiles == ["k8s/values-dev.yaml", "k8s/values-monitoring.yaml"]


def test_the_merge_model_replaces_a_profile_list_as_skaffold_does() -> None:
    """Guards the model above: a profile's own list replaces, never appends."""
    base = {"portForward": [{"resourceName": "orders"}]}
    assert _overlay(base, {"portForward": [{"resourceName": "grafana"}]}) == {
        "portForward": [{"resourceName": "grafana"}]
    }
