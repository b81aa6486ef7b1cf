"""A local Kubernetes API server for tests and offline use.

``DevCluster`` starts one for a ``with`` block; ``sandboxkit devcluster start`` starts one in
the background. It serves the resources sandboxkit and its notebooks touch with the real
API's wire format and runs pods as unprivileged, confined local processes that still share
the host's network and kernel (so it is not a boundary for hostile code on a shared
machine). See the README beside this file for what pods can do and what differs from a
real cluster.
"""

from .process import ClusterInfo, DevCluster, DevClusterError

__all__ = ["ClusterInfo", "DevCluster", "DevClusterError"]
