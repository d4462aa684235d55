# 02-spark-driver-service (datalab.notebooks)
#
# A notebook kernel is the Spark driver; the executors it starts reach it back at
# <pod name>:2222 (RPC), :7777 (block manager) and :4040 (UI). That name resolves
# through a headless Service named like the user pod and owned by it, so the
# garbage collector removes the Service with the pod.
#
# Built as a plain manifest and sent through `spawner.api` (KubeSpawner's public
# kubernetes_asyncio CoreV1Api). Nothing here calls KubeSpawner helpers: the
# reference snippet used get_service_manifest(owner_reference), whose signature
# changed in KubeSpawner 7.1 (an extra `port` argument), and the private
# _ensure_not_exists / _make_create_resource_request. The hook is idempotent: a
# Service that already has the right owner and shape is kept; one left over from
# an earlier pod of the same name (or of another shape) is replaced.
# `c` is the hub configuration, defined by the jupyterhub_config.py that executes this snippet.
# pylint: disable=undefined-variable
import asyncio
import json
import os

DATALAB_SPARK_DRIVER_PORTS = (
    ("spark-ui", 4040),
    ("spark-driver", 2222),
    ("spark-block-manager", 7777),
)

# Labels that single out one user server among the pods of the namespace.
DATALAB_SELECTOR_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app",
    "release",
    "component",
    "hub.jupyter.org/username",
    "hub.jupyter.org/servername",
)


def datalab_spark_driver_service(pod, labels=None):
    """The headless Service manifest (a dict) for the user pod `pod` (a dict as the API returns it)."""
    meta = pod["metadata"]
    pod_labels = meta.get("labels") or {}
    selector = {k: pod_labels[k] for k in DATALAB_SELECTOR_LABELS if k in pod_labels}
    if not selector:
        raise ValueError(f"pod {meta['name']} has no labels a Service could select it by")
    service_labels = dict(labels or {})
    for key in ("hub.jupyter.org/username", "hub.jupyter.org/servername"):
        if key in pod_labels:
            service_labels[key] = pod_labels[key]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": service_labels,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    # blockOwnerDeletion would need update rights on pods/finalizers,
                    # which the hub's Role does not have (and does not need).
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            "clusterIP": "None",
            "selector": selector,
            "ports": [
                {"name": name, "port": port, "targetPort": port, "protocol": "TCP"}
                for name, port in DATALAB_SPARK_DRIVER_PORTS
            ],
        },
    }


def datalab_service_matches(existing, desired):
    """True when `existing` (dict) is owned by the same pod and has the shape of `desired`."""
    owner_uids = {o.get("uid") for o in existing.get("metadata", {}).get("ownerReferences") or []}
    desired_uid = desired["metadata"]["ownerReferences"][0]["uid"]
    spec = existing.get("spec") or {}

    def ports(s):
        return sorted(
            (p.get("name"), str(p.get("port")), str(p.get("targetPort") or p.get("port")))
            for p in s.get("ports") or []
        )

    return (
        desired_uid in owner_uids
        and not existing.get("metadata", {}).get("deletionTimestamp")
        and spec.get("clusterIP") == "None"
        and (spec.get("selector") or {}) == desired["spec"]["selector"]
        and ports(spec) == ports(desired["spec"])
    )


def _datalab_as_dict(api, obj):
    if isinstance(obj, dict):
        return obj
    return api.api_client.sanitize_for_serialization(obj)


def _datalab_status(exc):
    return getattr(exc, "status", None)


async def datalab_ensure_service(api, service, log, request_timeout=30, timeout=60, interval=1.0):
    """Create `service`, keep an equivalent one, or replace a stale one. Returns what it did."""
    name = service["metadata"]["name"]
    namespace = service["metadata"]["namespace"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    replaced = False
    while True:
        try:
            await asyncio.wait_for(api.create_namespaced_service(namespace, service), request_timeout)
            log.info("Spark driver Service %s/%s created", namespace, name)
            return "replaced" if replaced else "created"
        except Exception as exc:  # the API's ApiException, without importing kubernetes_asyncio
            if _datalab_status(exc) != 409:
                raise
        try:
            existing = _datalab_as_dict(
                api, await asyncio.wait_for(api.read_namespaced_service(name, namespace), request_timeout)
            )
        except Exception as exc:
            if _datalab_status(exc) != 404:
                raise
            existing = None  # deleted in between: create again
        if existing is not None:
            if datalab_service_matches(existing, service):
                log.info("Spark driver Service %s/%s already in place", namespace, name)
                return "unchanged"
            log.info("Replacing Spark driver Service %s/%s left from an earlier pod", namespace, name)
            try:
                await asyncio.wait_for(api.delete_namespaced_service(name, namespace), request_timeout)
            except Exception as exc:
                if _datalab_status(exc) != 404:
                    raise
            replaced = True
        if loop.time() > deadline:
            raise TimeoutError(f"Spark driver Service {namespace}/{name} could not be created within {timeout}s")
        await asyncio.sleep(interval)


async def datalab_spark_driver_service_hook(spawner, pod):
    labels = json.loads(os.environ.get("DATALAB_DRIVER_SERVICE_LABELS") or "{}")
    service = datalab_spark_driver_service(pod, labels)
    await datalab_ensure_service(
        spawner.api,
        service,
        spawner.log,
        request_timeout=getattr(spawner, "k8s_api_request_timeout", 30),
        timeout=getattr(spawner, "k8s_api_request_retry_timeout", 60),
    )


c.KubeSpawner.after_pod_created_hook = datalab_spark_driver_service_hook
