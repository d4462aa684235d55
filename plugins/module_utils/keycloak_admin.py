# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""A small client for the Keycloak admin REST API.

Standard library only (``http.client`` + ``ssl``), so it runs on any managed Python without extra
packages.  One persistent HTTPS connection is reused for every request: a realm of thousands of
users is read and written with a few hundred requests, and a TLS handshake per request would
dominate the run time.

Errors are raised as :class:`KeycloakError` with a single line meant for a person, naming the
option to fix.  Secrets (passwords, tokens, client secrets) never appear in messages.

`CONNECTION_ARG_SPEC` is the argument spec that matches the ``datalab.notebooks.keycloak`` doc
fragment, and :func:`admin_from_params` makes the client from those options.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import socket
import ssl
import time

from http import client as http_client
from urllib.parse import quote, urlencode, urlsplit


CONNECTION_ARG_SPEC = dict(
    url=dict(type='str', required=True),
    auth_realm=dict(type='str', default='master'),
    auth_username=dict(type='str'),
    auth_password=dict(type='str', no_log=True),
    auth_client_id=dict(type='str', default='admin-cli'),
    auth_client_secret=dict(type='str', no_log=True),
    token=dict(type='str', no_log=True),
    ca_path=dict(type='path'),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='int', default=30),
)
CONNECTION_REQUIRED_TOGETHER = [('auth_username', 'auth_password')]


class KeycloakError(Exception):
    """A failure explained in one line; ``status`` is the HTTP status when there was one."""

    def __init__(self, msg, status=None):
        super(KeycloakError, self).__init__(msg)
        self.status = status


RETRY_STATUS = (500, 502, 503, 504)
CONNECT_ERRORS = (socket.timeout, OSError, http_client.HTTPException)
# A kept-alive connection that the server closed meanwhile: reconnect at once, it is not an outage.
STALE_ERRORS = (http_client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def q(value):
    """Quote one path segment (role and group names may contain spaces and slashes)."""
    return quote(str(value), safe='')


def _error_text(data, raw):
    if isinstance(data, dict):
        for key in ('errorMessage', 'error_description', 'error'):
            if data.get(key):
                return str(data[key])
    text = (raw or b'').decode('utf-8', 'replace').strip().replace('\n', ' ')
    return text[:200] if text else 'no details'


class AdminVerbs(object):
    """get/post/put/delete on top of ``request(method, path, query, body, missing_ok)``: the interface the
    realm code uses, shared by the client and by any stand-in for it."""

    def get(self, path, query=None, missing_ok=False):
        return self.request('GET', path, query=query, missing_ok=missing_ok)

    def post(self, path, body=None, query=None):
        return self.request('POST', path, query=query, body=body)

    def put(self, path, body=None):
        return self.request('PUT', path, body=body)

    def delete(self, path, body=None, missing_ok=True):
        return self.request('DELETE', path, body=body, missing_ok=missing_ok)


class KeycloakAdmin(AdminVerbs):
    """Talks to ``<url>/admin/realms/...`` with a bearer token it obtains and renews itself."""

    def __init__(self, url, auth_realm='master', username=None, password=None, client_id='admin-cli',
                 client_secret=None, token=None, ca_path=None, validate_certs=True, timeout=30,
                 retries=4, backoff=0.5, sleep=time.sleep):
        parts = urlsplit(url or '')
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise KeycloakError("url must look like https://keycloak.example.com:8443 (got %r)" % (url,))
        self.url = url.rstrip('/')
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == 'https' else 80)
        self._base = parts.path.rstrip('/')
        self.auth_realm = auth_realm or 'master'
        self.username = username
        self._password = password
        self.client_id = client_id or 'admin-cli'
        self._client_secret = client_secret
        self._token = token
        self._fixed_token = bool(token)
        self._refresh_token = None
        self._expires = None
        self.ca_path = ca_path
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._conn = None
        self.requests = 0
        if not token and not (username and password) and not client_secret:
            raise KeycloakError("no credentials: give auth_username and auth_password, auth_client_secret "
                                "(client credentials of auth_client_id) or token")
        if parts.scheme == 'https':
            self._ssl = self._ssl_context()

    # --- transport -------------------------------------------------------------------------

    def _ssl_context(self):
        if not self.validate_certs:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        try:
            return ssl.create_default_context(cafile=self.ca_path) if self.ca_path else ssl.create_default_context()
        except (IOError, OSError, ssl.SSLError) as exc:
            raise KeycloakError("cannot load ca_path %s: %s" % (self.ca_path, getattr(exc, 'strerror', None) or exc))

    def _connect(self):
        if self._conn is None:
            if self._scheme == 'https':
                self._conn = http_client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                                         context=self._ssl)
            else:
                self._conn = http_client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        return self._conn

    def clone(self):
        """The same client (settings and current token) on a connection of its own, for another thread."""
        other = copy.copy(self)
        other._conn = None
        other.requests = 0
        return other

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _tls_error(self, exc):
        reason = getattr(exc, 'verify_message', None) or getattr(exc, 'reason', None) or str(exc)
        if self.ca_path:
            hint = ("check that ca_path %s is the CA that signed the server certificate and that the URL's host "
                    "is in the certificate" % self.ca_path)
        else:
            hint = ("pass ca_path=<CA file that signed the Keycloak certificate> (or validate_certs=false to skip "
                    "verification, not recommended)")
        return KeycloakError("TLS certificate of %s is not trusted (%s): %s" % (self.url, reason, hint))

    def _send(self, method, path, body=None, headers=None):
        """One HTTP exchange with retries on connection errors and 5xx; returns (status, headers, raw)."""
        attempt = 0
        while True:
            attempt += 1
            conn = self._connect()
            try:
                conn.request(method, self._base + path, body=body, headers=headers or {})
                resp = conn.getresponse()
                raw = resp.read()
                self.requests += 1
                if resp.getheader('Connection', '').lower() == 'close':
                    self.close()
                if resp.status in RETRY_STATUS and attempt <= self.retries:
                    self._sleep(self.backoff * (2 ** (attempt - 1)))
                    continue
                return resp.status, resp, raw
            except ssl.SSLError as exc:
                self.close()
                if isinstance(exc, ssl.SSLCertVerificationError):
                    raise self._tls_error(exc)
                if attempt > self.retries:
                    raise KeycloakError("TLS error talking to %s: %s" % (self.url, exc))
            except CONNECT_ERRORS as exc:
                self.close()
                if attempt > self.retries:
                    why = getattr(exc, 'strerror', None) or str(exc) or exc.__class__.__name__
                    raise KeycloakError("cannot reach Keycloak at %s (%s): check url and that Keycloak is running "
                                        "and reachable from this host" % (self.url, why))
                if attempt == 1 and isinstance(exc, STALE_ERRORS):
                    continue
            self._sleep(self.backoff * (2 ** (attempt - 1)))

    # --- authentication --------------------------------------------------------------------

    def _grant(self):
        if self._refresh_token:
            form = {'grant_type': 'refresh_token', 'refresh_token': self._refresh_token, 'client_id': self.client_id}
            if self._client_secret:
                form['client_secret'] = self._client_secret
            self._refresh_token = None
            if self._token_request(form, quiet=True):
                return
        if self.username and self._password:
            form = {'grant_type': 'password', 'username': self.username, 'password': self._password,
                    'client_id': self.client_id}
        else:
            form = {'grant_type': 'client_credentials', 'client_id': self.client_id}
        if self._client_secret:
            form['client_secret'] = self._client_secret
        self._token_request(form)

    def _token_request(self, form, quiet=False):
        path = '/realms/%s/protocol/openid-connect/token' % q(self.auth_realm)
        status, _resp, raw = self._send('POST', path, urlencode(form),
                                        {'Content-Type': 'application/x-www-form-urlencoded',
                                         'Accept': 'application/json'})
        data = _loads(raw)
        if status == 200 and isinstance(data, dict) and data.get('access_token'):
            self._token = data['access_token']
            self._refresh_token = data.get('refresh_token')
            self._expires = time.time() + float(data.get('expires_in') or 60)
            return True
        if quiet:
            return False
        who = ("user %r" % self.username) if form.get('grant_type') == 'password' else ("client %r" % self.client_id)
        detail = _error_text(data, raw)
        if status == 404:
            raise KeycloakError("cannot log in to Keycloak at %s: realm %r not found (HTTP 404); check auth_realm "
                                "and url" % (self.url, self.auth_realm), status)
        if status in (400, 401):
            if form.get('grant_type') == 'password' and (data or {}).get('error') == 'invalid_grant':
                fix = 'check auth_username and auth_password'
            else:
                fix = 'check auth_client_id and auth_client_secret'
            raise KeycloakError("cannot log in to Keycloak at %s as %s in realm %r: %s; %s"
                                % (self.url, who, self.auth_realm, detail, fix), status)
        raise KeycloakError("cannot log in to Keycloak at %s as %s: HTTP %s: %s" % (self.url, who, status, detail),
                            status)

    def _auth_header(self):
        expiring = self._expires is not None and time.time() > self._expires - 15
        if not self._fixed_token and (self._token is None or expiring):
            self._grant()
        return 'Bearer ' + self._token

    def login(self):
        """Obtain a token now (fails early with a clear message on bad credentials or URL)."""
        self._auth_header()

    # --- API -------------------------------------------------------------------------------

    def request(self, method, path, query=None, body=None, missing_ok=False):
        """Call ``/admin/realms`` + ``path``; returns the decoded JSON (or None), raises KeycloakError.

        ``missing_ok``: a 404 returns None instead of failing.
        """
        full = '/admin/realms' + path
        if query:
            full += '?' + urlencode(query)
        payload = None if body is None else json.dumps(body)
        for attempt in (1, 2):
            headers = {'Authorization': self._auth_header(), 'Accept': 'application/json'}
            if payload is not None:
                headers['Content-Type'] = 'application/json'
            status, resp, raw = self._send(method, full, payload, headers)
            if status == 401 and attempt == 1 and not self._fixed_token:
                self._token = None  # expired or revoked: log in again once
                continue
            break
        if 200 <= status < 300:
            location = resp.getheader('Location')
            data = _loads(raw)
            if data is None and location:
                return {'id': location.rstrip('/').rsplit('/', 1)[-1]}
            return data
        if status == 404 and missing_ok:
            return None
        detail = _error_text(_loads(raw), raw)
        if status == 401:
            if self._fixed_token:
                raise KeycloakError("Keycloak rejected the given token (expired or not valid for %s): pass a fresh "
                                    "token or auth_username/auth_password" % self.url, status)
            raise KeycloakError("Keycloak rejected the credentials for %s %s: %s" % (method, full, detail), status)
        if status == 403:
            raise KeycloakError("the Keycloak account is not allowed to %s %s (HTTP 403): give it the realm-admin "
                                "role (or admin in the master realm to create realms)" % (method, full), status)
        raise KeycloakError("Keycloak rejected %s %s: HTTP %s: %s" % (method, full, status, detail), status)

    def paged(self, path, query=None, page=500):
        """All items of a list endpoint that takes ``first``/``max``."""
        out = []
        first = 0
        while True:
            params = dict(query or {})
            params.update({'first': first, 'max': page})
            chunk = self.get(path, params) or []
            out.extend(chunk)
            if len(chunk) < page:
                return out
            first += page


def _loads(raw):
    if not raw:
        return None
    try:
        return json.loads(raw.decode('utf-8'))
    except ValueError:
        return None


def admin_from_params(params):
    """A :class:`KeycloakAdmin` from a module's parameters (the options of ``CONNECTION_ARG_SPEC``)."""
    return KeycloakAdmin(params['url'], auth_realm=params['auth_realm'], username=params['auth_username'],
                         password=params['auth_password'], client_id=params['auth_client_id'],
                         client_secret=params['auth_client_secret'], token=params['token'],
                         ca_path=params['ca_path'], validate_certs=params['validate_certs'],
                         timeout=params['timeout'])
