# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""The realm representation: reading and checking it, and what follows from it alone.

What the importer needs to know about a realm file before it talks to Keycloak: which keys are
settings, which objects are Keycloak's own, the declarative user profile it may carry and whether
the users' attributes survive it, and what ``POST /admin/realms`` gets for a new realm.  Anything
wrong with the data raises :class:`RealmError`, with one line that says what to fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json

from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_compare import multi_attrs, same, walk_groups

RESOURCE_TYPES = ('realm', 'roles', 'groups', 'client_scopes', 'clients', 'users')

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
UNMANAGED_POLICY = 'unmanagedAttributePolicy'
# What a realm's user profile declares when nobody configured it (Keycloak 24 and later).
DEFAULT_PROFILE_ATTRIBUTES = frozenset(('username', 'email', 'firstName', 'lastName'))
# The module's unmanaged_attributes choices and the policy each one sets; 'fail' sets none.
UNMANAGED_CHOICES = {'fail': None, 'admin_edit': 'ADMIN_EDIT', 'enabled': 'ENABLED'}
# Policies under which the admin API stores attributes the profile does not declare; under ADMIN_VIEW
# (or none) Keycloak ignores them on update, so they would show as a change on every run.
ADMIN_WRITABLE_POLICIES = frozenset(('ADMIN_EDIT', 'ENABLED'))


class RealmError(Exception):
    """The realm representation is unusable; the message says what to fix."""


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


def undeclared_attributes(users, profile):
    """{attribute: [usernames]} of the users' attributes (with a value) that ``profile`` does not declare.

    ``profile`` None is Keycloak's default profile.
    """
    if profile is None or profile.get('attributes') is None:
        declared = DEFAULT_PROFILE_ATTRIBUTES
    else:
        declared = frozenset(a.get('name') for a in profile['attributes'] if isinstance(a, dict))
    out = {}
    for user in users:
        for key, values in sorted(multi_attrs(user.get('attributes')).items()):
            if values and key not in declared:
                out.setdefault(key, []).append(user['username'])
    return out


def _who(names, limit=3):
    shown = ', '.join(names[:limit])
    return shown if len(names) <= limit else '%s and %d more' % (shown, len(names) - limit)


def unmanaged_policy(users, profile, choice, realm, from_file=False):
    """The ``unmanagedAttributePolicy`` to set so that the users' attributes are kept; None when none is needed.

    ``profile`` is the user profile the realm will have (None: Keycloak's default); ``from_file`` says
    that its policy was written in the realm file, which then is not overridden.  Raises RealmError
    naming the attributes when ``choice`` is 'fail' or the file's own policy cannot keep them.
    """
    current = (profile or {}).get(UNMANAGED_POLICY)
    if current in ADMIN_WRITABLE_POLICIES:
        return None
    missing = undeclared_attributes(users, profile)
    if not missing:
        return None
    listed = '; '.join('%s (users %s)' % (key, _who(names)) for key, names in sorted(missing.items()))
    if from_file and current:
        raise RealmError("users carry attributes that the user profile of realm %s does not declare: %s; the file's "
                         "profile sets %s %s, under which Keycloak does not store them: declare them in the profile "
                         "or set %s to ADMIN_EDIT or ENABLED" % (realm, listed, UNMANAGED_POLICY, current,
                                                                 UNMANAGED_POLICY))
    if UNMANAGED_CHOICES.get(choice) is None:
        raise RealmError("users carry attributes that the user profile of realm %s does not declare: %s; Keycloak "
                         "would not keep them. Declare them in the user profile (the file's components %s, config "
                         "%s) or set unmanaged_attributes=admin_edit (or enabled) to keep them as unmanaged "
                         "attributes" % (realm, listed, USER_PROFILE_PROVIDER, USER_PROFILE_KEY))
    return UNMANAGED_CHOICES[choice]


def same_profile(desired, current):
    """A user profile compares like the rest, except that a missing policy means 'disabled', not 'any'."""
    return same(desired, current) and desired.get(UNMANAGED_POLICY) == (current or {}).get(UNMANAGED_POLICY)


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
