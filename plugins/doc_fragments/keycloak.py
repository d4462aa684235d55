# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


class ModuleDocFragment(object):
    # Connection and authentication options of the collection's Keycloak modules.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of Keycloak, for example V(https://127.0.1.2:31093). Keycloak 17 and later serve the
        API at the root; for an older server or a reverse proxy with a prefix include it (V(https://host/auth)).
    type: str
    required: true
  auth_realm:
    description:
      - Realm in which O(auth_username) or O(auth_client_id) logs in.
    type: str
    default: master
  auth_username:
    description:
      - Admin user for the password grant. Needs the V(admin) role in the master realm to create realms,
        or V(realm-admin) of the target realm to reconcile an existing one.
    type: str
  auth_password:
    description:
      - Password of O(auth_username).
    type: str
  auth_client_id:
    description:
      - OpenID Connect client used to obtain the token.
      - With O(auth_client_secret) and no O(auth_username), the client-credentials grant of this client
        (its service account needs the admin roles).
    type: str
    default: admin-cli
  auth_client_secret:
    description:
      - Secret of O(auth_client_id) when it is a confidential client.
    type: str
  token:
    description:
      - A bearer token to use as is instead of logging in. It is not refreshed, so when it expires during
        the run the task fails.
    type: str
  ca_path:
    description:
      - PEM file with the CA certificate(s) that signed Keycloak's TLS certificate.
      - When not set, the system trust store is used (E(SSL_CERT_FILE) is honoured).
    type: path
  validate_certs:
    description:
      - Verify the TLS certificate and host name of Keycloak. Turn off only for a throwaway test server;
        prefer O(ca_path).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each HTTP response. Connection errors and HTTP 5xx answers are retried
        four times with increasing pauses (0.5 to 4 seconds).
    type: int
    default: 30
notes:
  - The access token is renewed when it is about to expire or Keycloak answers 401, so long runs work
    with Keycloak's short default token lifespan (60 seconds for the master realm).
"""
