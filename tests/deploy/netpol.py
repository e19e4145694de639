"""Which connections a set of NetworkPolicies allows, evaluated the way the Kubernetes API defines it.

A connection needs the source's egress and the destination's ingress to allow it. A pod no policy of
its direction selects is not isolated in that direction. Only the policies of the rendered overlay are
known, so a peer in another namespace is treated as not isolated (its namespace owns those rules).
ipBlock rules match addresses outside the cluster only: the overlays' CIDRs except the private
ranges pods live in, which is how a CNI applies them to the public addresses used here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.deploy.rendered import Manifest, Rendered, named_ports, pod_labels, selector_matches


@dataclass(frozen=True)
class Peer:
    """A pod (namespace, labels, named container ports), or an address outside the cluster."""

    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    ip: str = ""

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def outside(ip: str) -> Peer:
    return Peer(ip=ip)


def pod(manifests: Rendered, workload: Manifest) -> Peer:
    """A pod of this workload as a NetworkPolicy sees it."""
    return Peer(manifests.namespace, pod_labels(workload), named_ports(workload))


def policies(manifests: Rendered) -> Policies:
    return Policies(manifests.namespace, manifests.of_kind("NetworkPolicy"))


@dataclass(frozen=True)
class Policies:
    namespace: str
    policies: Sequence[Manifest]

    def allows(self, source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> bool:
        return self._direction_allows("Egress", source, destination, port, protocol) and (
            self._direction_allows("Ingress", destination, source, port, protocol)
        )

    def admitting_ingress(self, destination: Peer, port: int, protocol: str = "TCP") -> list[str]:
        """Names of the policies with an ingress rule for this pod and port, from whatever source."""
        return [
            policy["metadata"]["name"]
            for policy in self.policies
            if "Ingress" in _policy_types(policy)
            and selector_matches(policy["spec"]["podSelector"], destination.labels)
            and any(
                _ports_match(rule.get("ports"), destination, port, protocol)
                for rule in policy["spec"].get("ingress") or []
            )
        ]

    def _direction_allows(self, direction: str, subject: Peer, other: Peer, port: int, protocol: str) -> bool:
        if subject.ip or subject.namespace != self.namespace:
            return True  # not governed by these policies
        selecting = [
            policy
            for policy in self.policies
            if direction in _policy_types(policy)
            and selector_matches(policy["spec"]["podSelector"], subject.labels)
        ]
        if not selecting:
            return True
        destination = other if direction == "Egress" else subject
        rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        return any(
            _peers_match(rule.get(peers_key), other, self.namespace)
            and _ports_match(rule.get("ports"), destination, port, protocol)
            for policy in selecting
            for rule in policy["spec"].get(rules_key) or []
        )


def _policy_types(policy: Manifest) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


def _peers_match(peers: list[dict[str, Any]] | None, peer: Peer, policy_namespace: str) -> bool:
    if not peers:
        return True  # an absent or empty list admits every peer
    return any(_peer_matches(entry, peer, policy_namespace) for entry in peers)


def _peer_matches(entry: dict[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in entry:
        if not peer.ip:
            return False
        address = ipaddress.ip_address(peer.ip)
        block = entry["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(excluded) for excluded in block.get("except", [])
        )
    if peer.ip:
        return False
    if "namespaceSelector" in entry:
        if not selector_matches(entry["namespaceSelector"], peer.namespace_labels):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return "podSelector" not in entry or selector_matches(entry["podSelector"], peer.labels)


def _ports_match(ports: list[dict[str, Any]] | None, destination: Peer, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if "endPort" in entry:
            raise AssertionError("endPort is not modelled")
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            # A named port is the destination pod's container port of that name.
            if destination.ports.get(wanted) == port:
                return True
        elif wanted == port:
            return True
    return False
