"""Request bodies in Kubernetes protobuf (``application/vnd.kubernetes.protobuf``), as dicts.

client-go's typed clients encode request bodies as protobuf whenever the server's discovery
does not rule it out, and they do not retry with JSON on ``415``. kubectl uses typed
clients for ``auth can-i`` (SelfSubjectAccessReview, SelfSubjectRulesReview), ``create
token`` (TokenRequest) and every ``kubectl create <kind>`` generator, so the devcluster must
read protobuf to serve them. Responses stay JSON: those clients also accept it.

The rest of the server works on the JSON form of objects, so :func:`decode` produces exactly
that: JSON field names, ``Quantity`` as its string, ``Time`` as RFC 3339, ``IntOrString`` as
an int or a string, ``[]byte`` as base64, maps as dicts and no key for a field the sender
left unset.

The wire format is the 4-byte magic ``k8s\\x00`` followed by a ``runtime.Unknown``
envelope carrying apiVersion/kind and the object's own protobuf (``raw``). Objects are
decoded with :data:`_SCHEMAS`, a table of the messages the devcluster's kinds need, written
in a small notation (see :func:`_parse_schema`). Field numbers follow ``generated.proto`` of
k8s.io/api and k8s.io/apimachinery v0.32. Unknown field numbers are skipped, as protobuf
readers must, so newer clients still decode.

Why scalars need a "pointer" mark: gogo-protobuf (Kubernetes' generator) writes every
non-pointer Go field, even at its zero value, and writes a pointer field only when it is
set. A zero of a non-pointer field therefore means "unset" and is dropped (JSON would omit
it too), while a zero of a pointer field (``replicas: 0``, ``suspend: false``,
``gracePeriodSeconds: 0``) was chosen by the client and is kept.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import errors, resources

__all__ = ["CONTENT_TYPE", "MAGIC", "decode", "known_kinds"]

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# Wire types.
_VARINT, _FIXED64, _BYTES, _START_GROUP, _END_GROUP, _FIXED32 = 0, 1, 2, 3, 4, 5
_UINT64 = (1 << 64) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The scheme the API server names when a kind is not registered in it.
_SCHEME = "pkg/api/legacyscheme/scheme.go:30"

# Message schemas: ``jsonName=number:type`` separated by spaces.
#   type   s string, b bool, i int32/int64, y bytes (base64), q Quantity, t Time,
#          m MicroTime, n IntOrString, l ExtraValue (a list of strings), f FieldsV1 (raw JSON),
#          or a message name from this table;
#   [type] repeated, {type} map with string keys;
#   ?      a pointer in Go: its zero value is kept (see the module docstring);
#   *=     an embedded Go struct whose fields JSON shows inline.
# Status fields are left out: clients never send them on create, and the devcluster
# computes statuses itself.
_SCHEMAS: dict[str, str] = {
    # -- k8s.io/apimachinery meta/v1 -----------------------------------------------------
    "ObjectMeta": "name=1:s generateName=2:s namespace=3:s selfLink=4:s uid=5:s "
                  "resourceVersion=6:s generation=7:i creationTimestamp=8:t "
                  "deletionTimestamp=9:t deletionGracePeriodSeconds=10:i? labels=11:{s} "
                  "annotations=12:{s} ownerReferences=13:[OwnerReference] finalizers=14:[s] "
                  "managedFields=17:[ManagedFieldsEntry]",
    "OwnerReference": "kind=1:s name=3:s uid=4:s apiVersion=5:s controller=6:b? "
                      "blockOwnerDeletion=7:b?",
    "ManagedFieldsEntry": "manager=1:s operation=2:s apiVersion=3:s time=4:t fieldsType=6:s "
                          "fieldsV1=7:f subresource=8:s",
    "LabelSelector": "matchLabels=1:{s} matchExpressions=2:[LabelSelectorRequirement]",
    "LabelSelectorRequirement": "key=1:s operator=2:s values=3:[s]",
    "FieldSelectorRequirement": "key=1:s operator=2:s values=3:[s]",
    "DeleteOptions": "gracePeriodSeconds=1:i? preconditions=2:Preconditions "
                     "orphanDependents=3:b? propagationPolicy=4:s? dryRun=5:[s] "
                     "ignoreStoreReadErrorWithClusterBreakingPotential=6:b?",
    "Preconditions": "uid=1:s? resourceVersion=2:s?",
    # -- authorization.k8s.io/v1 ---------------------------------------------------------
    "SubjectAccessReview": "metadata=1:ObjectMeta spec=2:SubjectAccessReviewSpec",
    "LocalSubjectAccessReview": "metadata=1:ObjectMeta spec=2:SubjectAccessReviewSpec",
    "SelfSubjectAccessReview": "metadata=1:ObjectMeta spec=2:SelfSubjectAccessReviewSpec",
    "SelfSubjectRulesReview": "metadata=1:ObjectMeta spec=2:SelfSubjectRulesReviewSpec",
    "SubjectAccessReviewSpec": "resourceAttributes=1:ResourceAttributes "
                               "nonResourceAttributes=2:NonResourceAttributes user=3:s "
                               "groups=4:[s] extra=5:{l} uid=6:s",
    "SelfSubjectAccessReviewSpec": "resourceAttributes=1:ResourceAttributes "
                                   "nonResourceAttributes=2:NonResourceAttributes",
    "SelfSubjectRulesReviewSpec": "namespace=1:s",
    "ResourceAttributes": "namespace=1:s verb=2:s group=3:s version=4:s resource=5:s "
                          "subresource=6:s name=7:s fieldSelector=8:FieldSelectorAttributes "
                          "labelSelector=9:LabelSelectorAttributes",
    "FieldSelectorAttributes": "rawSelector=1:s requirements=2:[FieldSelectorRequirement]",
    "LabelSelectorAttributes": "rawSelector=1:s requirements=2:[LabelSelectorRequirement]",
    "NonResourceAttributes": "path=1:s verb=2:s",
    # -- authentication.k8s.io/v1 --------------------------------------------------------
    "TokenRequest": "metadata=1:ObjectMeta spec=2:TokenRequestSpec",
    "TokenRequestSpec": "audiences=1:[s] boundObjectRef=3:BoundObjectReference "
                        "expirationSeconds=4:i?",
    "BoundObjectReference": "kind=1:s apiVersion=2:s name=3:s uid=4:s",
    "SelfSubjectReview": "metadata=1:ObjectMeta",
    # -- rbac.authorization.k8s.io/v1 ----------------------------------------------------
    "Role": "metadata=1:ObjectMeta rules=2:[PolicyRule]",
    "ClusterRole": "metadata=1:ObjectMeta rules=2:[PolicyRule] aggregationRule=3:AggregationRule",
    "PolicyRule": "verbs=1:[s] apiGroups=2:[s] resources=3:[s] resourceNames=4:[s] "
                  "nonResourceURLs=5:[s]",
    "AggregationRule": "clusterRoleSelectors=1:[LabelSelector]",
    "RoleBinding": "metadata=1:ObjectMeta subjects=2:[Subject] roleRef=3:RoleRef",
    "ClusterRoleBinding": "metadata=1:ObjectMeta subjects=2:[Subject] roleRef=3:RoleRef",
    "Subject": "kind=1:s apiGroup=2:s name=3:s namespace=4:s",
    "RoleRef": "apiGroup=1:s kind=2:s name=3:s",
    # -- core/v1 objects -----------------------------------------------------------------
    "Namespace": "metadata=1:ObjectMeta spec=2:NamespaceSpec",
    "NamespaceSpec": "finalizers=1:[s]",
    "ConfigMap": "metadata=1:ObjectMeta data=2:{s} binaryData=3:{y} immutable=4:b?",
    "Secret": "metadata=1:ObjectMeta data=2:{y} type=3:s stringData=4:{s} immutable=5:b?",
    "ServiceAccount": "metadata=1:ObjectMeta secrets=2:[ObjectReference] "
                      "imagePullSecrets=3:[LocalObjectReference] "
                      "automountServiceAccountToken=4:b?",
    "ResourceQuota": "metadata=1:ObjectMeta spec=2:ResourceQuotaSpec",
    "ResourceQuotaSpec": "hard=1:{q} scopes=2:[s] scopeSelector=3:ScopeSelector",
    "ScopeSelector": "matchExpressions=1:[ScopedResourceSelectorRequirement]",
    "ScopedResourceSelectorRequirement": "scopeName=1:s operator=2:s values=3:[s]",
    "LimitRange": "metadata=1:ObjectMeta spec=2:LimitRangeSpec",
    "LimitRangeSpec": "limits=1:[LimitRangeItem]",
    "LimitRangeItem": "type=1:s max=2:{q} min=3:{q} default=4:{q} defaultRequest=5:{q} "
                      "maxLimitRequestRatio=6:{q}",
    "PersistentVolumeClaim": "metadata=1:ObjectMeta spec=2:PersistentVolumeClaimSpec",
    "PersistentVolumeClaimSpec": "accessModes=1:[s] resources=2:VolumeResourceRequirements "
                                 "volumeName=3:s selector=4:LabelSelector storageClassName=5:s? "
                                 "volumeMode=6:s? dataSource=7:TypedLocalObjectReference "
                                 "dataSourceRef=8:TypedObjectReference "
                                 "volumeAttributesClassName=9:s?",
    "VolumeResourceRequirements": "limits=1:{q} requests=2:{q}",
    "TypedLocalObjectReference": "apiGroup=1:s? kind=2:s name=3:s",
    "TypedObjectReference": "apiGroup=1:s? kind=2:s name=3:s namespace=4:s?",
    "Service": "metadata=1:ObjectMeta spec=2:ServiceSpec",
    "ServiceSpec": "ports=1:[ServicePort] selector=2:{s} clusterIP=3:s type=4:s "
                   "externalIPs=5:[s] sessionAffinity=7:s loadBalancerIP=8:s "
                   "loadBalancerSourceRanges=9:[s] externalName=10:s externalTrafficPolicy=11:s "
                   "healthCheckNodePort=12:i publishNotReadyAddresses=13:b "
                   "sessionAffinityConfig=14:SessionAffinityConfig ipFamilyPolicy=17:s? "
                   "clusterIPs=18:[s] ipFamilies=19:[s] allocateLoadBalancerNodePorts=20:b? "
                   "loadBalancerClass=21:s? internalTrafficPolicy=22:s? "
                   "trafficDistribution=23:s?",
    "ServicePort": "name=1:s protocol=2:s port=3:i targetPort=4:n nodePort=5:i appProtocol=6:s?",
    "SessionAffinityConfig": "clientIP=1:ClientIPConfig",
    "ClientIPConfig": "timeoutSeconds=1:i?",
    "Event": "metadata=1:ObjectMeta involvedObject=2:ObjectReference reason=3:s message=4:s "
             "source=5:EventSource firstTimestamp=6:t lastTimestamp=7:t count=8:i type=9:s "
             "eventTime=10:m series=11:EventSeries action=12:s related=13:ObjectReference "
             "reportingComponent=14:s reportingInstance=15:s",
    "EventSource": "component=1:s host=2:s",
    "EventSeries": "count=1:i lastObservedTime=2:m",
    "Binding": "metadata=1:ObjectMeta target=2:ObjectReference",
    "ObjectReference": "kind=1:s namespace=2:s name=3:s uid=4:s apiVersion=5:s "
                       "resourceVersion=6:s fieldPath=7:s",
    "LocalObjectReference": "name=1:s",
    # -- pods ----------------------------------------------------------------------------
    "Pod": "metadata=1:ObjectMeta spec=2:PodSpec",
    "PodTemplateSpec": "metadata=1:ObjectMeta spec=2:PodSpec",
    "PodSpec": "volumes=1:[Volume] containers=2:[Container] restartPolicy=3:s "
               "terminationGracePeriodSeconds=4:i? activeDeadlineSeconds=5:i? dnsPolicy=6:s "
               "nodeSelector=7:{s} serviceAccountName=8:s serviceAccount=9:s nodeName=10:s "
               "hostNetwork=11:b hostPID=12:b hostIPC=13:b securityContext=14:PodSecurityContext "
               "imagePullSecrets=15:[LocalObjectReference] hostname=16:s subdomain=17:s "
               "affinity=18:Affinity schedulerName=19:s initContainers=20:[Container] "
               "automountServiceAccountToken=21:b? tolerations=22:[Toleration] "
               "hostAliases=23:[HostAlias] priorityClassName=24:s priority=25:i? "
               "dnsConfig=26:PodDNSConfig shareProcessNamespace=27:b? "
               "readinessGates=28:[PodReadinessGate] runtimeClassName=29:s? "
               "enableServiceLinks=30:b? preemptionPolicy=31:s? overhead=32:{q} "
               "topologySpreadConstraints=33:[TopologySpreadConstraint] "
               "ephemeralContainers=34:[EphemeralContainer] setHostnameAsFQDN=35:b? os=36:PodOS "
               "hostUsers=37:b? schedulingGates=38:[PodSchedulingGate] "
               "resourceClaims=39:[PodResourceClaim] resources=40:ResourceRequirements",
    "Container": "name=1:s image=2:s command=3:[s] args=4:[s] workingDir=5:s "
                 "ports=6:[ContainerPort] env=7:[EnvVar] resources=8:ResourceRequirements "
                 "volumeMounts=9:[VolumeMount] livenessProbe=10:Probe readinessProbe=11:Probe "
                 "lifecycle=12:Lifecycle terminationMessagePath=13:s imagePullPolicy=14:s "
                 "securityContext=15:SecurityContext stdin=16:b stdinOnce=17:b tty=18:b "
                 "envFrom=19:[EnvFromSource] terminationMessagePolicy=20:s "
                 "volumeDevices=21:[VolumeDevice] startupProbe=22:Probe "
                 "resizePolicy=23:[ContainerResizePolicy] restartPolicy=24:s?",
    # EphemeralContainerCommon has Container's field numbers, so Container stands in for it.
    "EphemeralContainer": "*=1:Container targetContainerName=2:s",
    "ContainerPort": "name=1:s hostPort=2:i containerPort=3:i protocol=4:s hostIP=5:s",
    "EnvVar": "name=1:s value=2:s valueFrom=3:EnvVarSource",
    "EnvVarSource": "fieldRef=1:ObjectFieldSelector resourceFieldRef=2:ResourceFieldSelector "
                    "configMapKeyRef=3:ConfigMapKeySelector secretKeyRef=4:SecretKeySelector",
    "ObjectFieldSelector": "apiVersion=1:s fieldPath=2:s",
    "ResourceFieldSelector": "containerName=1:s resource=2:s divisor=3:q",
    "ConfigMapKeySelector": "*=1:LocalObjectReference key=2:s optional=3:b?",
    "SecretKeySelector": "*=1:LocalObjectReference key=2:s optional=3:b?",
    "EnvFromSource": "prefix=1:s configMapRef=2:ConfigMapEnvSource secretRef=3:SecretEnvSource",
    "ConfigMapEnvSource": "*=1:LocalObjectReference optional=2:b?",
    "SecretEnvSource": "*=1:LocalObjectReference optional=2:b?",
    "ResourceRequirements": "limits=1:{q} requests=2:{q} claims=3:[ResourceClaim]",
    "ResourceClaim": "name=1:s request=2:s",
    "ContainerResizePolicy": "resourceName=1:s restartPolicy=2:s",
    "VolumeMount": "name=1:s readOnly=2:b mountPath=3:s subPath=4:s mountPropagation=5:s? "
                   "subPathExpr=6:s recursiveReadOnly=7:s?",
    "VolumeDevice": "name=1:s devicePath=2:s",
    "Probe": "*=1:ProbeHandler initialDelaySeconds=2:i timeoutSeconds=3:i periodSeconds=4:i "
             "successThreshold=5:i failureThreshold=6:i terminationGracePeriodSeconds=7:i?",
    "ProbeHandler": "exec=1:ExecAction httpGet=2:HTTPGetAction tcpSocket=3:TCPSocketAction "
                    "grpc=4:GRPCAction",
    "Lifecycle": "postStart=1:LifecycleHandler preStop=2:LifecycleHandler",
    "LifecycleHandler": "exec=1:ExecAction httpGet=2:HTTPGetAction tcpSocket=3:TCPSocketAction "
                        "sleep=4:SleepAction",
    "ExecAction": "command=1:[s]",
    "HTTPGetAction": "path=1:s port=2:n host=3:s scheme=4:s httpHeaders=5:[HTTPHeader]",
    "HTTPHeader": "name=1:s value=2:s",
    "TCPSocketAction": "port=1:n host=2:s",
    "GRPCAction": "port=1:i service=2:s?",
    "SleepAction": "seconds=1:i",
    "SecurityContext": "capabilities=1:Capabilities privileged=2:b? "
                       "seLinuxOptions=3:SELinuxOptions runAsUser=4:i? runAsNonRoot=5:b? "
                       "readOnlyRootFilesystem=6:b? allowPrivilegeEscalation=7:b? runAsGroup=8:i? "
                       "procMount=9:s? windowsOptions=10:WindowsSecurityContextOptions "
                       "seccompProfile=11:SeccompProfile appArmorProfile=12:AppArmorProfile",
    "PodSecurityContext": "seLinuxOptions=1:SELinuxOptions runAsUser=2:i? runAsNonRoot=3:b? "
                          "supplementalGroups=4:[i] fsGroup=5:i? runAsGroup=6:i? "
                          "sysctls=7:[Sysctl] windowsOptions=8:WindowsSecurityContextOptions "
                          "fsGroupChangePolicy=9:s? seccompProfile=10:SeccompProfile "
                          "appArmorProfile=11:AppArmorProfile supplementalGroupsPolicy=12:s? "
                          "seLinuxChangePolicy=13:s?",
    "Capabilities": "add=1:[s] drop=2:[s]",
    "SELinuxOptions": "user=1:s role=2:s type=3:s level=4:s",
    "WindowsSecurityContextOptions": "gmsaCredentialSpecName=1:s? gmsaCredentialSpec=2:s? "
                                     "runAsUserName=3:s? hostProcess=4:b?",
    "SeccompProfile": "type=1:s localhostProfile=2:s?",
    "AppArmorProfile": "type=1:s localhostProfile=2:s?",
    "Sysctl": "name=1:s value=2:s",
    "Toleration": "key=1:s operator=2:s value=3:s effect=4:s tolerationSeconds=5:i?",
    "HostAlias": "ip=1:s hostnames=2:[s]",
    "PodDNSConfig": "nameservers=1:[s] searches=2:[s] options=3:[PodDNSConfigOption]",
    "PodDNSConfigOption": "name=1:s value=2:s?",
    "PodReadinessGate": "conditionType=1:s",
    "PodOS": "name=1:s",
    "PodSchedulingGate": "name=1:s",
    "PodResourceClaim": "name=1:s resourceClaimName=3:s? resourceClaimTemplateName=4:s?",
    "Affinity": "nodeAffinity=1:NodeAffinity podAffinity=2:PodAffinity "
                "podAntiAffinity=3:PodAntiAffinity",
    "NodeAffinity": "requiredDuringSchedulingIgnoredDuringExecution=1:NodeSelector "
                    "preferredDuringSchedulingIgnoredDuringExecution=2:[PreferredSchedulingTerm]",
    "NodeSelector": "nodeSelectorTerms=1:[NodeSelectorTerm]",
    "NodeSelectorTerm": "matchExpressions=1:[NodeSelectorRequirement] "
                        "matchFields=2:[NodeSelectorRequirement]",
    "NodeSelectorRequirement": "key=1:s operator=2:s values=3:[s]",
    "PreferredSchedulingTerm": "weight=1:i preference=2:NodeSelectorTerm",
    "PodAffinity": "requiredDuringSchedulingIgnoredDuringExecution=1:[PodAffinityTerm] "
                   "preferredDuringSchedulingIgnoredDuringExecution=2:[WeightedPodAffinityTerm]",
    "PodAntiAffinity": "requiredDuringSchedulingIgnoredDuringExecution=1:[PodAffinityTerm] "
                       "preferredDuringSchedulingIgnoredDuringExecution="
                       "2:[WeightedPodAffinityTerm]",
    "PodAffinityTerm": "labelSelector=1:LabelSelector namespaces=2:[s] topologyKey=3:s "
                       "namespaceSelector=4:LabelSelector matchLabelKeys=5:[s] "
                       "mismatchLabelKeys=6:[s]",
    "WeightedPodAffinityTerm": "weight=1:i podAffinityTerm=2:PodAffinityTerm",
    "TopologySpreadConstraint": "maxSkew=1:i topologyKey=2:s whenUnsatisfiable=3:s "
                                "labelSelector=4:LabelSelector minDomains=5:i? "
                                "nodeAffinityPolicy=6:s? nodeTaintsPolicy=7:s? "
                                "matchLabelKeys=8:[s]",
    # -- volumes (the cloud and legacy in-tree sources are left out) ----------------------
    "Volume": "name=1:s *=2:VolumeSource",
    "VolumeSource": "hostPath=1:HostPathVolumeSource emptyDir=2:EmptyDirVolumeSource "
                    "secret=6:SecretVolumeSource nfs=7:NFSVolumeSource "
                    "persistentVolumeClaim=10:PersistentVolumeClaimVolumeSource "
                    "downwardAPI=16:DownwardAPIVolumeSource configMap=19:ConfigMapVolumeSource "
                    "projected=26:ProjectedVolumeSource csi=28:CSIVolumeSource "
                    "ephemeral=29:EphemeralVolumeSource image=30:ImageVolumeSource",
    "HostPathVolumeSource": "path=1:s type=2:s?",
    "EmptyDirVolumeSource": "medium=1:s sizeLimit=2:q",
    "SecretVolumeSource": "secretName=1:s items=2:[KeyToPath] defaultMode=3:i? optional=4:b?",
    "NFSVolumeSource": "server=1:s path=2:s readOnly=3:b",
    "PersistentVolumeClaimVolumeSource": "claimName=1:s readOnly=2:b",
    "DownwardAPIVolumeSource": "items=1:[DownwardAPIVolumeFile] defaultMode=2:i?",
    "DownwardAPIVolumeFile": "path=1:s fieldRef=2:ObjectFieldSelector "
                             "resourceFieldRef=3:ResourceFieldSelector mode=4:i?",
    "ConfigMapVolumeSource": "*=1:LocalObjectReference items=2:[KeyToPath] defaultMode=3:i? "
                             "optional=4:b?",
    "KeyToPath": "key=1:s path=2:s mode=3:i?",
    "ProjectedVolumeSource": "sources=1:[VolumeProjection] defaultMode=2:i?",
    "VolumeProjection": "secret=1:SecretProjection downwardAPI=2:DownwardAPIProjection "
                        "configMap=3:ConfigMapProjection "
                        "serviceAccountToken=4:ServiceAccountTokenProjection "
                        "clusterTrustBundle=5:ClusterTrustBundleProjection",
    "SecretProjection": "*=1:LocalObjectReference items=2:[KeyToPath] optional=4:b?",
    "ConfigMapProjection": "*=1:LocalObjectReference items=2:[KeyToPath] optional=4:b?",
    "DownwardAPIProjection": "items=1:[DownwardAPIVolumeFile]",
    "ServiceAccountTokenProjection": "audience=1:s expirationSeconds=2:i? path=3:s",
    "ClusterTrustBundleProjection": "name=1:s? signerName=2:s? labelSelector=3:LabelSelector "
                                    "path=4:s optional=5:b?",
    "CSIVolumeSource": "driver=1:s readOnly=2:b? fsType=3:s? volumeAttributes=4:{s} "
                       "nodePublishSecretRef=5:LocalObjectReference",
    "EphemeralVolumeSource": "volumeClaimTemplate=1:PersistentVolumeClaimTemplate",
    "PersistentVolumeClaimTemplate": "metadata=1:ObjectMeta spec=2:PersistentVolumeClaimSpec",
    "ImageVolumeSource": "reference=1:s pullPolicy=2:s",
    # -- batch/v1 ------------------------------------------------------------------------
    "Job": "metadata=1:ObjectMeta spec=2:JobSpec",
    "JobSpec": "parallelism=1:i? completions=2:i? activeDeadlineSeconds=3:i? "
               "selector=4:LabelSelector manualSelector=5:b? template=6:PodTemplateSpec "
               "backoffLimit=7:i? ttlSecondsAfterFinished=8:i? completionMode=9:s? "
               "suspend=10:b? podFailurePolicy=11:PodFailurePolicy backoffLimitPerIndex=12:i? "
               "maxFailedIndexes=13:i? podReplacementPolicy=14:s? managedBy=15:s? "
               "successPolicy=16:SuccessPolicy",
    "PodFailurePolicy": "rules=1:[PodFailurePolicyRule]",
    "PodFailurePolicyRule": "action=1:s onExitCodes=2:PodFailurePolicyOnExitCodesRequirement "
                            "onPodConditions=3:[PodFailurePolicyOnPodConditionsPattern]",
    "PodFailurePolicyOnExitCodesRequirement": "containerName=1:s? operator=2:s values=3:[i]",
    "PodFailurePolicyOnPodConditionsPattern": "type=1:s status=2:s",
    "SuccessPolicy": "rules=1:[SuccessPolicyRule]",
    "SuccessPolicyRule": "succeededIndexes=1:s? succeededCount=2:i?",
    # -- apps/v1, autoscaling/v1, policy/v1, networking.k8s.io/v1 -------------------------
    "Deployment": "metadata=1:ObjectMeta spec=2:DeploymentSpec",
    "DeploymentSpec": "replicas=1:i? selector=2:LabelSelector template=3:PodTemplateSpec "
                      "strategy=4:DeploymentStrategy minReadySeconds=5:i "
                      "revisionHistoryLimit=6:i? paused=7:b progressDeadlineSeconds=9:i?",
    "DeploymentStrategy": "type=1:s rollingUpdate=2:RollingUpdateDeployment",
    "RollingUpdateDeployment": "maxUnavailable=1:n maxSurge=2:n",
    "Scale": "metadata=1:ObjectMeta spec=2:ScaleSpec",
    "ScaleSpec": "replicas=1:i",
    "PodDisruptionBudget": "metadata=1:ObjectMeta spec=2:PodDisruptionBudgetSpec",
    "PodDisruptionBudgetSpec": "minAvailable=1:n selector=2:LabelSelector maxUnavailable=3:n "
                               "unhealthyPodEvictionPolicy=4:s?",
    "NetworkPolicy": "metadata=1:ObjectMeta spec=2:NetworkPolicySpec",
    "NetworkPolicySpec": "podSelector=1:LabelSelector ingress=2:[NetworkPolicyIngressRule] "
                         "egress=3:[NetworkPolicyEgressRule] policyTypes=4:[s]",
    "NetworkPolicyIngressRule": "ports=1:[NetworkPolicyPort] from=2:[NetworkPolicyPeer]",
    "NetworkPolicyEgressRule": "ports=1:[NetworkPolicyPort] to=2:[NetworkPolicyPeer]",
    "NetworkPolicyPort": "protocol=1:s? port=2:n endPort=3:i?",
    "NetworkPolicyPeer": "podSelector=1:LabelSelector namespaceSelector=2:LabelSelector "
                         "ipBlock=3:IPBlock",
    "IPBlock": "cidr=1:s except=2:[s]",
}

# The kinds decoded at the top level, by apiVersion. DeleteOptions is accepted under any
# apiVersion because client-go sends it in the group version of the resource it deletes.
_KINDS: dict[str, str] = {
    "v1": "Namespace Pod Event ServiceAccount ConfigMap Secret ResourceQuota LimitRange "
          "PersistentVolumeClaim Service Binding",
    "batch/v1": "Job",
    "apps/v1": "Deployment",
    "autoscaling/v1": "Scale",
    "policy/v1": "PodDisruptionBudget",
    "networking.k8s.io/v1": "NetworkPolicy",
    "rbac.authorization.k8s.io/v1": "Role RoleBinding ClusterRole ClusterRoleBinding",
    "authorization.k8s.io/v1": "SelfSubjectAccessReview SubjectAccessReview "
                               "LocalSubjectAccessReview SelfSubjectRulesReview",
    "authentication.k8s.io/v1": "TokenRequest SelfSubjectReview",
}
_ANY_VERSION = frozenset({"DeleteOptions"})
_SCALARS = frozenset("sbiyqtmnlf")
_VARINT_TYPES = frozenset("bi")
# Plain Go strings, bools and ints; Quantity and IntOrString are structs that JSON always
# prints, so their zero ("0", 0) stays.
_ZERO_IS_UNSET = frozenset("sbi")


@dataclass(frozen=True)
class _Field:
    """One field of a message: where it goes in the dict and how its bytes read."""

    name: str  # JSON name; "" for an embedded struct merged into its parent
    type: str  # a scalar code or a message name
    shape: str  # "" single, "[" repeated, "{" map
    pointer: bool  # keep zero values (see the module docstring)


_FIELD = re.compile(r"(\*|\w+)=(\d+):([\[{]?)(\w+)[\]}]?(\??)$")


def _parse_schema(spec: str) -> dict[int, _Field]:
    """``name=1:s labels=11:{s} *=2:VolumeSource`` -> {field number: _Field}."""
    fields: dict[int, _Field] = {}
    for item in spec.split():
        match = _FIELD.match(item)
        if match is None:
            raise ValueError(f"bad schema entry {item!r}")
        name, number, shape, type_, pointer = match.groups()
        fields[int(number)] = _Field("" if name == "*" else name, type_, shape, bool(pointer))
    return fields


_MESSAGES: dict[str, dict[int, _Field]] = {
    name: _parse_schema(spec) for name, spec in _SCHEMAS.items()
}
_ROOTS: dict[tuple[str, str], str] = {
    (api_version, kind): kind for api_version, kinds in _KINDS.items() for kind in kinds.split()
}


def known_kinds() -> list[tuple[str, str]]:
    """(apiVersion, kind) pairs :func:`decode` reads, for tests and diagnostics."""
    return sorted(_ROOTS)


class _Malformed(ValueError):
    """Bytes that are not valid protobuf; the message is gogo-protobuf's wording."""


# -- wire format ----------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if shift >= 64:
            raise _Malformed("proto: integer overflow")
        if pos >= len(buf):
            raise _Malformed("unexpected EOF")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _UINT64, pos
        shift += 7


def _skip_group(buf: bytes, pos: int) -> int:
    """Position after the END_GROUP closing a group (groups are legacy but legal).

    Iterative, so a body of nested START_GROUPs cannot exhaust the Python stack.
    """
    depth = 1
    while depth:
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == _START_GROUP:
            depth += 1
        elif wire == _END_GROUP:
            depth -= 1
        else:
            _, pos = _read_value(buf, pos, wire)
    return pos


def _read_value(buf: bytes, pos: int, wire: int) -> tuple[int | bytes, int]:
    if wire == _VARINT:
        return _varint(buf, pos)
    if wire == _BYTES:
        length, pos = _varint(buf, pos)
        if length >= 1 << 63:
            raise _Malformed("proto: negative length found during unmarshaling")
        if pos + length > len(buf):
            raise _Malformed("unexpected EOF")
        return buf[pos:pos + length], pos + length
    if wire in (_FIXED64, _FIXED32):
        size = 8 if wire == _FIXED64 else 4
        if pos + size > len(buf):
            raise _Malformed("unexpected EOF")
        return int.from_bytes(buf[pos:pos + size], "little"), pos + size
    if wire == _START_GROUP:
        return 0, _skip_group(buf, pos)
    raise _Malformed(f"proto: illegal wireType {wire}")


def _fields(buf: bytes, message: str) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one encoded message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _END_GROUP:
            raise _Malformed(f"proto: {message}: wiretype end group for non-group")
        if number <= 0:
            raise _Malformed(f"proto: {message}: illegal tag {number} (wire type {wire})")
        value, pos = _read_value(buf, pos, wire)
        yield number, wire, value


# -- values ---------------------------------------------------------------------------------
def _signed(value: int) -> int:
    """int32 and int64 both travel as 64-bit two's complement varints."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(raw: bytes) -> str:
    # Go's encoding/json writes invalid UTF-8 as U+FFFD, so the JSON form would too.
    return raw.decode("utf-8", "replace")


def _time(raw: bytes, micro: bool) -> str | None:
    """RFC 3339 as metav1.Time/MicroTime print it; None for the zero time (JSON ``null``)."""
    if not raw:
        return None
    seconds = nanos = 0
    for number, _, value in _fields(raw, "Timestamp"):
        if isinstance(value, int):
            if number == 1:
                seconds = _signed(value)
            elif number == 2:
                nanos = _signed(value)
    try:
        when = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise _Malformed(f"proto: timestamp out of range: {seconds}") from None
    if micro:
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}Z"
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_string(raw: bytes, message: str) -> str:
    text = ""
    for number, _, value in _fields(raw, message):
        if number == 1 and isinstance(value, bytes):
            text = _text(value)
    return text


def _int_or_string(raw: bytes) -> int | str:
    kind = int_val = 0
    str_val = ""
    for number, _, value in _fields(raw, "IntOrString"):
        if number == 1 and isinstance(value, int):
            kind = value
        elif number == 2 and isinstance(value, int):
            int_val = _signed(value)
        elif number == 3 and isinstance(value, bytes):
            str_val = _text(value)
    return str_val if kind == 1 else int_val


def _scalar(type_: str, value: int | bytes) -> Any:
    """The JSON value of one scalar or well-known message field."""
    if isinstance(value, int):
        return bool(value) if type_ == "b" else _signed(value)
    if type_ == "s":
        return _text(value)
    if type_ == "y":
        return base64.b64encode(value).decode("ascii")
    if type_ == "q":
        return _first_string(value, "Quantity") or "0"
    if type_ in "tm":
        return _time(value, micro=type_ == "m")
    if type_ == "n":
        return _int_or_string(value)
    if type_ == "l":
        return [_text(v) for n, _, v in _fields(value, "ExtraValue")
                if n == 1 and isinstance(v, bytes)]
    # "f": FieldsV1 holds its JSON verbatim.
    raw = b"".join(v for n, _, v in _fields(value, "FieldsV1") if n == 1 and isinstance(v, bytes))
    try:
        return json.loads(raw) if raw else {}
    except ValueError as exc:
        raise _Malformed(f"FieldsV1: {exc}") from None


def _value(field: _Field, wire: int, value: int | bytes) -> Any:
    if field.type not in _SCALARS:
        if wire != _BYTES:
            raise _wrong_wire(field, wire)
        assert isinstance(value, bytes)
        return _message(field.type, value)
    if (field.type in _VARINT_TYPES) != (wire == _VARINT):
        raise _wrong_wire(field, wire)
    return _scalar(field.type, value)


def _wrong_wire(field: _Field, wire: int) -> _Malformed:
    name = field.name or field.type
    return _Malformed(f"proto: wrong wireType = {wire} for field {name[:1].upper()}{name[1:]}")


def _is_zero(value: Any) -> bool:
    return value is False or value == 0 or value == ""


def _map_entry(field: _Field, raw: bytes) -> tuple[str, Any]:
    key = ""
    value: Any = None
    entry = _Field(field.name, field.type, "", pointer=True)
    for number, wire, item in _fields(raw, f"{field.name} entry"):
        if number == 1 and isinstance(item, bytes):
            key = _text(item)
        elif number == 2:
            value = _value(entry, wire, item)
    if value is None:
        value = {"s": "", "y": "", "q": "0", "l": []}.get(field.type, {})
    return key, value


def _packed(field: _Field, raw: bytes) -> list[Any]:
    """Repeated varints may arrive packed into one length-delimited field."""
    items: list[Any] = []
    pos = 0
    while pos < len(raw):
        value, pos = _varint(raw, pos)
        items.append(_scalar(field.type, value))
    return items


def _message(name: str, raw: bytes) -> dict[str, Any]:
    schema = _MESSAGES[name]
    out: dict[str, Any] = {}
    for number, wire, value in _fields(raw, name):
        field = schema.get(number)
        if field is None:
            continue  # a field this table does not know: skipped, as protobuf requires
        if field.shape == "{":
            if wire != _BYTES:
                raise _wrong_wire(field, wire)
            assert isinstance(value, bytes)
            key, item = _map_entry(field, value)
            out.setdefault(field.name, {})[key] = item
        elif field.shape == "[":
            items = out.setdefault(field.name, [])
            if field.type in _VARINT_TYPES and wire == _BYTES:
                assert isinstance(value, bytes)
                items.extend(_packed(field, value))
            else:
                items.append(_value(field, wire, value))
        elif not field.name:
            out.update(_value(field, wire, value))
        else:
            decoded = _value(field, wire, value)
            if isinstance(decoded, dict) and isinstance(out.get(field.name), dict):
                out[field.name].update(decoded)  # a repeated message field merges
            elif decoded is None or (not field.pointer and field.type in _ZERO_IS_UNSET
                                     and _is_zero(decoded)):
                out.pop(field.name, None)
            else:
                out[field.name] = decoded
    return out


# -- the envelope ---------------------------------------------------------------------------
def _envelope(data: bytes) -> tuple[str, str, bytes]:
    """apiVersion, kind and raw object bytes of a ``runtime.Unknown``."""
    api_version = kind = ""
    raw = b""
    for number, _, value in _fields(data, "Unknown"):
        if number == 1 and isinstance(value, bytes):
            for sub, _, item in _fields(value, "TypeMeta"):
                if sub == 1 and isinstance(item, bytes):
                    api_version = _text(item)
                elif sub == 2 and isinstance(item, bytes):
                    kind = _text(item)
        elif number == 2 and isinstance(value, bytes):
            raw = value
    return api_version, kind, raw


def _unsupported() -> errors.ApiError:
    return errors.ApiError(
        415, "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml",
    )


def decode(body: bytes) -> dict[str, Any]:
    """The JSON-shaped dict of a Kubernetes protobuf request body.

    Raises :class:`errors.ApiError`: 400 for bytes that are not a protobuf object or for a
    kind Kubernetes does not have, worded as the API server's decoder words them; 415 for a
    kind the devcluster serves but cannot read as protobuf, which tells the caller to send
    JSON as the API server does for endpoints without protobuf support.
    """
    if not body:
        raise errors.bad_request("the object provided is unrecognized: empty data")
    if not body.startswith(MAGIC):
        raise errors.bad_request(
            "the object provided is unrecognized: provided data does not appear to be a "
            f"protobuf message, expected prefix [{' '.join(str(b) for b in MAGIC)}]"
        )
    if len(body) == len(MAGIC):
        raise errors.bad_request("the object provided is unrecognized: empty body")
    try:
        api_version, kind, raw = _envelope(body[len(MAGIC):])
    except _Malformed as exc:
        raise errors.bad_request(f"the object provided is unrecognized: {exc}") from None
    type_meta = f'runtime.TypeMeta{{APIVersion:"{api_version}", Kind:"{kind}"}}'
    if not kind:
        raise errors.bad_request(f"Object 'Kind' is missing in '{type_meta}'")
    if not api_version:
        raise errors.bad_request(f"Object 'apiVersion' is missing in '{type_meta}'")
    version = api_version.rpartition("/")[2]
    message = kind if kind in _ANY_VERSION else _ROOTS.get((api_version, kind))
    if message is None:
        served = resources.lookup_kind(api_version, kind)
        if served is not None and served.api_version == api_version:
            raise _unsupported()
        raise errors.bad_request(
            f'no kind "{kind}" is registered for version "{api_version}" in scheme "{_SCHEME}"'
        )
    try:
        obj = _message(message, raw)
    except _Malformed as exc:
        raise errors.bad_request(
            f'{kind} in version "{version}" cannot be handled as a {kind}: {exc}'
        ) from None
    return {"kind": kind, "apiVersion": api_version, **obj}
