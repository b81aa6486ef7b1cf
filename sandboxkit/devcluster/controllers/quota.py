"""The resource quota controller: keeps ResourceQuota ``status.hard`` and ``status.used``.

Admission decides from live usage, so this controller is only for what users read --
``kubectl describe quota`` and sandboxkit's diagnostics. It recalculates a namespace's
quotas when a quota changes or an object it may count is added, changed or removed.
"""

from __future__ import annotations

from typing import Any

from ..admission import Quantity, namespace_usage
from ..api import Api
from ..errors import ApiError
from ..resources import ResourceType, require
from .base import Controller, controller_user

__all__ = ["ResourceQuotaController"]

RESOURCE_QUOTAS = require("", "v1", "resourcequotas")
USER = controller_user("resourcequota-controller")


class ResourceQuotaController(Controller):
    """Recomputes quota usage per namespace after relevant changes."""

    name = "resourcequota-controller"

    def __init__(self, api: Api) -> None:
        super().__init__(api)
        self._namespaces: set[str] = set()

    def observe(self, event_type: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace", "")
        if rt is RESOURCE_QUOTAS:
            self._namespaces.add(namespace)
            self.queue.add(namespace)
        elif rt.namespaced and namespace in self._namespaces and rt.kind != "Event":
            self.queue.add(namespace)

    def resync(self) -> None:
        for quota in self.api.list(RESOURCE_QUOTAS)[0]:
            self.observe("ADDED", RESOURCE_QUOTAS, quota)

    def reconcile(self, key: Any) -> None:
        quotas = self.api.list(RESOURCE_QUOTAS, key)[0]
        if not quotas:
            self._namespaces.discard(key)
            return
        for quota in quotas:
            hard = {k: str(Quantity.parse(v))
                    for k, v in (quota.get("spec", {}).get("hard") or {}).items()}
            used = {k: str(v) for k, v in namespace_usage(self.api, quota).items()}
            status = {"hard": hard, "used": used}
            if quota.get("status") == status:
                continue
            quota["status"] = status
            try:
                self.api.update(RESOURCE_QUOTAS, quota, subresource="status", user=USER)
            except ApiError as exc:
                if exc.code != 404:
                    raise
