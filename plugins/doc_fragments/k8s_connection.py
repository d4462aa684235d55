# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations


class ModuleDocFragment(object):
    # Connection options shared by the collection's Kubernetes modules. They have the
    # names and environment variables of kubernetes.core's, so one set of values serves both.
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file.
      - When neither O(kubeconfig) nor O(host) is set, the file named by E(KUBECONFIG) or C(~/.kube/config)
        is used if it exists, otherwise the service account of the pod the module runs in.
      - Can also be set with the E(K8S_AUTH_KUBECONFIG) environment variable.
    type: path
  context:
    description:
      - Name of a context in the kubeconfig file. The current context when not set.
      - Can also be set with the E(K8S_AUTH_CONTEXT) environment variable.
    type: str
  host:
    description:
      - URL of the Kubernetes API server, for example V(https://127.0.0.1:6443).
      - Overrides the server of the kubeconfig. Without O(kubeconfig), no kubeconfig is read and
        O(api_key) or O(client_cert)/O(client_key) authenticate.
      - Can also be set with the E(K8S_AUTH_HOST) environment variable.
    type: str
  api_key:
    description:
      - Bearer token to authenticate with the API server.
      - Can also be set with the E(K8S_AUTH_API_KEY) environment variable.
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - When not set, the kubeconfig decides (certificates are verified unless it says
        C(insecure-skip-tls-verify)); with O(host) and no kubeconfig they are verified.
      - Can also be set with the E(K8S_AUTH_VERIFY_SSL) environment variable.
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - Path to the CA certificate (chain) that signed the API server's certificate.
      - Can also be set with the E(K8S_AUTH_SSL_CA_CERT) environment variable.
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Path to a client certificate to authenticate with the API server.
      - Can also be set with the E(K8S_AUTH_CERT_FILE) environment variable.
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Path to the private key of O(client_cert).
      - Can also be set with the E(K8S_AUTH_KEY_FILE) environment variable.
    type: path
    aliases: [key_file]
requirements:
  - kubernetes (Python library)
"""

    # The same options for the collection's lookups, which run in the controller's process.
    LOOKUP = r"""
options:
  kubeconfig:
    description: Path to a kubeconfig file (default E(KUBECONFIG) or C(~/.kube/config)).
    type: path
  context:
    description: A context of the kubeconfig; its current context when not set.
    type: str
  host:
    description: URL of the API server; overrides the kubeconfig's.
    type: str
  api_key:
    description: A bearer token.
    type: str
  validate_certs:
    description: Whether to verify the API server's certificate.
    type: bool
  ca_cert:
    description: The CA that signed the API server's certificate.
    type: path
  client_cert:
    description: A client certificate.
    type: path
  client_key:
    description: The key of O(client_cert).
    type: path
"""
