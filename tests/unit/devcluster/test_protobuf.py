"""Kubernetes protobuf request bodies decode to the dict their JSON form would give.

The byte literals below are request bodies kubectl v1.32 sent, captured from its ``-v=9``
hex dumps (against the devcluster unless noted), so the tests pin the decoder to what the
real client puts on the wire rather than to our own reading of generated.proto. Bodies for
shapes kubectl never sends as protobuf (DeleteOptions, Events, malformed input) are built
with the small encoder further down.
"""

from __future__ import annotations

from typing import Any

import pytest

from sandboxkit.devcluster import protobuf
from sandboxkit.devcluster.errors import ApiError
from sandboxkit.devcluster.server import Handler

pytestmark = pytest.mark.unit

# kubectl auth can-i create jobs
SSAR_CREATE_JOBS = (
    b'k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12D\n\x10\n'
    b'\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12&\n$\n\x07default\x12\x06create\x1a'
    b'\x05batch"\x00*\x04jobs2\x00:\x00\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00'
)
# kubectl auth can-i get pods/mypod --subresource=log -n kube-system
SSAR_SUBRESOURCE = (
    b'k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12H\n\x10\n'
    b'\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12*\n(\n\x0bkube-system\x12\x03get\x1a'
    b'\x00"\x00*\x04pods2\x03log:\x05mypod\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"'
    b'\x00'
)
# kubectl auth can-i get /logs
SSAR_NON_RESOURCE = (
    b'k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12,\n\x10\n'
    b'\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x0e\x12\x0c\n\x05/logs\x12\x03get'
    b'\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00'
)
# kubectl auth can-i --list
SSRR = (
    b'k8s\x00\n1\n\x17authorization.k8s.io/v1\x12\x16SelfSubjectRulesReview\x12#\n\x10\n'
    b'\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\t\n\x07default\x1a\x04\x18\x00"\x00'
    b'\x1a\x00"\x00'
)
# kubectl create token default
TOKEN_DEFAULT = (
    b'k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12\x1a\n\x10\n\x00\x12'
    b'\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x00\x1a\x04\n\x00\x12\x00\x1a\x00"\x00'
)
# kubectl create token default --audience=a1 --audience=a2 --duration=1h
#     --bound-object-kind=Pod --bound-object-name=p1 --bound-object-uid=u1
TOKEN_BOUND = (
    b'k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x128\n\x10\n\x00\x12\x00'
    b'\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x1e\n\x02a1\n\x02a2\x1a\x11\n\x03Pod\x12\x02v1'
    b'\x1a\x02p1"\x02u1 \x90\x1c\x1a\x04\n\x00\x12\x00\x1a\x00"\x00'
)
# kubectl create ns x
NAMESPACE = (
    b'k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x19\n\x11\n\x01x\x12\x00\x1a\x00"\x00*\x002'
    b'\x008\x00B\x00\x12\x00\x1a\x02\n\x00\x1a\x00"\x00'
)
# kubectl create configmap c --from-literal=a=b
CONFIGMAP = (
    b'k8s\x00\n\x0f\n\x02v1\x12\tConfigMap\x12\x1b\n\x11\n\x01c\x12\x00\x1a\x00"\x00*\x002'
    b'\x008\x00B\x00\x12\x06\n\x01a\x12\x01b\x1a\x00"\x00'
)
# kubectl create configmap bin --from-file=/tmp/pbcap/b.bin --from-literal=k=v
CONFIGMAP_BINARY = (
    b'k8s\x00\n\x0f\n\x02v1\x12\tConfigMap\x12,\n\x13\n\x03bin\x12\x00\x1a\x00"\x00*\x002'
    b'\x008\x00B\x00\x12\x06\n\x01k\x12\x01v\x1a\r\n\x05b.bin\x12\x04\x00\x01\xfe\xff\x1a'
    b'\x00"\x00'
)
# kubectl create secret generic s --from-literal=a=b
SECRET = (
    b'k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12\x1d\n\x11\n\x01s\x12\x00\x1a\x00"\x00*\x002'
    b'\x008\x00B\x00\x12\x06\n\x01a\x12\x01b\x1a\x00\x1a\x00"\x00'
)
# kubectl create secret docker-registry dr --docker-server=x --docker-username=u --docker-password=p
SECRET_DOCKER = (
    b'k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12\x88\x01\n\x12\n\x02dr\x12\x00\x1a\x00"\x00*'
    b'\x002\x008\x00B\x00\x12R\n\x11.dockerconfigjson\x12={"auths":{"x":{"username":"u","pa'
    b'ssword":"p","auth":"dTpw"}}}\x1a\x1ekubernetes.io/dockerconfigjson\x1a\x00"\x00'
)
# kubectl create sa s
SERVICE_ACCOUNT = (
    b'k8s\x00\n\x14\n\x02v1\x12\x0eServiceAccount\x12\x13\n\x11\n\x01s\x12\x00\x1a\x00"\x00'
    b'*\x002\x008\x00B\x00\x1a\x00"\x00'
)
# kubectl create role r --verb=get --resource=pods
ROLE = (
    b'k8s\x00\n$\n\x1crbac.authorization.k8s.io/v1\x12\x04Role\x12"\n\x11\n\x01r\x12\x00'
    b'\x1a\x00"\x00*\x002\x008\x00B\x00\x12\r\n\x03get\x12\x00\x1a\x04pods\x1a\x00"\x00'
)
# kubectl create rolebinding rb --role=r --serviceaccount=default:s
ROLE_BINDING = (
    b'k8s\x00\n+\n\x1crbac.authorization.k8s.io/v1\x12\x0bRoleBinding\x12Z\n\x12\n\x02rb'
    b'\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x1e\n\x0eServiceAccount\x12\x00\x1a\x01'
    b's"\x07default\x1a$\n\x19rbac.authorization.k8s.io\x12\x04Role\x1a\x01r\x1a\x00"\x00'
)
# kubectl create clusterrole agg --aggregation-rule=rbac.example.com/aggregate-to-monitoring=true
CLUSTER_ROLE_AGGREGATED = (
    b'k8s\x00\n+\n\x1crbac.authorization.k8s.io/v1\x12\x0bClusterRole\x12K\n\x13\n\x03agg'
    b'\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x1a4\n2\n0\n(rbac.example.com/aggregate-to-'
    b'monitoring\x12\x04true\x1a\x00"\x00'
)
# kubectl create clusterrole nr --verb=get --non-resource-url=/logs/* --resource=deployments.apps
#     --resource-name=d1
CLUSTER_ROLE_NON_RESOURCE = (
    b'k8s\x00\n+\n\x1crbac.authorization.k8s.io/v1\x12\x0bClusterRole\x12B\n\x12\n\x02nr'
    b'\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x1c\n\x03get\x12\x04apps\x1a\x0bdeploym'
    b'ents"\x02d1\x12\x0e\n\x03get*\x07/logs/*\x1a\x00"\x00'
)
# kubectl create clusterrolebinding crb --clusterrole=cr --user=u
CLUSTER_ROLE_BINDING = (
    b'k8s\x00\n2\n\x1crbac.authorization.k8s.io/v1\x12\x12ClusterRoleBinding\x12k\n\x13\n'
    b'\x03crb\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12&\n\x04User\x12\x19rbac.authoriza'
    b'tion.k8s.io\x1a\x01u"\x00\x1a,\n\x19rbac.authorization.k8s.io\x12\x0bClusterRole\x1a'
    b'\x02cr\x1a\x00"\x00'
)
# kubectl create quota q --hard=pods=2,requests.cpu=1
QUOTA = (
    b'k8s\x00\n\x13\n\x02v1\x12\rResourceQuota\x129\n\x11\n\x01q\x12\x00\x1a\x00"\x00*\x002'
    b'\x008\x00B\x00\x12"\n\x0b\n\x04pods\x12\x03\n\x012\n\x13\n\x0crequests.cpu\x12\x03\n'
    b'\x011\x1a\x00\x1a\x00"\x00'
)
# kubectl create quota qs --hard=pods=2,limits.memory=1Gi --scopes=BestEffort
QUOTA_SCOPES = (
    b'k8s\x00\n\x13\n\x02v1\x12\rResourceQuota\x12I\n\x12\n\x02qs\x12\x00\x1a\x00"\x00*\x00'
    b'2\x008\x00B\x00\x121\n\x16\n\rlimits.memory\x12\x05\n\x031Gi\n\x0b\n\x04pods\x12\x03'
    b'\n\x012\x12\nBestEffort\x1a\x00\x1a\x00"\x00'
)
# kubectl create job j --image=busybox -- sh -c 'echo hi'
JOB = (
    b'k8s\x00\n\x0f\n\x08batch/v1\x12\x03Job\x12\x89\x01\n\x11\n\x01j\x12\x00\x1a\x00"\x00*'
    b'\x002\x008\x00B\x00\x12j2h\n\x10\n\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12T'
    b'\x121\n\x01j\x12\x07busybox\x1a\x02sh\x1a\x02-c\x1a\x07echo hi*\x00B\x00j\x00r\x00'
    b'\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x05Never2\x00B\x00J\x00R\x00X'
    b'\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x1a\x08 \x00(\x000\x00'
    b':\x00\x1a\x00"\x00'
)
# kubectl create deployment d --image=busybox
DEPLOYMENT = (
    b'k8s\x00\n\x15\n\x07apps/v1\x12\nDeployment\x12\xa7\x01\n\x1b\n\x01d\x12\x00\x1a\x00"'
    b'\x00*\x002\x008\x00B\x00Z\x08\n\x03app\x12\x01d\x12z\x08\x01\x12\n\n\x08\n\x03app\x12'
    b'\x01d\x1ab\n\x1a\n\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00Z\x08\n\x03app\x12\x01'
    b'd\x12D\x12&\n\x07busybox\x12\x07busybox*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00'
    b'\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a'
    b'\x01\x00\x9a\x01\x00\xc2\x01\x00"\x02\n\x00(\x008\x00\x1a\x0c\x08\x00\x10\x00\x18\x00'
    b' \x00(\x008\x00\x1a\x00"\x00'
)
# kubectl create deployment dz --image=busybox --replicas=0 --port=8080
DEPLOYMENT_NO_REPLICAS = (
    b'k8s\x00\n\x15\n\x07apps/v1\x12\nDeployment\x12\xb9\x01\n\x1d\n\x02dz\x12\x00\x1a\x00"'
    b'\x00*\x002\x008\x00B\x00Z\t\n\x03app\x12\x02dz\x12\x89\x01\x08\x00\x12\x0b\n\t\n\x03a'
    b'pp\x12\x02dz\x1ap\n\x1b\n\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00Z\t\n\x03app'
    b'\x12\x02dz\x12Q\x123\n\x07busybox\x12\x07busybox*\x002\x0b\n\x00\x10\x00\x18\x90?"'
    b'\x00*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00'
    b'B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00"\x02\n'
    b'\x00(\x008\x00\x1a\x0c\x08\x00\x10\x00\x18\x00 \x00(\x008\x00\x1a\x00"\x00'
)
# kubectl create service clusterip sv --tcp=80:8080
SERVICE = (
    b'k8s\x00\n\r\n\x02v1\x12\x07Service\x12f\n\x1d\n\x02sv\x12\x00\x1a\x00"\x00*\x002\x008'
    b'\x00B\x00Z\t\n\x03app\x12\x02sv\x12A\n\x1b\n\x0780-8080\x12\x03TCP\x18P"\x07\x08\x00'
    b'\x10\x90?\x1a\x00(\x00\x12\t\n\x03app\x12\x02sv\x1a\x00"\tClusterIP:\x00B\x00R\x00Z'
    b'\x00`\x00h\x00\x1a\x02\n\x00\x1a\x00"\x00'
)
# kubectl create pdb pd --selector=a=b --min-available=1
PDB = (
    b'k8s\x00\n \n\tpolicy/v1\x12\x13PodDisruptionBudget\x124\n\x12\n\x02pd\x12\x00\x1a\x00'
    b'"\x00*\x002\x008\x00B\x00\x12\x12\n\x06\x08\x00\x10\x01\x1a\x00\x12\x08\n\x06\n\x01a'
    b'\x12\x01b\x1a\n\x08\x00\x18\x00 \x00(\x000\x00\x1a\x00"\x00'
)
# A pod created with kubectl create -f from a manifest with env refs, probes, volumes,
# security contexts, tolerations, resources and init containers, then
# kubectl debug rich --copy-to=rich2 --container=dbg --image=busybox -- sleep 1
POD_DEBUG_COPY = (
    b'k8s\x00\n\t\n\x02v1\x12\x03Pod\x12\xea\x08\n+\n\x05rich2\x12\x00\x1a\x07default"\x00*'
    b'\x002\x008\x00B\x00b\r\n\x04note\x12\x05hello\x12\xa8\x08\n\x17\n\x07scratch\x12\x0c'
    b'\x12\n\n\x00\x12\x06\n\x0464Mi\n#\n\x03cfg\x12\x1c\x9a\x01\x19\n\x03\n\x01c\x12\r\n'
    b'\x01a\x12\x05a.txt\x18\x80\x02\x18\xa4\x03 \x01\n\x11\n\x03sec\x12\n2\x08\n\x01s\x18'
    b'\xa4\x03 \x00\n\x12\n\x04data\x12\nR\x08\n\x04pvc1\x10\x01\x12\xfa\x03\n\x04main\x12'
    b'\x07busybox\x1a\x02sh\x1a\x02-c"\x12echo $A && sleep 1*\x04/tmp2\x12\n\x04http\x10'
    b'\x00\x18\x90?"\x03TCP*\x00:\x06\n\x01A\x12\x011:\t\n\x05EMPTY\x12\x00:\x1e\n\x03POD'
    b'\x12\x00\x1a\x15\n\x13\n\x02v1\x12\rmetadata.name:#\n\x03CPU\x12\x00\x1a\x1a\x12\x18'
    b'\n\x04main\x12\nlimits.cpu\x1a\x04\n\x021m:\x14\n\x02CM\x12\x00\x1a\x0c\x1a\n\n\x03\n'
    b'\x01c\x12\x01a\x18\x01:\x13\n\x03SEC\x12\x00\x1a\n"\x08\n\x03\n\x01s\x12\x01aBC\n\r\n'
    b'\x03cpu\x12\x06\n\x04500m\n\x11\n\x06memory\x12\x07\n\x05128Mi\x12\r\n\x03cpu\x12\x06'
    b'\n\x04250m\x12\x10\n\x06memory\x12\x06\n\x0464MiJ\x19\n\x07scratch\x10\x00\x1a\x08/sc'
    b'ratch"\x002\x00J\x16\n\x03cfg\x10\x01\x1a\x04/cfg"\x05a.txt2\x00R\x19\n\r\x1a\x0b\n'
    b'\x07\x08\x00\x10\x90?\x1a\x00\x12\x00\x10\x00\x18\x01 \n(\x010\x03Z,\n \x12\x1e\n\x08'
    b'/healthz\x12\n\x08\x01\x10\x00\x1a\x04http\x1a\x00"\x04HTTP\x10\x00\x18\x01 \x05(\x01'
    b'0\x03j\x14/dev/termination-logr\x0cIfNotPresentz\x1f\n\x17\n\x10NET_BIND_SERVICE\x12'
    b'\x03ALL\x10\x000\x018\x00\x80\x01\x01\x88\x01\x00\x90\x01\x01\x9a\x01\x0b\n\x02P_\x12'
    b'\x05\n\x03\n\x01c\x9a\x01\x0b\n\x00\x1a\x07\n\x03\n\x01s\x10\x01\xa2\x01\x04File\x120'
    b'\n\x03dbg\x12\x07busybox\x1a\x05sleep\x1a\x011*\x00B\x00j\x00r\x00\x80\x01\x00\x88'
    b'\x01\x00\x90\x01\x00\xa2\x01\x04File\x1a\tOnFailure \x00(\xd8\x042\x0cClusterFirst:'
    b'\x19\n\x10kubernetes.io/os\x12\x05linuxB\x07defaultJ\x07defaultR\x00X\x00`\x00h\x00r'
    b'\x0e\x10\xe8\x07\x18\x01 \x05 \x06(\xd0\x0f0\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x11d'
    b'efault-scheduler\xa2\x01O\n\x04init\x12\x07busybox\x1a\x02sh\x1a\x02-c\x1a\x04true*'
    b'\x00B\x00j\x14/dev/termination-logr\x06Always\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2'
    b'\x01\x04File\xa8\x01\x00\xb2\x01\x1a\n\x01k\x12\x05Equal\x1a\x01v"\tNoExecute(\x1e'
    b'\xb2\x01\x0e\n\x00\x12\x06Exists\x1a\x00"\x00\xb2\x016\n\x1cnode.kubernetes.io/not-re'
    b'ady\x12\x06Exists\x1a\x00"\tNoExecute(\xac\x02\xb2\x018\n\x1enode.kubernetes.io/unrea'
    b'chable\x12\x06Exists\x1a\x00"\tNoExecute(\xac\x02\xc2\x01\x00\xc8\x01\x00\xf0\x01\x01'
    b'\xfa\x01\x14PreemptLowerPriority\x1a\x10\n\x00\x1a\x00"\x00*\x002\x00J\x00Z\x00r\x00'
    b'\x1a\x00"\x00'
)
# kubectl debug node/devcluster-node --image=busybox --profile=sysadmin -- true
POD_DEBUG_NODE = (
    b'k8s\x00\n\t\n\x02v1\x12\x03Pod\x12\xf0\x01\n3\n#node-debugger-devcluster-node-97zcw'
    b'\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\xa6\x01\n\x12\n\thost-root\x12\x05\n'
    b'\x03\n\x01/\x12O\n\x08debugger\x12\x07busybox\x1a\x04true*\x00B\x00J\x18\n\thost-root'
    b'\x10\x00\x1a\x05/host"\x002\x00j\x00r\x00z\x02\x10\x01\x80\x01\x00\x88\x01\x00\x90'
    b'\x01\x00\xa2\x01\x04File\x1a\x05Never2\x00B\x00J\x00R\x0fdevcluster-nodeX\x01`\x01h'
    b'\x01\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xb2\x01\x0e\n\x00\x12\x06Exists\x1a\x00"\x00'
    b'\xc2\x01\x00\x1a\x10\n\x00\x1a\x00"\x00*\x002\x00J\x00Z\x00r\x00\x1a\x00"\x00'
)
# kubectl create job fromcj --from=cronjob/cj, against a stub server holding CronJob cj
# (the devcluster does not serve cronjobs); the only fixture with ownerReferences
JOB_FROM_CRONJOB = (
    b'k8s\x00\n\x0f\n\x08batch/v1\x12\x03Job\x12\xa4\x02\n\x96\x01\n\x06fromcj\x12\x00\x1a'
    b'\x07default"\x00*\x002\x008\x00B\x00Z\t\n\x04team\x12\x01ab+\n!cronjob.kubernetes.io/'
    b'instantiate\x12\x06manualj?\n\x07CronJob\x1a\x02cj"$11111111-2222-3333-4444-555555555'
    b'555*\x08batch/v10\x01\x12\x7f\x08\x02\x10\x02\x18\x1e2h\n\x10\n\x00\x12\x00\x1a\x00"'
    b'\x00*\x002\x008\x00B\x00\x12T\x121\n\x01c\x12\x07busybox\x1a\x02sh\x1a\x02-c\x1a\x07e'
    b'cho hi*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x05Nev'
    b'er2\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00'
    b'8\x00@<J\x07IndexedP\x00\x1a\x08 \x00(\x000\x00:\x00\x1a\x00"\x00'
)


# -- bodies kubectl sent, decoded whole -----------------------------------------------------
def _review(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "authorization.k8s.io/v1", "metadata": {}, "spec": spec}


def _rbac(kind: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": name}, **fields}


def _deployment(name: str, replicas: int, container: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [container]}},
                 "strategy": {}},
    }


_RBAC_GROUP = "rbac.authorization.k8s.io"

DECODED: list[tuple[str, bytes, dict[str, Any]]] = [
    ("can-i create jobs", SSAR_CREATE_JOBS, _review("SelfSubjectAccessReview", {
        "resourceAttributes": {"namespace": "default", "verb": "create", "group": "batch",
                               "resource": "jobs"}})),
    ("can-i subresource", SSAR_SUBRESOURCE, _review("SelfSubjectAccessReview", {
        "resourceAttributes": {"namespace": "kube-system", "verb": "get", "resource": "pods",
                               "subresource": "log", "name": "mypod"}})),
    ("can-i non-resource", SSAR_NON_RESOURCE, _review("SelfSubjectAccessReview", {
        "nonResourceAttributes": {"path": "/logs", "verb": "get"}})),
    ("can-i --list", SSRR, _review("SelfSubjectRulesReview", {"namespace": "default"})),
    ("create token", TOKEN_DEFAULT, {
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
        "spec": {}}),
    ("create token bound", TOKEN_BOUND, {
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
        "spec": {"audiences": ["a1", "a2"], "expirationSeconds": 3600,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1",
                                    "uid": "u1"}}}),
    ("namespace", NAMESPACE, {
        "kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"}, "spec": {}}),
    ("configmap", CONFIGMAP, {
        "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"},
        "data": {"a": "b"}}),
    ("configmap binaryData", CONFIGMAP_BINARY, {
        "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "bin"},
        "data": {"k": "v"}, "binaryData": {"b.bin": "AAH+/w=="}}),  # bytes 00 01 fe ff
    ("secret", SECRET, {
        "kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s"},
        "data": {"a": "Yg=="}}),
    ("secret docker-registry", SECRET_DOCKER, {
        "kind": "Secret", "apiVersion": "v1", "metadata": {"name": "dr"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "eyJhdXRocyI6eyJ4Ijp7InVzZXJuYW1lIjoidSIsInBhc3N3b3Jk"
                                      "IjoicCIsImF1dGgiOiJkVHB3In19fQ=="}}),
    ("serviceaccount", SERVICE_ACCOUNT, {
        "kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "s"}}),
    ("role", ROLE, _rbac("Role", "r", rules=[
        # the core group is an empty string that must survive in a repeated field
        {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])),
    ("rolebinding", ROLE_BINDING, _rbac(
        "RoleBinding", "rb",
        subjects=[{"kind": "ServiceAccount", "name": "s", "namespace": "default"}],
        roleRef={"apiGroup": _RBAC_GROUP, "kind": "Role", "name": "r"})),
    ("clusterrole aggregated", CLUSTER_ROLE_AGGREGATED, _rbac(
        "ClusterRole", "agg", aggregationRule={"clusterRoleSelectors": [
            {"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]})),
    ("clusterrole non-resource", CLUSTER_ROLE_NON_RESOURCE, _rbac("ClusterRole", "nr", rules=[
        {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments"],
         "resourceNames": ["d1"]},
        {"verbs": ["get"], "nonResourceURLs": ["/logs/*"]}])),
    ("clusterrolebinding", CLUSTER_ROLE_BINDING, _rbac(
        "ClusterRoleBinding", "crb",
        subjects=[{"kind": "User", "apiGroup": _RBAC_GROUP, "name": "u"}],
        roleRef={"apiGroup": _RBAC_GROUP, "kind": "ClusterRole", "name": "cr"})),
    ("quota", QUOTA, {
        "kind": "ResourceQuota", "apiVersion": "v1", "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "2", "requests.cpu": "1"}}}),
    ("quota scopes", QUOTA_SCOPES, {
        "kind": "ResourceQuota", "apiVersion": "v1", "metadata": {"name": "qs"},
        "spec": {"hard": {"limits.memory": "1Gi", "pods": "2"}, "scopes": ["BestEffort"]}}),
    ("job", JOB, {
        "kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": "j"},
        "spec": {"template": {"metadata": {}, "spec": {
            "containers": [{"name": "j", "image": "busybox", "command": ["sh", "-c", "echo hi"],
                            "resources": {}}],
            "restartPolicy": "Never"}}}}),
    ("deployment", DEPLOYMENT, _deployment(
        "d", 1, {"name": "busybox", "image": "busybox", "resources": {}})),
    # replicas is a pointer: its 0 was chosen and stays; containerPort 8080 with no protocol
    ("deployment replicas 0", DEPLOYMENT_NO_REPLICAS, _deployment(
        "dz", 0, {"name": "busybox", "image": "busybox", "ports": [{"containerPort": 8080}],
                  "resources": {}})),
    ("service", SERVICE, {
        "kind": "Service", "apiVersion": "v1", "metadata": {"name": "sv", "labels": {"app": "sv"}},
        "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80,
                            "targetPort": 8080}],
                 "selector": {"app": "sv"}, "type": "ClusterIP"}}),
    ("pdb", PDB, {
        "kind": "PodDisruptionBudget", "apiVersion": "policy/v1", "metadata": {"name": "pd"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "b"}}}}),
    ("debug node", POD_DEBUG_NODE, {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": "node-debugger-devcluster-node-97zcw"},
        "spec": {
            "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
            "containers": [{
                "name": "debugger", "image": "busybox", "command": ["true"], "resources": {},
                "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
                "securityContext": {"privileged": True}, "terminationMessagePolicy": "File"}],
            "restartPolicy": "Never", "nodeName": "devcluster-node", "hostNetwork": True,
            "hostPID": True, "hostIPC": True, "tolerations": [{"operator": "Exists"}]}}),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for _, b, e in DECODED],
                         ids=[name for name, _, _ in DECODED])
def test_kubectl_bodies_decode_to_their_json_form(body: bytes, expected: dict[str, Any]) -> None:
    assert protobuf.decode(body) == expected


def test_every_fixture_kind_is_known() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for _, _, d in DECODED}
    assert kinds <= set(protobuf.known_kinds())


def test_job_from_cronjob_keeps_owner_references_and_pointer_zeros() -> None:
    job = protobuf.decode(JOB_FROM_CRONJOB)
    meta = job["metadata"]
    assert meta["name"] == "fromcj"
    assert meta["namespace"] == "default"
    assert meta["labels"] == {"team": "a"}
    assert meta["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    assert meta["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "CronJob", "name": "cj",
        "uid": "11111111-2222-3333-4444-555555555555", "controller": True}]
    spec = job["spec"]
    assert spec["parallelism"] == 2
    assert spec["completions"] == 2
    assert spec["activeDeadlineSeconds"] == 30
    assert spec["backoffLimit"] == 0  # pointer: an explicit 0, not "unset"
    assert spec["suspend"] is False  # pointer: an explicit false
    assert spec["ttlSecondsAfterFinished"] == 60
    assert spec["completionMode"] == "Indexed"
    assert "manualSelector" not in spec and "selector" not in spec
    assert spec["template"]["spec"]["containers"][0]["command"] == ["sh", "-c", "echo hi"]


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    return protobuf.decode(POD_DEBUG_COPY)


class TestDebugCopyPod:
    """The richest body: a whole PodSpec as kubectl debug --copy-to re-sends it.

    Every field here was checked against the JSON the source pod was created from.
    """

    def test_metadata(self, pod: dict[str, Any]) -> None:
        assert pod["kind"] == "Pod" and pod["apiVersion"] == "v1"
        assert pod["metadata"] == {"name": "rich2", "namespace": "default",
                                   "annotations": {"note": "hello"}}

    def test_pod_level_fields(self, pod: dict[str, Any]) -> None:
        spec = pod["spec"]
        assert spec["restartPolicy"] == "OnFailure"
        assert spec["terminationGracePeriodSeconds"] == 0
        assert spec["activeDeadlineSeconds"] == 600
        assert spec["serviceAccountName"] == "default"
        assert spec["automountServiceAccountToken"] is False
        assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert spec["securityContext"] == {"runAsUser": 1000, "runAsGroup": 0,
                                           "runAsNonRoot": True, "fsGroup": 2000,
                                           "supplementalGroups": [5, 6]}
        assert spec["tolerations"][:2] == [
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute",
             "tolerationSeconds": 30},
            {"operator": "Exists"},
        ]
        assert spec["priority"] == 0
        assert spec["enableServiceLinks"] is True
        assert "nodeName" not in spec  # debug --copy-to clears it

    def test_volumes(self, pod: dict[str, Any]) -> None:
        assert pod["spec"]["volumes"] == [
            {"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "cfg", "configMap": {"name": "c", "optional": True, "defaultMode": 0o644,
                                          "items": [{"key": "a", "path": "a.txt",
                                                     "mode": 0o400}]}},
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o644,
                                       "optional": False}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "pvc1", "readOnly": True}},
        ]

    def test_init_and_debug_containers(self, pod: dict[str, Any]) -> None:
        init = pod["spec"]["initContainers"][0]
        assert init["name"] == "init" and init["command"] == ["sh", "-c", "true"]
        debug = pod["spec"]["containers"][1]
        assert debug == {"name": "dbg", "image": "busybox", "command": ["sleep", "1"],
                         "resources": {}, "terminationMessagePolicy": "File"}

    def test_main_container(self, pod: dict[str, Any]) -> None:
        main = pod["spec"]["containers"][0]
        assert main["name"] == "main" and main["image"] == "busybox"
        assert main["command"] == ["sh", "-c"]
        assert main["args"] == ["echo $A && sleep 1"]
        assert main["workingDir"] == "/tmp"
        assert main["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        assert main["imagePullPolicy"] == "IfNotPresent"
        assert main["stdin"] is True and main["tty"] is True
        assert main["resources"] == {"limits": {"cpu": "500m", "memory": "128Mi"},
                                     "requests": {"cpu": "250m", "memory": "64Mi"}}
        assert main["volumeMounts"] == [
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "cfg", "mountPath": "/cfg", "readOnly": True, "subPath": "a.txt"},
        ]
        assert main["securityContext"] == {
            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "privileged": False, "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False}

    def test_env(self, pod: dict[str, Any]) -> None:
        main = pod["spec"]["containers"][0]
        assert main["env"] == [
            {"name": "A", "value": "1"},
            {"name": "EMPTY"},  # value "" is omitempty in JSON too
            {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                       "fieldPath": "metadata.name"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {
                "containerName": "main", "resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "a",
                                                             "optional": True}}},
            {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a"}}},
        ]
        assert main["envFrom"] == [{"prefix": "P_", "configMapRef": {"name": "c"}},
                                   {"secretRef": {"name": "s", "optional": True}}]

    def test_probes_inline_their_handler(self, pod: dict[str, Any]) -> None:
        main = pod["spec"]["containers"][0]
        # IntOrString in both forms: a named port and a number
        assert main["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http",
                                                     "scheme": "HTTP"}
        assert main["readinessProbe"]["periodSeconds"] == 5
        assert main["livenessProbe"]["tcpSocket"] == {"port": 8080}
        assert main["livenessProbe"]["failureThreshold"] == 3


# -- hand-built bodies ----------------------------------------------------------------------
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, value: int | bool | str | bytes) -> bytes:
    """One field: ints and bools as varints, str and bytes length-delimited."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(int(value))
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _msg(*fields: bytes) -> bytes:
    return b"".join(fields)


def _entry(number: int, key: str, value: str | bytes) -> bytes:
    return _field(number, _msg(_field(1, key), _field(2, value)))


def _body(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _msg(_field(1, api_version), _field(2, kind))
    return protobuf.MAGIC + _msg(_field(1, type_meta), _field(2, raw), _field(3, ""),
                                 _field(4, ""))


def test_delete_options_in_any_group_version_keep_explicit_zeros() -> None:
    raw = _msg(_field(1, 0), _field(2, _msg(_field(1, "uid-1"), _field(2, "42"))),
               _field(3, False), _field(4, "Foreground"), _field(5, "All"))
    assert protobuf.decode(_body("batch/v1", "DeleteOptions", raw)) == {
        "kind": "DeleteOptions", "apiVersion": "batch/v1", "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-1", "resourceVersion": "42"},
        "orphanDependents": False, "propagationPolicy": "Foreground", "dryRun": ["All"]}
    assert protobuf.decode(_body("v1", "DeleteOptions", b"")) == {
        "kind": "DeleteOptions", "apiVersion": "v1"}


def test_object_meta_fields_and_times() -> None:
    created = _msg(_field(1, 1_700_000_000), _field(2, 500_000_000))
    owner = _msg(_field(1, "Job"), _field(3, "j"), _field(4, "u-1"), _field(5, "batch/v1"),
                 _field(6, True), _field(7, False))
    meta = _msg(_field(1, ""), _field(2, "gen-"), _field(3, "ns1"), _field(5, "uid-9"),
                _field(6, "7"), _field(7, 3), _field(8, created), _field(9, b""),
                _field(10, 0), _entry(11, "app", "x"), _entry(12, "note", ""),
                _field(13, owner), _field(14, "example.com/a"), _field(14, "example.com/b"))
    assert protobuf.decode(_body("v1", "ConfigMap", _field(1, meta)))["metadata"] == {
        "generateName": "gen-", "namespace": "ns1", "uid": "uid-9", "resourceVersion": "7",
        "generation": 3,
        "creationTimestamp": "2023-11-14T22:13:20Z",  # Time prints whole seconds
        "deletionGracePeriodSeconds": 0,
        "labels": {"app": "x"}, "annotations": {"note": ""},
        "ownerReferences": [{"kind": "Job", "name": "j", "uid": "u-1", "apiVersion": "batch/v1",
                             "controller": True, "blockOwnerDeletion": False}],
        "finalizers": ["example.com/a", "example.com/b"],
    }


def test_event_micro_time_and_zero_time() -> None:
    raw = _msg(_field(1, _field(1, "e1")), _field(3, "Started"), _field(6, b""),
               _field(8, 2), _field(10, _msg(_field(1, 86_400), _field(2, 1_234_567))))
    event = protobuf.decode(_body("v1", "Event", raw))
    assert event["eventTime"] == "1970-01-02T00:00:00.001234Z"
    assert "firstTimestamp" not in event  # the zero Time is JSON null: no key
    assert event["count"] == 2 and event["reason"] == "Started"


def test_subject_access_review_extra_and_selectors() -> None:
    requirement = _msg(_field(1, "env"), _field(2, "In"), _field(3, "a"), _field(3, "b"))
    attributes = _msg(_field(2, "list"), _field(5, "pods"),
                      _field(8, _msg(_field(1, "spec.nodeName=n1"))),
                      _field(9, _msg(_field(2, requirement))))
    spec = _msg(_field(1, attributes), _field(3, "alice"), _field(4, "dev"), _field(4, "ops"),
                _entry(5, "scopes", _msg(_field(1, "s1"), _field(1, "s2"))),
                _entry(5, "empty", b""), _field(6, "uid-a"))
    review = protobuf.decode(_body("authorization.k8s.io/v1", "SubjectAccessReview",
                                   _field(2, spec)))
    assert review["spec"] == {
        "resourceAttributes": {
            "verb": "list", "resource": "pods",
            "fieldSelector": {"rawSelector": "spec.nodeName=n1"},
            "labelSelector": {"requirements": [{"key": "env", "operator": "In",
                                                "values": ["a", "b"]}]}},
        "user": "alice", "groups": ["dev", "ops"],
        "extra": {"scopes": ["s1", "s2"], "empty": []}, "uid": "uid-a"}


def test_negative_ints_packed_repeats_and_string_int_or_string() -> None:
    packed = _varint(4 << 3 | 2) + _varint(3) + _varint(5) + _varint(6) + _varint(7)
    pod_spec = _msg(_field(25, -5), _field(14, _msg(packed, _field(4, 8))))
    strategy = _msg(_field(1, "RollingUpdate"),
                    _field(2, _msg(_field(1, _msg(_field(1, 1), _field(3, "25%"))),
                                   _field(2, _msg(_field(1, 0), _field(2, 0))))))
    spec = _msg(_field(3, _field(2, pod_spec)), _field(4, strategy))
    deployment = protobuf.decode(_body("apps/v1", "Deployment", _field(2, spec)))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["priority"] == -5
    assert pod["securityContext"] == {"supplementalGroups": [5, 6, 7, 8]}
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 0}}


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (_field(90, 7)                                   # varint
               + _varint(91 << 3 | 1) + b"\x00" * 8            # fixed64
               + _field(92, b"\x01\x02")                       # length-delimited
               + _varint(93 << 3 | 5) + b"\x00" * 4            # fixed32
               + _varint(94 << 3 | 3) + _field(1, 1) + _varint(94 << 3 | 4))  # group
    raw = _msg(_field(1, _field(1, "c") + unknown), unknown, _entry(2, "a", "b"))
    assert protobuf.decode(_body("v1", "ConfigMap", raw)) == {
        "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}, "data": {"a": "b"}}


def test_schema_table_names_only_messages_it_defines() -> None:
    for name, fields in protobuf._MESSAGES.items():
        for number, field in fields.items():
            assert field.type in protobuf._SCALARS or field.type in protobuf._MESSAGES, (
                name, number, field)
            assert field.name or field.type in protobuf._MESSAGES, (name, number)


def test_deeply_nested_unknown_groups_do_not_exhaust_the_stack() -> None:
    start, end = _varint(95 << 3 | 3), _varint(95 << 3 | 4)
    raw = _field(1, _field(1, "c")) + start * 100_000 + end * 100_000
    assert protobuf.decode(_body("v1", "ConfigMap", raw))["metadata"] == {"name": "c"}


def test_invalid_utf8_is_replaced_as_json_encoding_would() -> None:
    raw = _entry(2, "k", b"a\xffb")
    assert protobuf.decode(_body("v1", "ConfigMap", raw))["data"] == {"k": "a\ufffdb"}


# -- errors ---------------------------------------------------------------------------------
def _error(body: bytes) -> ApiError:
    with pytest.raises(ApiError) as info:
        protobuf.decode(body)
    return info.value


@pytest.mark.parametrize(("body", "message"), [
    (b"", "the object provided is unrecognized: empty data"),
    (b'{"kind": "ConfigMap"}', "the object provided is unrecognized: provided data does not "
                               "appear to be a protobuf message, expected prefix [107 56 115 0]"),
    (protobuf.MAGIC, "the object provided is unrecognized: empty body"),
    (protobuf.MAGIC + b"\x0a\x05\x0a", "the object provided is unrecognized: unexpected EOF"),
    (_body("v1", "", b""), "Object 'Kind' is missing in "
                           "'runtime.TypeMeta{APIVersion:\"v1\", Kind:\"\"}'"),
    (_body("", "ConfigMap", b""), "Object 'apiVersion' is missing in "
                                  "'runtime.TypeMeta{APIVersion:\"\", Kind:\"ConfigMap\"}'"),
    (_body("v1", "Widget", b""), 'no kind "Widget" is registered for version "v1" in scheme '
                                 '"pkg/api/legacyscheme/scheme.go:30"'),
    (_body("batch/v2", "Job", b""), 'no kind "Job" is registered for version "batch/v2" in '
                                    'scheme "pkg/api/legacyscheme/scheme.go:30"'),
    (_body("v1", "ConfigMap", b"\x0a\x05\x0a\x01"),
     'ConfigMap in version "v1" cannot be handled as a ConfigMap: unexpected EOF'),
    (_body("v1", "ConfigMap", _field(1, 5)),
     'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
     "proto: wrong wireType = 0 for field Metadata"),
    (_body("batch/v1", "Job", _field(2, _field(1, "two"))),
     'Job in version "v1" cannot be handled as a Job: proto: wrong wireType = 2 for field '
     "Parallelism"),
    (_body("v1", "ConfigMap", b"\x0f"),
     'ConfigMap in version "v1" cannot be handled as a ConfigMap: proto: illegal wireType 7'),
    (_body("v1", "ConfigMap", b"\x0c"),
     'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
     "proto: ConfigMap: wiretype end group for non-group"),
    (_body("v1", "ConfigMap", b"\x08" + b"\xff" * 10 + b"\x01"),
     'ConfigMap in version "v1" cannot be handled as a ConfigMap: proto: integer overflow'),
])
def test_malformed_bodies_are_bad_requests(body: bytes, message: str) -> None:
    error = _error(body)
    assert (error.code, error.reason, error.message) == (400, "BadRequest", message)


def test_served_kind_without_a_protobuf_schema_is_unsupported_media_type() -> None:
    # Nodes are served but not decodable here; 415 is what the API server answers for an
    # endpoint that has no protobuf serializer, so a client knows to send JSON instead.
    error = _error(_body("v1", "Node", b""))
    assert (error.code, error.reason) == (415, "UnsupportedMediaType")


# -- wiring ---------------------------------------------------------------------------------
def test_server_decodes_protobuf_and_still_refuses_unknown_media_types() -> None:
    assert Handler._decode(CONFIGMAP, protobuf.CONTENT_TYPE) == protobuf.decode(CONFIGMAP)
    with pytest.raises(ApiError) as info:
        Handler._decode(b"\xa1", "application/cbor")
    assert info.value.code == 415
