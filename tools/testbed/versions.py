"""Pinned versions of everything the test bed builds or downloads.

Changing a value here is the only thing that triggers a rebuild: every cached
artifact lives in a directory named after its version.
"""

KUBERNETES = "v1.34.4"
ETCD = "v3.6.16"
KWOK = "v0.8.0"
# The real node's cluster DNS: the newest version the Go module proxy serves.
COREDNS = "v1.15.0"
# Tag of the node's sandbox image local.test/pause:<PAUSE> (the binary is built from the Kubernetes module).
PAUSE = "3.10"
HELM = "v3.22.0"
# The helm-diff plugin (github.com/databus23/helm-diff/v3), so kubernetes.core.helm can show real
# diffs in check/diff mode.  The only version the module proxy here serves.
HELM_DIFF = "v3.9.14"
# Same version as the keycloak role's default image (roles/keycloak/defaults/main.yml).
KEYCLOAK = "26.5.5"
