"""A local Kubernetes API server for tests and offline use.

``DevCluster`` starts one for a ``with`` block; ``sandboxkit devcluster start`` starts one in
the background. It serves the resources sandboxkit and its notebooks touch with the real
API's wire format, runs pods as local processes, and is not a security boundary. See the
README beside this file for what differs from a real cluster.
"""

from .process import ClusterInfo, DevCluster, DevClusterError

__all__ = ["ClusterInfo", "DevCluster", "DevClusterError"]
