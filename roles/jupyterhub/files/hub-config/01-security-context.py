# 01-security-context (datalab.notebooks)
#
# The reference installation dropped the security contexts of user servers. We
# set sane ones instead: no privilege escalation, no Linux capabilities, the
# runtime's default seccomp profile, and a non-root user (docker-stacks images run
# as jovyan, uid 1000, which the chart's singleuser.uid already sets).
#
# runAsNonRoot is set on the notebook container only, not on the pod: the chart's
# optional cloud-metadata init container runs as root and would be refused.
# Whatever hub.config already says under KubeSpawner.pod_security_context or
# KubeSpawner.container_security_context wins over these defaults.
# `c` is the hub configuration, defined by the jupyterhub_config.py that executes this snippet.
# pylint: disable=undefined-variable

DATALAB_POD_SECURITY_CONTEXT = {
    "seccompProfile": {"type": "RuntimeDefault"},
}

DATALAB_CONTAINER_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def datalab_merge_security_context(section, trait, defaults):
    """Return `defaults` updated with what the configuration already sets for `trait`."""
    merged = dict(defaults)
    if trait in section:
        merged.update(section[trait] or {})
    return merged


c.KubeSpawner.pod_security_context = datalab_merge_security_context(
    c.KubeSpawner, "pod_security_context", DATALAB_POD_SECURITY_CONTEXT
)
c.KubeSpawner.container_security_context = datalab_merge_security_context(
    c.KubeSpawner, "container_security_context", DATALAB_CONTAINER_SECURITY_CONTEXT
)
