"""jupyterhub_config.py of the e2e hub: the Z2JH chart's way of turning values into config.

Run by JupyterHub itself (`jupyterhub -f <this file>`, in the hub venv), with
DATALAB_E2E_HUB_SPEC naming a JSON file written by hub_proc.py:
    {"values": <the values the stand-in chart recorded>, "namespace": ..., "release": ...,
     "paths": {<container path>: <local path>}, "local": {<the local-only overrides>}}

Order, as the chart applies it: chart-derived settings (hub and singleuser values ->
JupyterHub/KubeSpawner traits, for the keys the chart maps), with the local-only
overrides taking the place of the in-cluster addresses; then `hub.config` sections into
`c`; then `hub.extraConfig` snippets executed in sorted key order in this module's
namespace (as the chart does).  Our own code, written from the chart's documented behaviour.
"""
import json
import os
import re
import sys

c = get_config()  # noqa: F821  # pylint: disable=used-before-assignment  # JupyterHub provides it

with open(os.environ["DATALAB_E2E_HUB_SPEC"]) as _fh:
    _SPEC = json.load(_fh)
_VALUES = _SPEC["values"]
_PATHS = _SPEC.get("paths", {})
_LOCAL = _SPEC["local"]


def _translate(obj):
    """Container paths of hub.extraVolumeMounts -> where the harness wrote those files."""
    if isinstance(obj, str):
        for container in sorted(_PATHS, key=len, reverse=True):
            if obj == container or obj.startswith(container.rstrip("/") + "/"):
                return _PATHS[container] + obj[len(container):]
        return obj
    if isinstance(obj, dict):
        return {k: _translate(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_translate(v) for v in obj]
    return obj


_MISSING = object()


def get_config(key, default=None):
    """A dotted key of the values ("singleuser.image.name"), like the chart's z2jh.get_config."""
    node = _VALUES
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _set_if_present(section, trait, key):
    value = get_config(key, _MISSING)
    if value is not _MISSING and value is not None:
        setattr(section, trait, value)


def _camel(s):
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), s)


# --- chart-derived settings -----------------------------------------------------------------
try:
    import pycurl  # noqa: F401  # pylint: disable=unused-import  # the hub image has it; the chart uses curl
    from tornado.httpclient import AsyncHTTPClient

    AsyncHTTPClient.configure("tornado.curl_httpclient.CurlAsyncHTTPClient")
except ImportError:
    print("e2e hub: pycurl missing, tornado's simple HTTP client is used", file=sys.stderr)

c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.JupyterHub.cleanup_servers = False
c.JupyterHub.last_activity_interval = 60
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"  # hub.db.type sqlite-pvc; the cwd is a scratch dir

for _trait in ("concurrent_spawn_limit", "active_server_limit", "base_url", "allow_named_servers",
               "named_server_limit_per_user", "authenticate_prometheus", "redirect_to_server",
               "shutdown_on_logout", "template_paths", "template_vars"):
    _set_if_present(c.JupyterHub, _trait, "hub." + _camel(_trait))

# Local-only overrides (listed in tests/e2e/test_hub.py::LOCAL_OVERRIDES): in the chart
# these are the hub and proxy Services' in-cluster addresses.
c.JupyterHub.bind_url = _LOCAL["bind_url"]
c.JupyterHub.hub_bind_url = _LOCAL["hub_bind_url"]
c.JupyterHub.hub_connect_url = _LOCAL["hub_bind_url"]
c.ConfigurableHTTPProxy.api_url = _LOCAL["proxy_api_url"]
c.ConfigurableHTTPProxy.should_start = True
c.ConfigurableHTTPProxy.command = _LOCAL["proxy_command"]
c.KubeSpawner.pod_connect_ip = _LOCAL["pod_connect_ip"]

_labels = {"app.kubernetes.io/name": _VALUES.get("nameOverride") or "jupyterhub", "app": "jupyterhub",
           "app.kubernetes.io/instance": _SPEC["release"], "release": _SPEC["release"],
           "app.kubernetes.io/managed-by": "kubespawner"}
c.KubeSpawner.common_labels = _labels
c.KubeSpawner.namespace = os.environ.get("POD_NAMESPACE", "default")
_set_if_present(c.Spawner, "consecutive_failure_limit", "hub.consecutiveFailureLimit")

for _trait, _key in (
    ("pod_name_template", None), ("start_timeout", None), ("image_pull_policy", "image.pullPolicy"),
    ("events_enabled", "events"), ("extra_labels", None), ("extra_annotations", None), ("uid", None),
    ("fs_gid", None), ("service_account", "serviceAccountName"), ("storage_extra_labels", "storage.extraLabels"),
    ("node_selector", None), ("lifecycle_hooks", None), ("init_containers", None), ("extra_containers", None),
    ("mem_limit", "memory.limit"), ("mem_guarantee", "memory.guarantee"), ("cpu_limit", "cpu.limit"),
    ("cpu_guarantee", "cpu.guarantee"), ("extra_resource_limits", "extraResource.limits"),
    ("extra_resource_guarantees", "extraResource.guarantees"), ("environment", "extraEnv"),
    ("profile_list", None), ("extra_pod_config", None),
):
    _set_if_present(c.KubeSpawner, _trait, "singleuser." + (_key or _camel(_trait)))

_image = get_config("singleuser.image.name")
if _image:
    _tag = get_config("singleuser.image.tag")
    c.KubeSpawner.image = f"{_image}:{_tag}" if _tag else _image
c.KubeSpawner.allow_privilege_escalation = get_config("singleuser.allowPrivilegeEscalation")

_volumes, _mounts = {}, {}
_storage = get_config("singleuser.storage.type")
if _storage == "dynamic":
    _volume_name = get_config("singleuser.storage.dynamic.volumeNameTemplate") or "volume-{user_server}"
    if get_config("singleuser.storage.dynamic.pvcNameTemplate"):
        c.KubeSpawner.pvc_name_template = get_config("singleuser.storage.dynamic.pvcNameTemplate")
    c.KubeSpawner.storage_pvc_ensure = True
    _set_if_present(c.KubeSpawner, "storage_class", "singleuser.storage.dynamic.storageClass")
    _set_if_present(c.KubeSpawner, "storage_access_modes", "singleuser.storage.dynamic.storageAccessModes")
    _set_if_present(c.KubeSpawner, "storage_capacity", "singleuser.storage.capacity")
    _volumes[_volume_name] = {"name": _volume_name, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
    _mounts[_volume_name] = {"name": _volume_name,
                             "mountPath": get_config("singleuser.storage.homeMountPath") or "/home/jovyan",
                             "subPath": get_config("singleuser.storage.dynamic.subPath") or ""}
elif _storage == "static":
    _volumes["home"] = {"name": "home",
                        "persistentVolumeClaim": {"claimName": get_config("singleuser.storage.static.pvcName")}}
    _mounts["home"] = {"name": "home", "mountPath": get_config("singleuser.storage.homeMountPath") or "/home/jovyan",
                       "subPath": get_config("singleuser.storage.static.subPath") or ""}
for _v in get_config("singleuser.storage.extraVolumes") or []:
    _volumes[_v["name"]] = _v
for _i, _m in enumerate(get_config("singleuser.storage.extraVolumeMounts") or []):
    _mounts[f"{_i}-{_m['name']}"] = _m
c.KubeSpawner.volumes = _volumes
c.KubeSpawner.volume_mounts = _mounts

_cmd = get_config("singleuser", {}).get("cmd", _MISSING) if isinstance(get_config("singleuser"), dict) else _MISSING
if _cmd is not _MISSING:
    c.Spawner.cmd = _cmd
_set_if_present(c.Spawner, "default_url", "singleuser.defaultUrl")

# --- hub.config: each section into c[Section] ---------------------------------------------------
for _section, _cfg in (get_config("hub.config") or {}).items():
    if not _section[:1].isupper():
        sys.exit(f"FATAL: hub.config section {_section!r} is not a Configurable class name")
    print(f"e2e hub: loading hub.config.{_section}", file=sys.stderr)
    c[_section].update(_translate(_cfg))

# --- hub.extraConfig: sorted by key, executed here ---------------------------------------------------
for _key, _source in sorted((get_config("hub.extraConfig") or {}).items()):
    print(f"e2e hub: loading hub.extraConfig.{_key}", file=sys.stderr)
    exec(compile(_source, f"hub.extraConfig.{_key}", "exec"))  # noqa: S102 - the chart does the same
