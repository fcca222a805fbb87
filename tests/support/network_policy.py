"""NetworkPolicy semantics as the API server defines them, evaluated over one rendering of the
chart: a flow is allowed when any policy selecting the pod allows it, and a pod selected by a
policy of a type is isolated for that type. Shared by the chart's network and cloud tests."""

from __future__ import annotations

from typing import Any

from tests.support.chart import find

MONITORING_NS = {"kubernetes.io/metadata.name": "monitoring"}
KUBE_SYSTEM = {"kubernetes.io/metadata.name": "kube-system"}
DNS_POD = {"k8s-app": "kube-dns"}
NAMESPACE = {"kubernetes.io/metadata.name": "orders"}
ELSEWHERE = {"kubernetes.io/metadata.name": "somewhere-else"}


def pod_labels(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """component -> the labels of its pods, from every pod template of the rendering."""
    labels = {}
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            template = doc["spec"]["template"]["metadata"]["labels"]
        elif doc["kind"] == "Pod":
            template = doc["metadata"]["labels"]
        else:
            continue
        labels[template["app.kubernetes.io/component"]] = template
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
    return True


def peer_matches(
    peer: dict[str, Any], namespace: dict[str, str], labels: dict[str, str] | None, ip: bool
) -> bool:
    if "ipBlock" in peer:
        return ip
    if labels is None:  # outside the cluster: only ipBlock peers match
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace):
            return False
    elif namespace != NAMESPACE:
        return False  # a bare podSelector means the policy's own namespace
    return "podSelector" not in peer or selects(peer["podSelector"], labels)


def rule_allows(
    rule: dict[str, Any],
    side: str,
    *,
    port: int,
    protocol: str,
    namespace: dict[str, str],
    labels: dict[str, str] | None,
) -> bool:
    ports = rule.get("ports")
    if ports is not None and not any(
        p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
    ):
        return False
    peers = rule.get(side)
    if peers is None:
        return True  # no peers: everyone
    return any(peer_matches(p, namespace, labels, ip=True) for p in peers)


class Network:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.policies = [d["spec"] for d in find(docs, "NetworkPolicy")]
        self.pods = pod_labels(docs)

    def isolated(self, component: str, kind: str) -> bool:
        return any(
            kind in p["policyTypes"] and selects(p["podSelector"], self.pods[component])
            for p in self.policies
        )

    def allowed(
        self, component: str, kind: str, port: int, protocol: str, peer: tuple[Any, Any]
    ) -> bool:
        namespace, labels = peer
        side = "from" if kind == "Ingress" else "to"
        key = "ingress" if kind == "Ingress" else "egress"
        selected = [
            p
            for p in self.policies
            if kind in p["policyTypes"] and selects(p["podSelector"], self.pods[component])
        ]
        if not selected:
            return True
        return any(
            rule_allows(
                rule, side, port=port, protocol=protocol, namespace=namespace, labels=labels
            )
            for p in selected
            for rule in p.get(key, [])
        )

    def pod(self, component: str) -> tuple[dict[str, str], dict[str, str]]:
        return NAMESPACE, self.pods[component]
