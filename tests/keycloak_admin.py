"""A minimal client of the test-bed Keycloak's admin REST API, for assertions in the integration tests.

The module under test has its own client (plugins/module_utils/keycloak_admin.py); this one stays
independent of it on purpose. Each call takes a fresh admin token: admin tokens live 60 s, and a
converge between two calls takes longer.
"""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request


class KeycloakAdmin:
    def __init__(self, kc):
        self.url = kc["url"].rstrip("/")
        self.ctx = ssl.create_default_context(cafile=kc["ca_path"])
        self._form = urllib.parse.urlencode({"grant_type": "password", "client_id": "admin-cli",
                                             "username": kc["username"], "password": kc["password"]}).encode()

    def open(self, req, opener=None):
        """(HTTP status, body bytes); HTTP errors raise urllib.error.HTTPError."""
        opener = opener or urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.ctx))
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.read()

    def request(self, method, path):
        """Admin call on /admin/realms<path>: (HTTP status, parsed body or None), errors included."""
        token = json.loads(self.open(urllib.request.Request(
            self.url + "/realms/master/protocol/openid-connect/token", data=self._form))[1])["access_token"]
        req = urllib.request.Request(self.url + "/admin/realms" + path, method=method)
        req.add_header("Authorization", "Bearer " + token)
        try:
            status, body = self.open(req)
        except urllib.error.HTTPError as exc:
            return exc.code, None
        return status, json.loads(body) if body else None

    def get(self, path):
        status, body = self.request("GET", path)
        assert status == 200, "GET /admin/realms%s: HTTP %s" % (path, status)
        return body

    def delete(self, path):
        """Delete; an object that is gone already is fine."""
        status, _body = self.request("DELETE", path)
        assert status in (200, 204, 404), "DELETE /admin/realms%s: HTTP %s" % (path, status)

    def realm_exists(self, realm):
        return self.request("GET", "/" + realm)[0] == 200
