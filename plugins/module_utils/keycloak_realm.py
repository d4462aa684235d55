# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Reconcile a Keycloak realm with a realm representation (the JSON Keycloak's export writes).

The orchestration: :class:`RealmImporter` creates a missing realm in one request, or reads an
existing one once and runs the per-resource steps of ``keycloak_realm_sync`` in dependency order,
or deletes the realm; :class:`Result` counts and describes what happened.  The pieces it builds on:

- ``keycloak_realm_rep``: reading and checking the representation (``RealmError``), the user profile;
- ``keycloak_compare``: the pure comparison rule ("desired is a subset of current") and masking;
- ``keycloak_realm_sync``: one ``sync_*`` function per kind of resource, sharing a ``RealmSession``;
- ``keycloak_admin``: the HTTP client (``KeycloakError``) and the modules' connection options.

A user's or group's ``groups``/``realmRoles``/``clientRoles`` and a client's scope lists, when
present in the file, are the whole truth for that object (extra ones are removed; the realm's
default role is never taken away).  Whole objects the file does not mention are deleted only with
``prune``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_compare import mask, walk_groups
from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_realm_rep import (
    REALM_NOT_SETTINGS, RESOURCE_TYPES, UNMANAGED_POLICY, creation_payload, unmanaged_policy, user_profile_config)
from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_realm_sync import (
    RealmSession, plan_user_profile, sync_client_scopes, sync_clients, sync_groups, sync_realm_settings, sync_roles,
    sync_user_profile, sync_users)

COUNTERS = ('created', 'updated', 'unchanged', 'deleted')

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

# The steps for an existing realm, in the order their references need: scopes before the clients that
# list them, clients before their roles, roles before the groups and users that hold them.
STEPS = (('realm', sync_realm_settings), ('client_scopes', sync_client_scopes), ('clients', sync_clients),
         ('roles', sync_roles), ('groups', sync_groups), ('users', sync_users))


class RealmImporter:
    """Brings one realm in line with a representation (``run()``) or removes it (``delete()``).

    Both return a :class:`Result`.
    """

    def __init__(self, api, rep, manage=RESOURCE_TYPES, prune=False, update_passwords=False, check_mode=False,
                 diff=False, unmanaged_attributes='fail'):
        self.api = api
        self.name = rep['realm']
        self.result = Result(self.name, diff)
        self.session = RealmSession(api, rep, self.result, manage, prune=prune, update_passwords=update_passwords,
                                    check_mode=check_mode, unmanaged_attributes=unmanaged_attributes)

    def delete(self):
        """Make the realm absent: deleted when it exists (nothing to do otherwise)."""
        s = self.session
        current = self.api.get(s.base, missing_ok=True)
        if current is not None:
            if not s.check:
                self.api.delete(s.base)
            settings = dict((k, v) for k, v in current.items() if k not in REALM_NOT_SETTINGS)
            self.result.record('realm', 'deleted', self.name, settings, None)
        return self.result

    def run(self):
        s = self.session
        if self.api.get(s.base, missing_ok=True) is None:
            self._create_realm()
            return self.result
        s.load_export()
        # Before any write, so that a realm whose users would lose attributes is left as it is.
        s.profile_plan = plan_user_profile(s)
        if 'realm' not in s.manage and s.profile_plan:
            before, after = sync_user_profile(s)
            self.result.record('realm', 'updated', self.name, before, after, set(after))
        for rtype, step in STEPS:
            if rtype in s.manage:
                step(s)
        return self.result

    def _create_realm(self):
        """A missing realm in one ``POST /admin/realms``, users and all."""
        s = self.session
        body = creation_payload(s.rep, s.manage)
        policy = unmanaged_policy(s.profile_users(), user_profile_config(body), s.unmanaged_attributes,
                                  s.name, from_file=UNMANAGED_POLICY in (user_profile_config(body) or {}))
        if not s.check:
            s.api.post('', body)
            if policy:
                # Realm import stores the attributes whatever the policy; the policy makes them visible and editable.
                profile = s.api.get(s.base + '/users/profile') or {}
                profile[UNMANAGED_POLICY] = policy
                s.api.put(s.base + '/users/profile', profile)
        r = s.result
        settings = dict((k, v) for k, v in body.items() if k not in REALM_NOT_SETTINGS)
        if policy:
            settings['userProfile'] = {UNMANAGED_POLICY: policy}
        r.record('realm', 'created', s.name, None, settings)
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
