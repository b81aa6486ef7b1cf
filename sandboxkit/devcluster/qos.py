"""A pod's quality-of-service class, computed as ``qos.GetPodQOS`` does.

The API server records it in ``status.qosClass`` when a pod is created; the kubelet reports
it again with every status it writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .quantity import parse_quantity

__all__ = ["qos_class"]


def qos_class(pod: Mapping[str, Any]) -> str:
    """Guaranteed / Burstable / BestEffort, computed as ``qos.GetPodQOS`` does."""
    spec = pod.get("spec", {})
    containers = list(spec.get("containers", [])) + list(spec.get("initContainers", []))
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        requests = {k: v for k, v in (res.get("requests") or {}).items()
                    if k in ("cpu", "memory") and parse_quantity(v) != 0}
        limits = {k: v for k, v in (res.get("limits") or {}).items()
                  if k in ("cpu", "memory") and parse_quantity(v) != 0}
        any_set = any_set or bool(requests) or bool(limits)
        if set(limits) != {"cpu", "memory"}:
            guaranteed = False
        for name, value in requests.items():
            if name not in limits or parse_quantity(limits[name]) != parse_quantity(value):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
