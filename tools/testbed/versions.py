"""Pinned versions of everything the test bed builds or downloads.

Changing a value here is the only thing that triggers a rebuild: every cached
artifact lives in a directory named after its version.
"""

KUBERNETES = "v1.34.4"
ETCD = "v3.6.16"
KWOK = "v0.8.0"
HELM = "v3.22.0"
# Same version as the keycloak role's default image (roles/keycloak/defaults/main.yml).
KEYCLOAK = "26.5.5"
