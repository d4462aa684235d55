# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Reconcile a Keycloak realm with a realm representation (the JSON Keycloak's export writes).

Pure logic: the comparison helpers need nothing but Python, and :class:`RealmImporter` talks to
Keycloak only through the object it is given (``get/post/put/delete/paged`` like
:class:`keycloak_admin.KeycloakAdmin`), so unit tests drive it with a fake.

Comparison rule: only what the file says is compared ("desired is a subset of current"), because
Keycloak fills in dozens of defaults the file never mentions.  Lists of strings are compared as
sets (Keycloak does not keep their order), lists of named objects by name.  A user's or group's
``groups``/``realmRoles``/``clientRoles`` and a client's scope lists, when present in the file, are
the whole truth for that object (extra ones are removed; the realm's default role is never taken
away).  Whole objects the file does not mention are deleted only with ``prune``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_admin import KeycloakError, q

SECRET_MASK = '**********'
RESOURCE_TYPES = ('realm', 'roles', 'groups', 'client_scopes', 'clients', 'users')
COUNTERS = ('created', 'updated', 'unchanged', 'deleted')
USER_BATCH = 500   # users per partialImport request
USER_PAGE = 1000   # users per page when listing
READ_WORKERS = 4   # parallel connections for the independent reads of a rerun
# What GET /users?briefRepresentation=true returns (Keycloak 26), besides id and timestamps.
BRIEF_USER_FIELDS = frozenset(('username', 'firstName', 'lastName', 'email', 'emailVerified', 'enabled', 'attributes'))

# Keys whose values are secrets anywhere in a representation.
SECRET_KEYS = frozenset(('secret', 'password', 'clientsecret', 'client_secret', 'secretdata', 'hashedsaltedvalue',
                         'salt', 'registrationaccesstoken', 'privatekey', 'value'))
# 'value' is secret only inside credentials; elsewhere (e.g. attributes) it is data.
_VALUE_IS_SECRET_UNDER = frozenset(('credentials',))

# Realm keys that are not "settings": collections reconciled on their own, or read-only/derived.
REALM_NOT_SETTINGS = frozenset((
    'id', 'users', 'groups', 'roles', 'clients', 'clientScopes', 'components', 'authenticationFlows',
    'authenticatorConfig', 'requiredActions', 'identityProviders', 'identityProviderMappers', 'scopeMappings',
    'clientScopeMappings', 'keycloakVersion', 'defaultRole', 'federatedUsers', 'defaultDefaultClientScopes',
    'defaultOptionalClientScopes', 'clientPolicies', 'clientProfiles', 'localizationTexts', 'organizations',
    'applications', 'oauthClients', 'clientTemplates', 'userFederationProviders', 'userFederationMappers',
    'defaultGroups', 'defaultRoles', 'protocolMappers', 'messageBundle',
))
USER_IGNORE = frozenset(('id', 'createdTimestamp', 'credentials', 'groups', 'realmRoles', 'clientRoles', 'access',
                         'notBefore', 'totp', 'disableableCredentialTypes', 'federatedIdentities', 'self',
                         'userProfileMetadata', 'serviceAccountClientId', 'clientConsents', 'origin',
                         'federationLink', 'applicationRoles', 'socialLinks'))
CLIENT_IGNORE = frozenset(('id', 'secret', 'protocolMappers', 'defaultClientScopes', 'optionalClientScopes',
                           'access', 'registrationAccessToken', 'authorizationSettings', 'defaultRoles'))
SCOPE_IGNORE = frozenset(('id', 'protocolMappers'))
ROLE_IGNORE = frozenset(('id', 'containerId', 'clientRole', 'composite', 'composites'))
GROUP_IGNORE = frozenset(('id', 'path', 'parentId', 'subGroups', 'subGroupCount', 'realmRoles', 'clientRoles',
                          'access'))
MAPPER_IGNORE = frozenset(('id',))

BUILTIN_CLIENTS = frozenset(('account', 'account-console', 'admin-cli', 'broker', 'realm-management',
                             'security-admin-console'))
BUILTIN_SCOPES = frozenset(('acr', 'address', 'basic', 'email', 'microprofile-jwt', 'offline_access', 'organization',
                            'phone', 'profile', 'role_list', 'roles', 'saml_organization', 'service_account',
                            'web-origins'))
BUILTIN_REALM_ROLES = frozenset(('offline_access', 'uma_authorization'))
USER_PROFILE_PROVIDER = 'org.keycloak.userprofile.UserProfileProvider'
USER_PROFILE_KEY = 'kc.user.profile.config'


class RealmError(Exception):
    """The realm representation is unusable; the message says what to fix."""


# --- input ------------------------------------------------------------------------------------

def read_realm_file(path):
    try:
        with open(path, 'rb') as fh:
            raw = fh.read()
    except (IOError, OSError) as exc:
        raise RealmError("cannot read src %s: %s" % (path, exc.strerror or exc))
    try:
        return json.loads(raw.decode('utf-8-sig'))
    except UnicodeDecodeError:
        raise RealmError("src %s is not UTF-8 text; give a realm export (JSON)" % path)
    except ValueError as exc:
        raise RealmError("src %s is not valid JSON (%s); give a realm representation as Keycloak exports it"
                         % (path, exc))


def _check_list(rep, key, name_key, where):
    items = rep.get(key)
    if items is None:
        return
    if not isinstance(items, list):
        raise RealmError("%s%s must be a list" % (where, key))
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get(name_key):
            raise RealmError("%s%s[%d] must be an object with a %r" % (where, key, i, name_key))


def _check_groups(groups, where):
    if groups is None:
        return
    if not isinstance(groups, list):
        raise RealmError("%s must be a list" % where)
    for i, g in enumerate(groups):
        if not isinstance(g, dict) or not g.get('name'):
            raise RealmError("%s[%d] must be an object with a 'name'" % (where, i))
        _check_groups(g.get('subGroups'), "%s[%d].subGroups" % (where, i))


def load_realm(data, realm=None):
    """Validate a realm representation and return a copy with the realm name applied."""
    if not isinstance(data, dict):
        raise RealmError("the realm representation must be a JSON object (a realm as Keycloak exports it), got %s"
                         % type(data).__name__)
    rep = copy.deepcopy(data)
    if realm:
        rep['realm'] = realm
    if not rep.get('realm') or not isinstance(rep['realm'], str):
        raise RealmError("the realm representation has no 'realm' name: add it or pass the realm option")
    _check_list(rep, 'users', 'username', '')
    _check_list(rep, 'clients', 'clientId', '')
    _check_list(rep, 'clientScopes', 'name', '')
    _check_groups(rep.get('groups'), 'groups')
    roles = rep.get('roles')
    if roles is not None:
        if not isinstance(roles, dict):
            raise RealmError("roles must be an object with 'realm' (a list) and/or 'client' (clientId -> list)")
        _check_list(roles, 'realm', 'name', 'roles.')
        client_roles = roles.get('client') or {}
        if not isinstance(client_roles, dict):
            raise RealmError("roles.client must map clientId to a list of roles")
        for cid in client_roles:
            _check_list(client_roles, cid, 'name', 'roles.client.')
    for i, user in enumerate(rep.get('users') or []):
        for key in ('groups', 'realmRoles'):
            if key in user and not isinstance(user[key], list):
                raise RealmError("users[%d] (%s).%s must be a list" % (i, user['username'], key))
        if 'attributes' in user and not isinstance(user['attributes'], dict):
            raise RealmError("users[%d] (%s).attributes must be an object" % (i, user['username']))
    return rep


# --- comparison -------------------------------------------------------------------------------

def canon(value):
    """A scalar as Keycloak stores it in string-typed places ("true", "300")."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _empty(value):
    return value is None or value == '' or value == [] or value == {}


def _name_of(item):
    for key in ('name', 'clientId', 'alias', 'username'):
        if isinstance(item, dict) and key in item:
            return item[key]
    return None


def same(desired, current):
    """True when ``current`` already has everything ``desired`` says (see the module docstring)."""
    if desired is None:
        return True
    if isinstance(desired, dict):
        current = {} if _empty(current) else current
        if not isinstance(current, dict):
            return False
        return all(same(v, current.get(k)) for k, v in desired.items())
    if _empty(current):
        return _empty(desired)
    if isinstance(desired, list):
        if not isinstance(current, list) or len(desired) != len(current):
            return False
        if all(not isinstance(x, (dict, list)) for x in desired + current):
            return sorted(canon(x) for x in desired) == sorted(canon(x) for x in current)
        names = [_name_of(x) for x in desired]
        if all(n is not None for n in names):
            by_name = dict((_name_of(x), x) for x in current)
            return all(n in by_name and same(x, by_name[n]) for n, x in zip(names, desired))
        return all(same(d, c) for d, c in zip(desired, current))
    if isinstance(current, (dict, list)):
        return False
    return canon(desired) == canon(current)


def narrow(desired, current):
    """(before, after) limited to what differs, descending into dicts (``attributes``, ``config``)."""
    if isinstance(desired, dict) and isinstance(current, dict):
        before, after = {}, {}
        for key, value in desired.items():
            if not same(value, current.get(key)):
                b, a = narrow(value, current.get(key))
                before[key], after[key] = b, a
        return before, after
    return current, desired


def field_delta(desired, current, ignore=()):
    """(before, after) of the top-level fields of ``desired`` that ``current`` lacks or has otherwise."""
    before, after = {}, {}
    for key, value in desired.items():
        if key in ignore or same(value, current.get(key)):
            continue
        b, a = narrow(value, current.get(key))
        before[key], after[key] = b, a
    return before, after


def multi_attrs(attrs):
    """User/group/role attributes: every value a list of strings."""
    out = {}
    for key, value in (attrs or {}).items():
        if value is None:
            out[key] = []
        elif isinstance(value, list):
            out[key] = [canon(v) for v in value]
        else:
            out[key] = [canon(value)]
    return out


def single_attrs(attrs):
    """Client/client-scope attributes and mapper config: every value one string."""
    return dict((k, canon(v)) for k, v in (attrs or {}).items() if v is not None)


def mask(obj, _parent=None):
    """A copy with every secret value replaced by the mask."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            low = key.lower()
            secret = low in SECRET_KEYS and (low != 'value' or _parent in _VALUE_IS_SECRET_UNDER)
            if secret and value is not None:
                out[key] = SECRET_MASK
            else:
                out[key] = mask(value, 'credentials' if low == 'credentials' else _parent)
        return out
    if isinstance(obj, list):
        return [mask(x, _parent) for x in obj]
    return obj


def set_delta(desired, current):
    desired, current = set(desired), set(current)
    return sorted(desired - current), sorted(current - desired)


def walk_groups(groups, parent=''):
    """(path, group, parent_path) for a nested group list, parents first."""
    for g in groups or []:
        path = parent + '/' + g['name']
        yield path, g, parent
        yield from walk_groups(g.get('subGroups'), path)


def user_profile_config(rep):
    """The declarative user profile carried in an export's components, parsed; None when absent."""
    comps = (rep.get('components') or {}).get(USER_PROFILE_PROVIDER) or []
    for comp in comps:
        values = (comp.get('config') or {}).get(USER_PROFILE_KEY)
        if values:
            raw = values[0] if isinstance(values, list) else values
            try:
                return json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                raise RealmError("components.%s config %s is not valid JSON" % (USER_PROFILE_PROVIDER, USER_PROFILE_KEY))
    return None


def password_credential(user):
    for cred in user.get('credentials') or []:
        if cred.get('type', 'password') == 'password' and cred.get('value'):
            return cred
    return None


def creation_payload(rep, manage):
    """What ``POST /admin/realms`` gets when the realm is missing: the file, less unmanaged types."""
    body = copy.deepcopy(rep)
    drop = {'users': ('users',), 'groups': ('groups',), 'clients': ('clients',), 'client_scopes': ('clientScopes',),
            'roles': ('roles',)}
    for rtype, keys in drop.items():
        if rtype not in manage:
            for key in keys:
                body.pop(key, None)
    if 'users' in manage:
        for user in body.get('users') or []:
            if 'attributes' in user:
                user['attributes'] = multi_attrs(user['attributes'])
    return body


def count_groups(groups):
    return sum(1 for _path in walk_groups(groups))


# --- result ---------------------------------------------------------------------------------------

class Result:
    def __init__(self, realm, want_diff):
        self.realm = realm
        self.want_diff = want_diff
        self.counts = dict((c, dict((t, 0) for t in RESOURCE_TYPES)) for c in COUNTERS)
        self.diffs = []
        self.changes = []

    def record(self, rtype, what, name, before=None, after=None, fields=None):
        self.counts[what][rtype] += 1
        if what == 'unchanged':
            return
        label = '%s/%s' % (rtype, name)
        note = '%s %s' % (what, label)
        if fields:
            note += ' (%s)' % ', '.join(sorted(fields))
        self.changes.append(note)
        if self.want_diff:
            self.diffs.append({'before_header': label, 'after_header': label,
                               'before': mask(before if before is not None else {}),
                               'after': mask(after if after is not None else {})})

    @property
    def changed(self):
        return any(self.counts[c][t] for c in ('created', 'updated', 'deleted') for t in RESOURCE_TYPES)

    def as_dict(self):
        out = {'changed': self.changed, 'realm': self.realm, 'changes': self.changes}
        out.update(self.counts)
        if self.want_diff:
            out['diff'] = self.diffs
        return out


# --- the importer ------------------------------------------------------------------------------

class RealmImporter:
    """Brings one realm in line with a representation; ``run()`` returns a :class:`Result`."""

    def __init__(self, api, rep, manage=RESOURCE_TYPES, prune=False, update_passwords=False, check_mode=False,
                 diff=False):
        self.api = api
        self.rep = rep
        self.name = rep['realm']
        self.base = '/' + q(self.name)
        self.manage = tuple(manage)
        self.prune = prune
        self.update_passwords = update_passwords
        self.check = check_mode
        self.result = Result(self.name, diff)
        self.export = None
        self.client_uuid = {}      # clientId -> id
        self.scope_ids = {}        # client scope name -> id
        self.group_ids = {}        # path -> id
        self.roles = {}            # (None | clientId, role name) -> role representation (with id)

    # writes go through here so that check mode never changes anything
    def _w(self, method, path, body=None, query=None):
        if self.check:
            return None
        return self.api.request(method, self.base + path, query=query, body=body)

    def _fetch(self, jobs):
        """Run independent reads concurrently; returns {key: result}.

        A job is ``(key, path, query, page, start, follow)``: one GET when ``page`` is None, otherwise the
        page at ``start``, and when ``follow`` the pages after it for as long as they come back full.
        Each worker thread has its own connection (``api.clone()``); a client without ``clone`` (the unit
        tests' fake) is used sequentially.
        """
        results = {}
        if not hasattr(self.api, 'clone'):
            for key, path, query, page, start, follow in jobs:
                if page is None:
                    results[key] = self.api.get(path, query)
                elif follow and start == 0:
                    results[key] = self.api.paged(path, query, page=page)
                else:
                    results[key] = self.api.get(path, dict(query or {}, first=start, max=page)) or []
            return results
        local = threading.local()
        made = []
        lock = threading.Lock()

        def fetch(path, query, page, start):
            api = getattr(local, 'api', None)
            if api is None:
                api = local.api = self.api.clone()
                with lock:
                    made.append(api)
            if page is None:
                return api.get(path, query)
            return api.get(path, dict(query or {}, first=start, max=page)) or []

        try:
            with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
                pending = {}
                for job in jobs:
                    key, path, query, page, start, follow = job
                    if page is not None:
                        results[key] = []
                    pending[pool.submit(fetch, path, query, page, start)] = job
                while pending:
                    done, _rest = wait(list(pending), return_when=FIRST_COMPLETED)
                    for fut in done:
                        key, path, query, page, start, follow = pending.pop(fut)
                        value = fut.result()
                        if page is None:
                            results[key] = value
                            continue
                        results[key].extend(value)
                        if follow and len(value) >= page:
                            nxt = (key, path, query, page, start + page, True)
                            pending[pool.submit(fetch, path, query, page, start + page)] = nxt
        finally:
            for api in made:
                self.api.requests += api.requests
                api.close()
        return results

    def run(self):
        current = self.api.get(self.base, missing_ok=True)
        if current is None:
            self._create_realm()
            return self.result
        self._load_export()
        steps = (('realm', self._sync_realm), ('client_scopes', self._sync_client_scopes),
                 ('clients', self._sync_clients), ('roles', self._sync_roles), ('groups', self._sync_groups),
                 ('users', self._sync_users))
        for rtype, step in steps:
            if rtype in self.manage:
                step()
        return self.result

    # --- whole realm -------------------------------------------------------------------------

    def _create_realm(self):
        body = creation_payload(self.rep, self.manage)
        if not self.check:
            self.api.post('', body)
        r = self.result
        settings = dict((k, v) for k, v in body.items() if k not in REALM_NOT_SETTINGS)
        r.record('realm', 'created', self.name, None, settings)
        roles = body.get('roles') or {}
        for role in roles.get('realm') or []:
            r.record('roles', 'created', role['name'], None, role)
        for cid, items in sorted((roles.get('client') or {}).items()):
            for role in items or []:
                r.record('roles', 'created', '%s/%s' % (cid, role['name']), None, role)
        for path, group, _parent in walk_groups(body.get('groups')):
            r.record('groups', 'created', path.lstrip('/'), None,
                     dict((k, v) for k, v in group.items() if k != 'subGroups'))
        for scope in body.get('clientScopes') or []:
            r.record('client_scopes', 'created', scope['name'], None, scope)
        for client in body.get('clients') or []:
            r.record('clients', 'created', client['clientId'], None, client)
        for user in body.get('users') or []:
            r.record('users', 'created', user['username'], None, user)

    def _load_export(self):
        self.export = self.api.post(self.base + '/partial-export',
                                    query={'exportClients': 'true', 'exportGroupsAndRoles': 'true'}) or {}
        self.client_uuid = dict((c['clientId'], c['id']) for c in self.export.get('clients') or [])
        self.scope_ids = dict((s['name'], s['id']) for s in self.export.get('clientScopes') or [])
        self.group_ids = dict((p, g['id']) for p, g, _parent in walk_groups(self.export.get('groups')))
        roles = self.export.get('roles') or {}
        for role in roles.get('realm') or []:
            self.roles[(None, role['name'])] = role
        for cid, items in (roles.get('client') or {}).items():
            for role in items or []:
                self.roles[(cid, role['name'])] = role

    # --- realm settings ----------------------------------------------------------------------

    def _sync_realm(self):
        desired = dict((k, v) for k, v in self.rep.items() if k not in REALM_NOT_SETTINGS)
        if isinstance(desired.get('smtpServer'), dict):
            # Exports mask the SMTP password; it cannot be compared.
            desired['smtpServer'] = dict((k, v) for k, v in desired['smtpServer'].items() if k != 'password')
        desired['realm'] = self.name
        before, after = field_delta(desired, self.export)
        fields = set(after)
        if fields:
            settings = dict((k, desired[k]) for k in fields)
            settings['realm'] = self.name
            self._w('PUT', '', settings)
        profile = user_profile_config(self.rep)
        if profile is not None:
            cur_profile = self.api.get(self.base + '/users/profile') or {}
            policy = 'unmanagedAttributePolicy'
            if not same(profile, cur_profile) or profile.get(policy) != cur_profile.get(policy):
                before['userProfile'], after['userProfile'] = cur_profile, profile
                fields.add('userProfile')
                self._w('PUT', '/users/profile', profile)
        self.result.record('realm', 'updated' if fields else 'unchanged', self.name, before, after, fields)

    # --- protocol mappers (clients and client scopes) -------------------------------------------

    def _sync_mappers(self, path, desired, current):
        """Returns the (before, after) of mappers that differ; writes the changes."""
        if desired is None:
            return {}, {}
        cur = dict((m['name'], m) for m in current or [])
        want = dict((m['name'], m) for m in desired)
        before, after = {}, {}
        for name, mapper in sorted(want.items()):
            body = dict((k, v) for k, v in mapper.items() if k != 'id')
            if 'config' in body:
                body['config'] = single_attrs(body['config'])
            old = cur.get(name)
            if old is None:
                before[name], after[name] = None, body
                self._w('POST', path + '/protocol-mappers/models', body)
            else:
                b, a = field_delta(body, old, MAPPER_IGNORE)
                if a:
                    before[name], after[name] = b, a
                    merged = dict(old)
                    merged.update(body)
                    self._w('PUT', '%s/protocol-mappers/models/%s' % (path, q(old['id'])), merged)
        if self.prune:
            for name, old in sorted(cur.items()):
                if name not in want:
                    before[name], after[name] = old, None
                    self._w('DELETE', '%s/protocol-mappers/models/%s' % (path, q(old['id'])))
        return before, after

    # --- client scopes -----------------------------------------------------------------------------

    def _sync_client_scopes(self):
        current = dict((s['name'], s) for s in self.export.get('clientScopes') or [])
        desired = self.rep.get('clientScopes')
        if desired is None:
            return
        for scope in desired:
            name = scope['name']
            body = dict((k, v) for k, v in scope.items() if k != 'id')
            if 'attributes' in body:
                body['attributes'] = single_attrs(body['attributes'])
            old = current.get(name)
            if old is None:
                created = self._w('POST', '/client-scopes', body)
                if created:
                    self.scope_ids[name] = created['id']
                self.result.record('client_scopes', 'created', name, None, body)
                continue
            before, after = field_delta(body, old, SCOPE_IGNORE)
            if after:
                merged = dict((k, v) for k, v in old.items() if k != 'protocolMappers')
                merged.update(dict((k, v) for k, v in body.items() if k != 'protocolMappers'))
                self._w('PUT', '/client-scopes/' + q(old['id']), merged)
            mb, ma = self._sync_mappers('/client-scopes/' + q(old['id']), body.get('protocolMappers'),
                                        old.get('protocolMappers'))
            if ma:
                before['protocolMappers'], after['protocolMappers'] = mb, ma
            self._record_update('client_scopes', name, before, after)
        if self.prune:
            want = set(s['name'] for s in desired)
            for name, old in sorted(current.items()):
                if name not in want and name not in BUILTIN_SCOPES:
                    self._w('DELETE', '/client-scopes/' + q(old['id']))
                    self.result.record('client_scopes', 'deleted', name, old, None)

    def _record_update(self, rtype, name, before, after):
        if after:
            self.result.record(rtype, 'updated', name, before, after, set(after))
        else:
            self.result.record(rtype, 'unchanged', name)

    # --- clients ---------------------------------------------------------------------------------

    def _client_body(self, client):
        body = dict((k, v) for k, v in client.items() if k != 'id')
        if 'attributes' in body:
            body['attributes'] = single_attrs(body['attributes'])
        if body.get('secret') == SECRET_MASK:
            del body['secret']
        return body

    def _sync_scope_list(self, cid, uuid, kind, desired, current):
        """Default or optional client scopes of one client; exact when the file lists them."""
        if desired is None:
            return None
        add, remove = set_delta(desired, current or [])
        path = '/clients/%s/%s-client-scopes/' % (q(uuid), kind)
        for name in add:
            sid = self.scope_ids.get(name)
            if sid is None and not self.check:
                raise KeycloakError("client %s lists %s client scope %r, which the realm does not have: add it to "
                                    "clientScopes" % (cid, kind, name))
            self._w('PUT', path + q(sid or name))
        for name in remove:
            if name in self.scope_ids:
                self._w('DELETE', path + q(self.scope_ids[name]))
        return add or remove

    def _sync_clients(self):
        desired = self.rep.get('clients')
        if desired is None:
            return
        current = dict((c['clientId'], c) for c in self.export.get('clients') or [])
        # Secrets are masked in the export: read those the file sets, all at once.
        reads = []
        for client in desired:
            old = current.get(client['clientId'])
            if old and self._client_body(client).get('secret') and not old.get('publicClient') \
                    and not client.get('publicClient'):
                reads.append((client['clientId'], self.base + '/clients/%s/client-secret' % q(old['id']),
                              None, None, 0, False))
        secrets = self._fetch(reads)
        for client in desired:
            cid = client['clientId']
            body = self._client_body(client)
            old = current.get(cid)
            if old is None:
                created = self._w('POST', '/clients', body)
                if created:
                    self.client_uuid[cid] = created['id']
                self.result.record('clients', 'created', cid, None, body)
                continue
            uuid = old['id']
            before, after = field_delta(body, old, CLIENT_IGNORE)
            secret = body.get('secret')
            if cid in secrets:
                if (secrets[cid] or {}).get('value') != secret:
                    before['secret'], after['secret'] = SECRET_MASK, SECRET_MASK + ' (new value)'
            if after:
                # The export masks secrets: never send its value back.
                merged = dict((k, v) for k, v in old.items() if k not in ('protocolMappers', 'access', 'secret'))
                merged.update(dict((k, v) for k, v in body.items() if k not in ('protocolMappers', 'secret')))
                if 'secret' in after:
                    merged['secret'] = secret
                if 'attributes' in body:
                    attrs = dict(old.get('attributes') or {})
                    attrs.update(body['attributes'])
                    merged['attributes'] = attrs
                self._w('PUT', '/clients/' + q(uuid), merged)
            mb, ma = self._sync_mappers('/clients/' + q(uuid), body.get('protocolMappers'), old.get('protocolMappers'))
            if ma:
                before['protocolMappers'], after['protocolMappers'] = mb, ma
            for kind, key in (('default', 'defaultClientScopes'), ('optional', 'optionalClientScopes')):
                if self._sync_scope_list(cid, uuid, kind, body.get(key), old.get(key)):
                    before[key], after[key] = sorted(old.get(key) or []), sorted(body.get(key))
            self._record_update('clients', cid, before, after)
        if self.prune:
            want = set(c['clientId'] for c in desired)
            for cid, old in sorted(current.items()):
                if cid not in want and cid not in BUILTIN_CLIENTS and not cid.endswith('-realm'):
                    self._w('DELETE', '/clients/' + q(old['id']))
                    self.result.record('clients', 'deleted', cid, old, None)

    # --- roles -----------------------------------------------------------------------------------

    def _role_ref(self, cid, name, purpose):
        role = self.roles.get((cid, name))
        if role is not None and role.get('id'):
            return role
        if self.check:
            return {'name': name}
        if cid is None:
            role = self.api.get(self.base + '/roles/' + q(name), missing_ok=True)
        else:
            uuid = self.client_uuid.get(cid)
            role = uuid and self.api.get(self.base + '/clients/%s/roles/%s' % (q(uuid), q(name)), missing_ok=True)
        if not role:
            where = ('realm role %r' % name) if cid is None else ('role %r of client %r' % (name, cid))
            raise KeycloakError("%s refers to %s, which neither the realm nor the file defines" % (purpose, where))
        self.roles[(cid, name)] = role
        return role

    def _client_path(self, cid, purpose):
        uuid = self.client_uuid.get(cid)
        if uuid is None:
            if self.check:
                return None
            raise KeycloakError("%s refers to client %r, which neither the realm nor the file defines" % (purpose, cid))
        return '/clients/' + q(uuid)

    def _role_body(self, role):
        body = dict((k, v) for k, v in role.items() if k not in ('id', 'containerId', 'composites', 'composite'))
        if 'attributes' in body:
            body['attributes'] = multi_attrs(body['attributes'])
        return body

    def _sync_roles(self):
        roles = self.rep.get('roles')
        if roles is None:
            return
        todo = []  # (cid, desired role) whose composites to reconcile once every role exists
        for cid, items in [(None, roles.get('realm'))] + sorted((roles.get('client') or {}).items()):
            if items is None:
                continue
            container = '' if cid is None else self._client_path(cid, 'roles.client.%s' % cid)
            cur = dict((n, r) for (c, n), r in self.roles.items() if c == cid)
            for role in items:
                name = role['name']
                body = self._role_body(role)
                old = cur.get(name)
                if old is None:
                    if container is not None:
                        self._w('POST', container + '/roles', body)
                    self.result.record('roles', 'created', _role_label(cid, name), None, role)
                    todo.append((cid, role, True))
                    continue
                before, after = field_delta(body, old, ROLE_IGNORE)
                if after:
                    merged = dict((k, v) for k, v in old.items() if k not in ('composites',))
                    merged.update(body)
                    self._w('PUT', '/roles-by-id/' + q(old['id']), merged)
                todo.append((cid, role, False, before, after))
            if self.prune and container is not None:
                want = set(r['name'] for r in items)
                for name, old in sorted(cur.items()):
                    if name in want or (cid is None and (name in BUILTIN_REALM_ROLES or
                                                         name == 'default-roles-' + self.name)):
                        continue
                    self._w('DELETE', '/roles-by-id/' + q(old['id']))
                    self.result.record('roles', 'deleted', _role_label(cid, name), old, None)
        for item in todo:
            cid, role, created = item[0], item[1], item[2]
            name = role['name'] if cid is None else '%s/%s' % (cid, role['name'])
            comp_before, comp_after = self._sync_composites(cid, role, created)
            if created:
                continue
            before, after = item[3], item[4]
            if comp_after is not None:
                before['composites'], after['composites'] = comp_before, comp_after
            self._record_update('roles', name, before, after)

    def _composite_keys(self, composites):
        keys = set((None, n) for n in (composites or {}).get('realm') or [])
        for cid, names in ((composites or {}).get('client') or {}).items():
            keys.update((cid, n) for n in names or [])
        return keys

    def _sync_composites(self, cid, role, created):
        if 'composites' not in role:
            return None, None
        want = self._composite_keys(role.get('composites'))
        old = self.roles.get((cid, role['name'])) or {}
        have = set() if created else self._composite_keys(old.get('composites'))
        add, remove = want - have, have - want
        if not add and not remove:
            return None, None
        label = 'roles.%s%s.composites' % ('realm' if cid is None else 'client.' + cid, '')
        if not self.check:
            rid = self._role_ref(cid, role['name'], label)['id']
            if add:
                self._w('POST', '/roles-by-id/%s/composites' % q(rid),
                        [self._role_ref(c, n, label) for c, n in sorted(add, key=_role_sort)])
            if remove:
                self._w('DELETE', '/roles-by-id/%s/composites' % q(rid),
                        [self._role_ref(c, n, label) for c, n in sorted(remove, key=_role_sort)])
        return _role_names(have), _role_names(want)

    # --- role mappings (groups and users) ----------------------------------------------------------

    def _mapping_changes(self, want_realm, want_client, have_realm, have_client, keep_default=False):
        """What to add and remove for one holder; None for a key the file does not give."""
        changes = {}
        if want_realm is not None:
            add, remove = set_delta(want_realm, have_realm or [])
            if keep_default:
                remove = [r for r in remove if r != 'default-roles-' + self.name]
            if add or remove:
                changes[None] = (add, remove)
        for cid, names in sorted((want_client or {}).items()):
            add, remove = set_delta(names or [], (have_client or {}).get(cid) or [])
            if add or remove:
                changes[cid] = (add, remove)
        return changes

    def _apply_mappings(self, holder_path, changes, purpose):
        for cid, (add, remove) in sorted(changes.items(), key=lambda kv: kv[0] or ''):
            if cid is None:
                path = holder_path + '/role-mappings/realm'
            else:
                client = self._client_path(cid, purpose)
                if client is None:
                    continue
                path = holder_path + '/role-mappings/clients/' + q(self.client_uuid[cid])
            if self.check:
                continue
            if add:
                self._w('POST', path, [self._role_ref(cid, n, purpose) for n in add])
            if remove:
                self._w('DELETE', path, [self._role_ref(cid, n, purpose) for n in remove])

    # --- groups ----------------------------------------------------------------------------------

    def _sync_groups(self):
        desired = self.rep.get('groups')
        if desired is None:
            return
        current = dict((p, g) for p, g, _parent in walk_groups(self.export.get('groups')))
        for path, group, parent in walk_groups(desired):
            name = path.lstrip('/')
            body = {'name': group['name']}
            if 'attributes' in group:
                body['attributes'] = multi_attrs(group['attributes'])
            old = current.get(path)
            purpose = 'group %s' % path
            if old is None:
                if parent:
                    pid = self.group_ids.get(parent)
                    created = pid and self._w('POST', '/groups/%s/children' % q(pid), body)
                else:
                    created = self._w('POST', '/groups', body)
                if created:
                    self.group_ids[path] = created['id']
                    changes = self._mapping_changes(group.get('realmRoles'), group.get('clientRoles'), [], {})
                    self._apply_mappings('/groups/' + q(created['id']), changes, purpose)
                self.result.record('groups', 'created', name, None,
                                   dict((k, v) for k, v in group.items() if k != 'subGroups'))
                continue
            before, after = field_delta(body, old, GROUP_IGNORE)
            if after:
                merged = {'id': old['id'], 'name': body['name'],
                          'attributes': dict(old.get('attributes') or {}, **body.get('attributes', {}))}
                self._w('PUT', '/groups/' + q(old['id']), merged)
            changes = self._mapping_changes(group.get('realmRoles'), group.get('clientRoles'),
                                            old.get('realmRoles'), old.get('clientRoles'))
            if changes:
                self._apply_mappings('/groups/' + q(old['id']), changes, purpose)
                _show_mapping_changes(before, after, group, old)
            self._record_update('groups', name, before, after)
        if self.prune:
            want = set(p for p, _group, _parent in walk_groups(desired))
            for path, old in sorted(current.items()):
                parent = path.rsplit('/', 1)[0]
                if path not in want and (not parent or parent in want):
                    self._w('DELETE', '/groups/' + q(old['id']))
                    self.result.record('groups', 'deleted', path.lstrip('/'), old, None)
                    for gone in [p for p in self.group_ids if p == path or p.startswith(path + '/')]:
                        del self.group_ids[gone]

    # --- users -----------------------------------------------------------------------------------

    def _user_body(self, user):
        body = dict((k, v) for k, v in user.items() if k != 'id')
        body['username'] = user['username'].lower()
        if isinstance(body.get('email'), str):
            body['email'] = body['email'].lower()
        if 'attributes' in body:
            body['attributes'] = multi_attrs(body['attributes'])
        return body

    def _user_reads(self, desired):
        """The jobs that read users, group members and role members for the users step."""
        # The brief listing is several times faster (Keycloak 26 builds the user-profile view of each user
        # either way) and has every field a realm file usually sets; ask for the full one only when needed.
        full = any(k not in BRIEF_USER_FIELDS and k not in USER_IGNORE for u in desired for k in u)
        query = {'briefRepresentation': 'false' if full else 'true'}
        count = self.api.get(self.base + '/users/count') or 0
        pages = max(1, -(-int(count) // USER_PAGE))
        jobs = [(('users', i), self.base + '/users', query, USER_PAGE, i * USER_PAGE, i == pages - 1)
                for i in range(pages)]
        brief = {'briefRepresentation': 'true'}
        if any('groups' in u for u in desired):
            jobs += [(('group', path), self.base + '/groups/%s/members' % q(gid), brief, 1000, 0, True)
                     for path, gid in sorted(self.group_ids.items())]
        want_realm = set()
        want_clients = set()
        for u in desired:
            if 'realmRoles' in u:
                want_realm.add(None)
                want_realm.update(u['realmRoles'] or [])
            want_clients.update((u.get('clientRoles') or {}).keys())
        if want_realm:
            default = 'default-roles-' + self.name
            jobs += [(('role', None, n), self.base + '/roles/%s/users' % q(n), brief, 1000, 0, True)
                     for (c, n) in sorted(self.roles, key=_role_sort)
                     if c is None and (n != default or default in want_realm)]
        for cid in sorted(want_clients):
            uuid = self.client_uuid.get(cid)
            if uuid is not None:
                jobs += [(('role', cid, n), self.base + '/clients/%s/roles/%s/users' % (q(uuid), q(n)), brief, 1000, 0,
                          True) for (c, n) in sorted(self.roles, key=_role_sort) if c == cid]
        return jobs

    def _sync_users(self):
        desired = self.rep.get('users')
        if desired is None:
            return
        desired = [u for u in desired if not u.get('serviceAccountClientId')]
        reads = self._fetch(self._user_reads(desired))
        current = {}
        memberships = {}    # user id -> group paths
        realm_roles = {}    # user id -> realm role names
        client_roles = {}   # clientId -> user id -> role names
        for key in sorted(reads, key=repr):
            if key[0] == 'users':
                for u in reads[key]:
                    u.pop('userProfileMetadata', None)
                    current[u['username'].lower()] = u
            elif key[0] == 'group':
                for u in reads[key]:
                    memberships.setdefault(u['id'], set()).add(key[1])
            elif key[1] is None:
                for u in reads[key]:
                    realm_roles.setdefault(u['id'], set()).add(key[2])
            else:
                holders = client_roles.setdefault(key[1], {})
                for u in reads[key]:
                    holders.setdefault(u['id'], set()).add(key[2])
        missing = []
        for user in desired:
            body = self._user_body(user)
            old = current.get(body['username'])
            if old is None:
                missing.append(body)
                continue
            uid = old['id']
            before, after = field_delta(body, old, USER_IGNORE)
            if after:
                merged = dict((k, v) for k, v in old.items() if k not in ('access',))
                merged.update(dict((k, v) for k, v in body.items() if k not in USER_IGNORE))
                attrs = dict(old.get('attributes') or {})
                attrs.update(body.get('attributes') or {})
                merged['attributes'] = attrs
                self._w('PUT', '/users/' + q(uid), merged)
            purpose = 'user %s' % body['username']
            if 'groups' in body:
                have = sorted(memberships.get(uid, ()))
                add, remove = set_delta(body['groups'], have)
                if add or remove:
                    before['groups'], after['groups'] = have, sorted(body['groups'])
                    for path in add:
                        gid = self.group_ids.get(path)
                        if gid is None and not self.check:
                            raise KeycloakError("%s is a member of group %s, which neither the realm nor the file "
                                                "defines" % (purpose, path))
                        self._w('PUT', '/users/%s/groups/%s' % (q(uid), q(gid or path)))
                    for path in remove:
                        self._w('DELETE', '/users/%s/groups/%s' % (q(uid), q(self.group_ids[path])))
            have_realm = sorted(realm_roles.get(uid, ()))
            have_client = dict((cid, sorted(m.get(uid, ()))) for cid, m in client_roles.items())
            changes = self._mapping_changes(body.get('realmRoles'), body.get('clientRoles'), have_realm, have_client,
                                            keep_default=True)
            if changes:
                self._apply_mappings('/users/' + q(uid), changes, purpose)
                _show_mapping_changes(before, after, body, {'realmRoles': have_realm, 'clientRoles': have_client})
            cred = password_credential(body)
            if self.update_passwords and cred:
                self._w('PUT', '/users/%s/reset-password' % q(uid),
                        {'type': 'password', 'value': cred['value'], 'temporary': bool(cred.get('temporary'))})
                before['credentials'], after['credentials'] = SECRET_MASK, SECRET_MASK + ' (reset)'
            self._record_update('users', body['username'], before, after)
        self._create_users(missing)
        if self.prune:
            want = set(u['username'].lower() for u in self.rep.get('users') or [])
            for name, old in sorted(current.items()):
                if name not in want and not name.startswith('service-account-'):
                    self._w('DELETE', '/users/' + q(old['id']))
                    self.result.record('users', 'deleted', name, old, None)

    def _create_users(self, missing):
        """Missing users in a few partialImport requests: groups, roles and passwords come along."""
        for user in missing:
            self.result.record('users', 'created', user['username'], None, user)
        for start in range(0, len(missing), USER_BATCH):
            self._w('POST', '/partialImport', {'ifResourceExists': 'FAIL', 'users': missing[start:start + USER_BATCH]})


def _role_sort(key):
    return (key[0] or '', key[1])


def _role_label(cid, name):
    return name if cid is None else '%s/%s' % (cid, name)


def _role_names(keys):
    return sorted(_role_label(c, n) for c, n in keys)


def _show_mapping_changes(before, after, want, have):
    if 'realmRoles' in want and not same(want.get('realmRoles'), have.get('realmRoles')):
        before['realmRoles'], after['realmRoles'] = sorted(have.get('realmRoles') or []), sorted(want['realmRoles'])
    for cid, names in sorted((want.get('clientRoles') or {}).items()):
        old = sorted((have.get('clientRoles') or {}).get(cid) or [])
        if sorted(names or []) != old:
            before.setdefault('clientRoles', {})[cid] = old
            after.setdefault('clientRoles', {})[cid] = sorted(names or [])
