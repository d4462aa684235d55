# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Per-resource reconciliation of an existing realm: one ``sync_*`` function per kind of resource.

Each function compares the representation with what :class:`RealmSession` read from Keycloak and
writes only what differs, through ``session.write`` (nothing in check mode), recording every
resource in the session's result.  The order in which they run, and creating or deleting a whole
realm, is the importer's business (``keycloak_realm``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_admin import q
from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_compare import (
    SECRET_MASK, field_delta, multi_attrs, same, set_delta, single_attrs, walk_groups)
from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_realm_rep import (
    BUILTIN_CLIENTS, BUILTIN_REALM_ROLES, BUILTIN_SCOPES, CLIENT_IGNORE, GROUP_IGNORE, MAPPER_IGNORE,
    REALM_NOT_SETTINGS, ROLE_IGNORE, SCOPE_IGNORE, UNMANAGED_POLICY, USER_IGNORE, RealmError, password_credential,
    same_profile, unmanaged_policy, user_profile_config)

USER_BATCH = 500   # users per partialImport request
USER_PAGE = 1000   # users per page when listing
READ_WORKERS = 4   # parallel connections for the independent reads of a rerun
# What GET /users?briefRepresentation=true returns (Keycloak 26), besides id and timestamps.
BRIEF_USER_FIELDS = frozenset(('username', 'firstName', 'lastName', 'email', 'emailVerified', 'enabled', 'attributes'))


class RealmSession:
    """What the sync steps share: the API, the options, the ids read at the start, and the result.

    ``api`` is a :class:`keycloak_admin.KeycloakAdmin` or anything with the same interface
    (``request/get/post/put/delete/paged``, ``clone``, ``close`` and a ``requests`` counter).
    """

    # The module's options the steps read, as attributes: (attribute, keyword, default).
    OPTIONS = (('prune', 'prune', False), ('update_passwords', 'update_passwords', False),
               ('check', 'check_mode', False), ('unmanaged_attributes', 'unmanaged_attributes', 'fail'))

    def __init__(self, api, rep, result, manage, **options):
        unknown = sorted(set(options) - set(keyword for dummy, keyword, dummy2 in self.OPTIONS))
        if unknown:
            raise TypeError('RealmSession: unknown options %s' % ', '.join(unknown))
        for attribute, keyword, default in self.OPTIONS:
            setattr(self, attribute, options.get(keyword, default))
        self.api, self.rep, self.result = api, rep, result
        self.name = rep['realm']
        self.base = '/' + q(self.name)
        self.manage = tuple(manage)
        self.export = None
        self.profile_plan = None   # (current, desired) user profile, when it changes
        self.client_uuid = {}      # clientId -> id
        self.scope_ids = {}        # client scope name -> id
        self.group_ids = {}        # path -> id
        self.roles = {}            # (None | clientId, role name) -> role representation (with id)

    def write(self, method, path, body=None, query=None):
        """Every write goes through here, so that check mode never changes anything."""
        if self.check:
            return None
        return self.api.request(method, self.base + path, query=query, body=body)

    def fetch(self, jobs):
        """Run independent reads concurrently; returns {key: result}.

        A job is ``(key, path, query, page, start, follow)``: one GET when ``page`` is None, otherwise the
        page at ``start``, and when ``follow`` the pages after it for as long as they come back full.
        Each worker thread has its own connection (``api.clone()``).
        """
        results = {}
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

    def load_export(self):
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

    def profile_users(self):
        if 'users' not in self.manage:
            return []
        return [u for u in self.rep.get('users') or [] if not u.get('serviceAccountClientId')]

    def create(self, rtype, name, path, body, ids):
        """POST a missing object, remember its id in ``ids`` (name -> id) and record it as created."""
        created = self.write('POST', path, body)
        if created:
            ids[name] = created['id']
        self.result.record(rtype, 'created', name, None, body)

    def record_update(self, rtype, name, before, after):
        if after:
            self.result.record(rtype, 'updated', name, before, after, set(after))
        else:
            self.result.record(rtype, 'unchanged', name)

    def role_ref(self, cid, name, purpose):
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
            raise RealmError("%s refers to %s, which neither the realm nor the file defines" % (purpose, where))
        self.roles[(cid, name)] = role
        return role

    def client_path(self, cid, purpose):
        uuid = self.client_uuid.get(cid)
        if uuid is None:
            if self.check:
                return None
            raise RealmError("%s refers to client %r, which neither the realm nor the file defines" % (purpose, cid))
        return '/clients/' + q(uuid)

    def mapping_changes(self, want_realm, want_client, have_realm, have_client, keep_default=False):
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

    def apply_mappings(self, holder_path, changes, purpose):
        for cid, (add, remove) in sorted(changes.items(), key=lambda kv: kv[0] or ''):
            if cid is None:
                path = holder_path + '/role-mappings/realm'
            else:
                client = self.client_path(cid, purpose)
                if client is None:
                    continue
                path = holder_path + '/role-mappings/clients/' + q(self.client_uuid[cid])
            if self.check:
                continue
            if add:
                self.write('POST', path, [self.role_ref(cid, n, purpose) for n in add])
            if remove:
                self.write('DELETE', path, [self.role_ref(cid, n, purpose) for n in remove])


# --- realm settings and user profile --------------------------------------------------------------


def sync_realm_settings(s):
    """Top-level realm settings (one PUT), and the user profile when it must change."""
    desired = dict((k, v) for k, v in s.rep.items() if k not in REALM_NOT_SETTINGS)
    if isinstance(desired.get('smtpServer'), dict):
        # Exports mask the SMTP password; it cannot be compared.
        desired['smtpServer'] = dict((k, v) for k, v in desired['smtpServer'].items() if k != 'password')
    desired['realm'] = s.name
    before, after = field_delta(desired, s.export)
    fields = set(after)
    if fields:
        settings = dict((k, desired[k]) for k in fields)
        settings['realm'] = s.name
        s.write('PUT', '', settings)
    if s.profile_plan:
        profile_before, profile_after = sync_user_profile(s)
        before.update(profile_before)
        after.update(profile_after)
        fields.update(profile_after)
    s.result.record('realm', 'updated' if fields else 'unchanged', s.name, before, after, fields)


def plan_user_profile(s):
    """(current, desired) user profile when it must change, else None; see :func:`unmanaged_policy`."""
    file_profile = user_profile_config(s.rep) if 'realm' in s.manage else None
    users = s.profile_users()
    if file_profile is None and not any(u.get('attributes') for u in users):
        return None
    current = s.api.get(s.base + '/users/profile') or {}
    desired = copy.deepcopy(file_profile if file_profile is not None else current)
    policy = unmanaged_policy(users, desired, s.unmanaged_attributes, s.name,
                              from_file=UNMANAGED_POLICY in (file_profile or {}))
    if policy:
        desired[UNMANAGED_POLICY] = policy
    if same_profile(desired, current):
        return None
    return current, desired


def sync_user_profile(s):
    """Write the planned user profile; (before, after) for the realm's record."""
    current, desired = s.profile_plan
    s.write('PUT', '/users/profile', desired)
    return {'userProfile': current}, {'userProfile': desired}


# --- protocol mappers (clients and client scopes) -------------------------------------------------


def sync_mappers(s, path, desired, current):
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
            s.write('POST', path + '/protocol-mappers/models', body)
        else:
            b, a = field_delta(body, old, MAPPER_IGNORE)
            if a:
                before[name], after[name] = b, a
                merged = dict(old)
                merged.update(body)
                s.write('PUT', '%s/protocol-mappers/models/%s' % (path, q(old['id'])), merged)
    if s.prune:
        for name, old in sorted(cur.items()):
            if name not in want:
                before[name], after[name] = old, None
                s.write('DELETE', '%s/protocol-mappers/models/%s' % (path, q(old['id'])))
    return before, after


# --- client scopes --------------------------------------------------------------------------------


def sync_client_scopes(s):
    """Client scopes and their protocol mappers."""
    current = dict((scope['name'], scope) for scope in s.export.get('clientScopes') or [])
    desired = s.rep.get('clientScopes')
    if desired is None:
        return
    for scope in desired:
        name = scope['name']
        body = dict((k, v) for k, v in scope.items() if k != 'id')
        if 'attributes' in body:
            body['attributes'] = single_attrs(body['attributes'])
        old = current.get(name)
        if old is None:
            s.create('client_scopes', name, '/client-scopes', body, s.scope_ids)
            continue
        before, after = field_delta(body, old, SCOPE_IGNORE)
        if after:
            merged = dict((k, v) for k, v in old.items() if k != 'protocolMappers')
            merged.update(dict((k, v) for k, v in body.items() if k != 'protocolMappers'))
            s.write('PUT', '/client-scopes/' + q(old['id']), merged)
        mb, ma = sync_mappers(s, '/client-scopes/' + q(old['id']), body.get('protocolMappers'),
                              old.get('protocolMappers'))
        if ma:
            before['protocolMappers'], after['protocolMappers'] = mb, ma
        s.record_update('client_scopes', name, before, after)
    if s.prune:
        want = set(scope['name'] for scope in desired)
        for name, old in sorted(current.items()):
            if name not in want and name not in BUILTIN_SCOPES:
                s.write('DELETE', '/client-scopes/' + q(old['id']))
                s.result.record('client_scopes', 'deleted', name, old, None)


# --- clients --------------------------------------------------------------------------------------


def client_body(client):
    """A client as it is sent: attributes as strings, never the export's masked secret."""
    body = dict((k, v) for k, v in client.items() if k != 'id')
    if 'attributes' in body:
        body['attributes'] = single_attrs(body['attributes'])
    if body.get('secret') == SECRET_MASK:
        del body['secret']
    return body


def sync_scope_list(s, cid, uuid, kind, desired, current):
    """Default or optional client scopes of one client; exact when the file lists them."""
    if desired is None:
        return None
    add, remove = set_delta(desired, current or [])
    path = '/clients/%s/%s-client-scopes/' % (q(uuid), kind)
    for name in add:
        sid = s.scope_ids.get(name)
        if sid is None and not s.check:
            raise RealmError("client %s lists %s client scope %r, which the realm does not have: add it to "
                             "clientScopes" % (cid, kind, name))
        s.write('PUT', path + q(sid or name))
    for name in remove:
        if name in s.scope_ids:
            s.write('DELETE', path + q(s.scope_ids[name]))
    return add or remove


def sync_clients(s):
    """Clients: fields, secret, protocol mappers, default and optional client scopes."""
    desired = s.rep.get('clients')
    if desired is None:
        return
    current = dict((c['clientId'], c) for c in s.export.get('clients') or [])
    # Secrets are masked in the export: read those the file sets, all at once.
    reads = []
    for client in desired:
        old = current.get(client['clientId'])
        if old and client_body(client).get('secret') and not old.get('publicClient') \
                and not client.get('publicClient'):
            reads.append((client['clientId'], s.base + '/clients/%s/client-secret' % q(old['id']),
                          None, None, 0, False))
    secrets = s.fetch(reads)
    for client in desired:
        cid = client['clientId']
        body = client_body(client)
        old = current.get(cid)
        if old is None:
            s.create('clients', cid, '/clients', body, s.client_uuid)
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
            s.write('PUT', '/clients/' + q(uuid), merged)
        mb, ma = sync_mappers(s, '/clients/' + q(uuid), body.get('protocolMappers'), old.get('protocolMappers'))
        if ma:
            before['protocolMappers'], after['protocolMappers'] = mb, ma
        for kind, key in (('default', 'defaultClientScopes'), ('optional', 'optionalClientScopes')):
            if sync_scope_list(s, cid, uuid, kind, body.get(key), old.get(key)):
                before[key], after[key] = sorted(old.get(key) or []), sorted(body.get(key))
        s.record_update('clients', cid, before, after)
    if s.prune:
        want = set(c['clientId'] for c in desired)
        for cid, old in sorted(current.items()):
            if cid not in want and cid not in BUILTIN_CLIENTS and not cid.endswith('-realm'):
                s.write('DELETE', '/clients/' + q(old['id']))
                s.result.record('clients', 'deleted', cid, old, None)


# --- roles ----------------------------------------------------------------------------------------


def role_body(role):
    """A role as it is sent, without its composites (reconciled on their own)."""
    body = dict((k, v) for k, v in role.items() if k not in ('id', 'containerId', 'composites', 'composite'))
    if 'attributes' in body:
        body['attributes'] = multi_attrs(body['attributes'])
    return body


def sync_roles(s):
    """Realm roles and client roles, then their composites once every role exists."""
    roles = s.rep.get('roles')
    if roles is None:
        return
    todo = []  # (cid, desired role) whose composites to reconcile once every role exists
    for cid, items in [(None, roles.get('realm'))] + sorted((roles.get('client') or {}).items()):
        if items is None:
            continue
        container = '' if cid is None else s.client_path(cid, 'roles.client.%s' % cid)
        cur = dict((n, r) for (c, n), r in s.roles.items() if c == cid)
        for role in items:
            name = role['name']
            body = role_body(role)
            old = cur.get(name)
            if old is None:
                if container is not None:
                    s.write('POST', container + '/roles', body)
                s.result.record('roles', 'created', _role_label(cid, name), None, role)
                todo.append((cid, role, True))
                continue
            before, after = field_delta(body, old, ROLE_IGNORE)
            if after:
                merged = dict((k, v) for k, v in old.items() if k not in ('composites',))
                merged.update(body)
                s.write('PUT', '/roles-by-id/' + q(old['id']), merged)
            todo.append((cid, role, False, before, after))
        if s.prune and container is not None:
            want = set(r['name'] for r in items)
            for name, old in sorted(cur.items()):
                if name in want or (cid is None and (name in BUILTIN_REALM_ROLES or
                                                     name == 'default-roles-' + s.name)):
                    continue
                s.write('DELETE', '/roles-by-id/' + q(old['id']))
                s.result.record('roles', 'deleted', _role_label(cid, name), old, None)
    for item in todo:
        cid, role, created = item[0], item[1], item[2]
        name = role['name'] if cid is None else '%s/%s' % (cid, role['name'])
        comp_before, comp_after = sync_composites(s, cid, role, created)
        if created:
            continue
        before, after = item[3], item[4]
        if comp_after is not None:
            before['composites'], after['composites'] = comp_before, comp_after
        s.record_update('roles', name, before, after)


def composite_keys(composites):
    """A role's composites as a set of (None | clientId, role name)."""
    keys = set((None, n) for n in (composites or {}).get('realm') or [])
    for cid, names in ((composites or {}).get('client') or {}).items():
        keys.update((cid, n) for n in names or [])
    return keys


def sync_composites(s, cid, role, created):
    """A role's composites made exact when the file gives them; (before, after) or (None, None)."""
    if 'composites' not in role:
        return None, None
    want = composite_keys(role.get('composites'))
    old = s.roles.get((cid, role['name'])) or {}
    have = set() if created else composite_keys(old.get('composites'))
    add, remove = want - have, have - want
    if not add and not remove:
        return None, None
    label = 'roles.%s%s.composites' % ('realm' if cid is None else 'client.' + cid, '')
    if not s.check:
        rid = s.role_ref(cid, role['name'], label)['id']
        if add:
            s.write('POST', '/roles-by-id/%s/composites' % q(rid),
                    [s.role_ref(c, n, label) for c, n in sorted(add, key=_role_sort)])
        if remove:
            s.write('DELETE', '/roles-by-id/%s/composites' % q(rid),
                    [s.role_ref(c, n, label) for c, n in sorted(remove, key=_role_sort)])
    return _role_names(have), _role_names(want)


# --- groups ---------------------------------------------------------------------------------------


def sync_groups(s):
    """Groups (nested, parents first) and their role mappings."""
    desired = s.rep.get('groups')
    if desired is None:
        return
    current = dict((p, g) for p, g, _parent in walk_groups(s.export.get('groups')))
    for path, group, parent in walk_groups(desired):
        name = path.lstrip('/')
        body = {'name': group['name']}
        if 'attributes' in group:
            body['attributes'] = multi_attrs(group['attributes'])
        old = current.get(path)
        purpose = 'group %s' % path
        if old is None:
            if parent:
                pid = s.group_ids.get(parent)
                created = pid and s.write('POST', '/groups/%s/children' % q(pid), body)
            else:
                created = s.write('POST', '/groups', body)
            if created:
                s.group_ids[path] = created['id']
                changes = s.mapping_changes(group.get('realmRoles'), group.get('clientRoles'), [], {})
                s.apply_mappings('/groups/' + q(created['id']), changes, purpose)
            s.result.record('groups', 'created', name, None,
                            dict((k, v) for k, v in group.items() if k != 'subGroups'))
            continue
        before, after = field_delta(body, old, GROUP_IGNORE)
        if after:
            merged = {'id': old['id'], 'name': body['name'],
                      'attributes': dict(old.get('attributes') or {}, **body.get('attributes', {}))}
            s.write('PUT', '/groups/' + q(old['id']), merged)
        changes = s.mapping_changes(group.get('realmRoles'), group.get('clientRoles'),
                                    old.get('realmRoles'), old.get('clientRoles'))
        if changes:
            s.apply_mappings('/groups/' + q(old['id']), changes, purpose)
            _show_mapping_changes(before, after, group, old)
        s.record_update('groups', name, before, after)
    if s.prune:
        want = set(p for p, _group, _parent in walk_groups(desired))
        for path, old in sorted(current.items()):
            parent = path.rsplit('/', 1)[0]
            if path not in want and (not parent or parent in want):
                s.write('DELETE', '/groups/' + q(old['id']))
                s.result.record('groups', 'deleted', path.lstrip('/'), old, None)
                for gone in [p for p in s.group_ids if p == path or p.startswith(path + '/')]:
                    del s.group_ids[gone]


# --- users ----------------------------------------------------------------------------------------


def user_body(user):
    """A user as Keycloak stores it: lower-case username and email, attributes as lists."""
    body = dict((k, v) for k, v in user.items() if k != 'id')
    body['username'] = user['username'].lower()
    if isinstance(body.get('email'), str):
        body['email'] = body['email'].lower()
    if 'attributes' in body:
        body['attributes'] = multi_attrs(body['attributes'])
    return body


def user_reads(s, desired):
    """The jobs that read users, group members and role members for the users step."""
    # The brief listing is several times faster (Keycloak 26 builds the user-profile view of each user
    # either way) and has every field a realm file usually sets; ask for the full one only when needed.
    full = any(k not in BRIEF_USER_FIELDS and k not in USER_IGNORE for u in desired for k in u)
    query = {'briefRepresentation': 'false' if full else 'true'}
    count = s.api.get(s.base + '/users/count') or 0
    pages = max(1, -(-int(count) // USER_PAGE))
    jobs = [(('users', i), s.base + '/users', query, USER_PAGE, i * USER_PAGE, i == pages - 1)
            for i in range(pages)]
    brief = {'briefRepresentation': 'true'}
    if any('groups' in u for u in desired):
        jobs += [(('group', path), s.base + '/groups/%s/members' % q(gid), brief, 1000, 0, True)
                 for path, gid in sorted(s.group_ids.items())]
    want_realm = set()
    want_clients = set()
    for u in desired:
        if 'realmRoles' in u:
            want_realm.add(None)
            want_realm.update(u['realmRoles'] or [])
        want_clients.update((u.get('clientRoles') or {}).keys())
    if want_realm:
        default = 'default-roles-' + s.name
        jobs += [(('role', None, n), s.base + '/roles/%s/users' % q(n), brief, 1000, 0, True)
                 for (c, n) in sorted(s.roles, key=_role_sort)
                 if c is None and (n != default or default in want_realm)]
    for cid in sorted(want_clients):
        uuid = s.client_uuid.get(cid)
        if uuid is not None:
            jobs += [(('role', cid, n), s.base + '/clients/%s/roles/%s/users' % (q(uuid), q(n)), brief, 1000, 0,
                      True) for (c, n) in sorted(s.roles, key=_role_sort) if c == cid]
    return jobs


def sync_users(s):
    """Users: fields and attributes, group memberships, role mappings, passwords on request."""
    desired = s.rep.get('users')
    if desired is None:
        return
    desired = [u for u in desired if not u.get('serviceAccountClientId')]
    reads = s.fetch(user_reads(s, desired))
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
        body = user_body(user)
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
            s.write('PUT', '/users/' + q(uid), merged)
        purpose = 'user %s' % body['username']
        if 'groups' in body:
            have = sorted(memberships.get(uid, ()))
            add, remove = set_delta(body['groups'], have)
            if add or remove:
                before['groups'], after['groups'] = have, sorted(body['groups'])
                for path in add:
                    gid = s.group_ids.get(path)
                    if gid is None and not s.check:
                        raise RealmError("%s is a member of group %s, which neither the realm nor the file "
                                         "defines" % (purpose, path))
                    s.write('PUT', '/users/%s/groups/%s' % (q(uid), q(gid or path)))
                for path in remove:
                    s.write('DELETE', '/users/%s/groups/%s' % (q(uid), q(s.group_ids[path])))
        have_realm = sorted(realm_roles.get(uid, ()))
        have_client = dict((cid, sorted(m.get(uid, ()))) for cid, m in client_roles.items())
        changes = s.mapping_changes(body.get('realmRoles'), body.get('clientRoles'), have_realm, have_client,
                                    keep_default=True)
        if changes:
            s.apply_mappings('/users/' + q(uid), changes, purpose)
            _show_mapping_changes(before, after, body, {'realmRoles': have_realm, 'clientRoles': have_client})
        cred = password_credential(body)
        if s.update_passwords and cred:
            s.write('PUT', '/users/%s/reset-password' % q(uid),
                    {'type': 'password', 'value': cred['value'], 'temporary': bool(cred.get('temporary'))})
            before['credentials'], after['credentials'] = SECRET_MASK, SECRET_MASK + ' (reset)'
        s.record_update('users', body['username'], before, after)
    create_users(s, missing)
    if s.prune:
        want = set(u['username'].lower() for u in s.rep.get('users') or [])
        for name, old in sorted(current.items()):
            if name not in want and not name.startswith('service-account-'):
                s.write('DELETE', '/users/' + q(old['id']))
                s.result.record('users', 'deleted', name, old, None)


def create_users(s, missing):
    """Missing users in a few partialImport requests: groups, roles and passwords come along."""
    for user in missing:
        s.result.record('users', 'created', user['username'], None, user)
    for start in range(0, len(missing), USER_BATCH):
        s.write('POST', '/partialImport', {'ifResourceExists': 'FAIL', 'users': missing[start:start + USER_BATCH]})


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
