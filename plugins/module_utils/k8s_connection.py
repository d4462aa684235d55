# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Connect to the Kubernetes API the way kubernetes.core modules do, from the same options.

`CONNECTION_ARG_SPEC` is the argument spec that matches the
``datalab.notebooks.k8s_connection`` doc fragment; `api_client` turns those
options into a ``kubernetes`` ApiClient and `make_get_json` into a read-only
``get_json(path, query)`` that returns decoded JSON, None for 404, and raises
`K8sConnectionError` with a one-line message for anything else.
"""

from __future__ import annotations

import json
import os
import traceback

from ansible.module_utils.basic import env_fallback

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError as Urllib3HTTPError
except ImportError:
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None

REQUEST_TIMEOUT = 30

CONNECTION_ARG_SPEC = dict(
    kubeconfig=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG"])),
    context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
    host=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_HOST"])),
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["K8S_AUTH_API_KEY"])),
    validate_certs=dict(type="bool", aliases=["verify_ssl"], fallback=(env_fallback, ["K8S_AUTH_VERIFY_SSL"])),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"], fallback=(env_fallback, ["K8S_AUTH_SSL_CA_CERT"])),
    client_cert=dict(type="path", aliases=["cert_file"], fallback=(env_fallback, ["K8S_AUTH_CERT_FILE"])),
    client_key=dict(type="path", aliases=["key_file"], fallback=(env_fallback, ["K8S_AUTH_KEY_FILE"])),
)


class K8sConnectionError(Exception):
    """The API could not be configured or reached, or refused a request; the message is one line."""


def _one_line(text):
    return " ".join(str(text).split())


def _configuration(params):
    """A kubernetes Configuration: the kubeconfig (or the pod's service account), then explicit overrides."""
    cfg = k8s_client.Configuration()
    kubeconfig = params.get("kubeconfig")
    if kubeconfig or not params.get("host"):
        try:
            if kubeconfig or os.path.exists(os.path.expanduser(k8s_config.KUBE_CONFIG_DEFAULT_LOCATION)):
                # persist_config=False: a read-only client must not rewrite the user's kubeconfig on token refresh.
                k8s_config.load_kube_config(config_file=kubeconfig, context=params.get("context"),
                                            client_configuration=cfg, persist_config=False)
            else:
                k8s_config.load_incluster_config(client_configuration=cfg)
        except (ConfigException, OSError, ValueError) as exc:
            source = kubeconfig or "default kubeconfig"
            raise K8sConnectionError("cannot load the Kubernetes client configuration (%s): %s; set kubeconfig "
                                     "(and context) or host and api_key" % (source, _one_line(exc).rstrip(".")))
    if params.get("host"):
        cfg.host = params["host"]
    if params.get("api_key"):
        cfg.api_key = {"authorization": "Bearer %s" % params["api_key"]}
        cfg.api_key_prefix = {}
    if params.get("ca_cert"):
        cfg.ssl_ca_cert = params["ca_cert"]
    if params.get("client_cert"):
        cfg.cert_file = params["client_cert"]
    if params.get("client_key"):
        cfg.key_file = params["client_key"]
    if params.get("validate_certs") is not None:
        cfg.verify_ssl = params["validate_certs"]
    return cfg


def api_client(params):
    """A ``kubernetes.client.ApiClient`` from the connection options in ``params``."""
    return k8s_client.ApiClient(configuration=_configuration(params))


def _api_message(exc):
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return exc.reason


def make_call_json(client):
    """``call_json(method, path, query=None, body=None)``: one API request, its answer decoded; None when the
    object does not exist (404)."""
    host = client.configuration.host

    def call_json(method, path, query=None, body=None):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = client.call_api(
                path, method, query_params=sorted((query or {}).items()), header_params=headers, body=body,
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                _request_timeout=REQUEST_TIMEOUT)
            return json.loads(response.data)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status in (401, 403):
                raise K8sConnectionError("the Kubernetes API at %s refused %s %s (%s): %s; check the credentials "
                                         "and RBAC of the connection" % (host, method, path, exc.status,
                                                                         _one_line(_api_message(exc))))
            raise K8sConnectionError("%s %s on the Kubernetes API at %s failed (%s): %s"
                                     % (method, path, host, exc.status, _one_line(_api_message(exc))))
        except (Urllib3HTTPError, OSError) as exc:
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                hint = "; set ca_cert to the CA that signed the API server certificate"
            raise K8sConnectionError("cannot reach the Kubernetes API at %s: %s%s" % (host, _one_line(exc), hint))
        except ValueError as exc:
            raise K8sConnectionError("%s %s on the Kubernetes API at %s returned no JSON: %s"
                                     % (method, path, host, _one_line(exc).rstrip(".")))
    return call_json


def make_get_json(client):
    """``get_json(path, query=None)``: GET an API path, decoded; None when the object does not exist."""
    call_json = make_call_json(client)

    def get_json(path, query=None):
        return call_json("GET", path, query)
    return get_json
