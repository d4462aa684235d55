# 03-keycloak-endpoints (datalab.notebooks)
#
# GenericOAuthenticator settings that are only known in the cluster:
# - the Keycloak endpoints, from the addresses the keycloak role published in
#   ConfigMap keycloak-address: the browser goes to KEYCLOAK_NODEPORT_URL ("<node ip>:<node port>",
#   or the public host[:port] when Keycloak sits behind an Ingress) to log in; the hub's own calls
#   (token, userinfo) go to KEYCLOAK_SERVICE_URL, the Service's cluster DNS name, which stays valid
#   when Keycloak moves to another node (without it, to the browser's address);
# - the client id and secret, from Secret jupyterhub-oauth-client through the
#   environment, so the secret never sits in the Helm values;
# - the callback URL, ASSIGNED (the reference wrote `oauth_callback_url: ...`, an
#   annotation that sets nothing). OAUTH_CALLBACK_URL is the URL the realm lists as
#   the client's only redirect URI; without it, http://<KEYCLOAK_NODE_IP>:<hub node port>.
# `c` is the hub configuration, defined by the jupyterhub_config.py that executes this snippet.
# pylint: disable=undefined-variable
import os


def datalab_oauth_settings(environ):
    """The GenericOAuthenticator settings derived from `environ` (a mapping)."""

    def get(name):
        return (environ.get(name) or "").strip()

    address = get("KEYCLOAK_NODEPORT_URL")
    if not address:
        raise RuntimeError(
            "KEYCLOAK_NODEPORT_URL is empty: the hub reads the Keycloak address from ConfigMap "
            "keycloak-address (key keycloakAddress), which the keycloak role writes."
        )
    base = address if "://" in address else f"https://{address}"
    realm = get("KEYCLOAK_REALM") or "demo"
    oidc = f"{base.rstrip('/')}/realms/{realm}/protocol/openid-connect"
    service = get("KEYCLOAK_SERVICE_URL")
    backchannel = f"{service.rstrip('/')}/realms/{realm}/protocol/openid-connect" if service else oidc

    callback = get("OAUTH_CALLBACK_URL")
    if not callback:
        node_ip = get("KEYCLOAK_NODE_IP")
        if not node_ip:
            raise RuntimeError("OAUTH_CALLBACK_URL and KEYCLOAK_NODE_IP are both empty: cannot build the callback URL.")
        host = f"[{node_ip}]" if ":" in node_ip else node_ip
        callback = f"http://{host}:{get('DATALAB_HUB_NODE_PORT') or '31095'}/hub/oauth_callback"

    client_secret = get("OAUTH_CLIENT_SECRET")
    if not client_secret:
        raise RuntimeError(
            "OAUTH_CLIENT_SECRET is empty: it comes from Secret jupyterhub-oauth-client (key client-secret)."
        )
    return {
        "client_id": get("OAUTH_CLIENT_ID") or "jupyterhub",
        "client_secret": client_secret,
        "authorize_url": f"{oidc}/auth",
        "token_url": f"{backchannel}/token",
        "userdata_url": f"{backchannel}/userinfo",
        "oauth_callback_url": callback,
    }


datalab_oauth = datalab_oauth_settings(os.environ)
c.GenericOAuthenticator.client_id = datalab_oauth["client_id"]
c.GenericOAuthenticator.client_secret = datalab_oauth["client_secret"]
c.GenericOAuthenticator.authorize_url = datalab_oauth["authorize_url"]
c.GenericOAuthenticator.token_url = datalab_oauth["token_url"]
c.GenericOAuthenticator.userdata_url = datalab_oauth["userdata_url"]
c.GenericOAuthenticator.oauth_callback_url = datalab_oauth["oauth_callback_url"]
del datalab_oauth
