#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: keycloak_realm_import
short_description: Import a realm representation into Keycloak, idempotently
version_added: 0.1.0
description:
  - Takes a realm in the JSON format Keycloak's own export writes (a file or a dict) and makes a running
    Keycloak match it through the admin REST API.
  - When the realm does not exist it is created in one request (C(POST /admin/realms)), users and all.
  - When it exists, realm settings, realm and client roles, groups (nested), client scopes, clients
    (secrets, redirect URIs, protocol mappers, default and optional scopes) and users (fields, attributes,
    group memberships, realm and client role mappings) are compared with what Keycloak has, and only what
    differs is changed. Missing users are created in batches with Keycloak's partial import.
  - Only what the representation says is compared, since Keycloak fills in many defaults. Lists of strings
    are compared as sets. A user's C(groups), C(realmRoles) and C(clientRoles), a group's role mappings, a
    role's C(composites) and a client's C(defaultClientScopes)/C(optionalClientScopes), when given, are
    made exact; the realm's default role is never taken from a user.
  - Secrets never appear in the result or the diff; they are shown as C(**********).
author:
  - datalab.notebooks developers (!UNKNOWN)
extends_documentation_fragment:
  - datalab.notebooks.keycloak
options:
  state:
    description:
      - V(present) creates or reconciles the realm.
      - V(absent) deletes the realm with everything in it (users, clients, groups); a realm that does not
        exist is left alone and reported unchanged. Only the realm's name is needed, from O(realm) or the
        C(realm) key of O(src) or O(realm_data).
    type: str
    choices: [present, absent]
    default: present
  src:
    description:
      - Path of a realm representation (JSON) on the host the module runs on.
      - With O(state=present), exactly one of O(src) and O(realm_data) is required.
    type: path
  realm_data:
    description:
      - The realm representation as a dict, for example from P(ansible.builtin.file#lookup) and
        P(ansible.builtin.from_json#filter) or built in a template.
      - It usually holds passwords and client secrets, so set C(no_log) on the task (the module cannot hide
        module arguments from verbose output itself).
    type: dict
  realm:
    description:
      - Name of the realm, overriding the C(realm) key of the representation.
    type: str
  manage:
    description:
      - Which kinds of resources to create and reconcile. Others are neither created nor compared.
      - V(realm) is the realm's own settings (and its declarative user profile when the representation carries one).
    type: list
    elements: str
    choices: [realm, roles, groups, client_scopes, clients, users]
    default: [realm, roles, groups, client_scopes, clients, users]
  prune:
    description:
      - Delete resources of the managed kinds that the representation does not list (users, groups, clients,
        client scopes, realm roles, client roles of listed clients, protocol mappers).
      - Keycloak's built-in clients, client scopes and roles are never deleted, nor are service-account users.
    type: bool
    default: false
  unmanaged_attributes:
    description:
      - What to do when users in the representation carry attributes that the realm's user profile does
        not declare. Keycloak 24 and later do not keep such attributes unless the profile's
        C(unmanagedAttributePolicy) lets administrators edit them, so they would be lost and every run would
        report those users changed.
      - The profile judged is the one in the representation (C(components) ->
        C(org.keycloak.userprofile.UserProfileProvider) -> C(kc.user.profile.config), applied before users
        when V(realm) is managed), otherwise the realm's current one (Keycloak's default for a new realm).
      - V(fail) stops before anything is written, naming the attributes and users; declare the attributes
        in the profile or choose one of the other values.
      - V(admin_edit) sets the profile's C(unmanagedAttributePolicy) to C(ADMIN_EDIT) (administrators see and
        edit the attributes; users do not see them), V(enabled) to C(ENABLED) (users see and edit them too).
        The change is reported as an update of the realm (C(userProfile)).
      - A policy written in the representation's own profile is never overridden; if it cannot keep the
        attributes (C(ADMIN_VIEW)) the task fails.
    type: str
    choices: [fail, admin_edit, enabled]
    default: fail
  update_passwords:
    description:
      - Passwords in C(credentials) are set when a user is created. With V(true) they are also reset on
        every run for existing users, which is always reported as a change (Keycloak cannot say whether the
        password is already that value) and counts against password-history policies.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads the realm and reports what would change; writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: One before/after entry per created, updated or deleted resource, limited to the fields that differ.
notes:
  - Service-account users (C(serviceAccountClientId)) are created by Keycloak with their client and are not
    reconciled. Authentication flows, identity providers, components other than the user profile, scope
    mappings and authorization settings are applied when the realm is created but not reconciled afterwards.
  - Keycloak 24 and later drop user attributes that the realm's user profile does not declare unless its
    C(unmanagedAttributePolicy) allows them; see O(unmanaged_attributes).
  - Tested with Keycloak 26.
"""

EXAMPLES = r"""
- name: Import the demo realm for JupyterHub
  datalab.notebooks.keycloak_realm_import:
    url: "https://{{ keycloak_address }}"
    ca_path: /etc/datalab/ca.crt
    auth_username: admin
    auth_password: "{{ keycloak_admin_password }}"
    src: files/realm-demo.json
  no_log: true

- name: Reconcile only the clients of an existing realm, removing clients the file does not list
  datalab.notebooks.keycloak_realm_import:
    url: https://keycloak.example.com
    auth_client_id: automation
    auth_client_secret: "{{ automation_client_secret }}"
    realm_data: "{{ lookup('ansible.builtin.template', 'realm.json.j2') | from_json }}"
    realm: demo
    manage: [clients]
    prune: true
  no_log: true

- name: Import a realm whose users carry attributes the user profile does not declare
  datalab.notebooks.keycloak_realm_import:
    url: https://keycloak.example.com
    auth_username: admin
    auth_password: "{{ keycloak_admin_password }}"
    src: files/realm-with-attributes.json
    unmanaged_attributes: admin_edit
  no_log: true

- name: Delete the realm demo
  datalab.notebooks.keycloak_realm_import:
    url: https://keycloak.example.com
    auth_username: admin
    auth_password: "{{ keycloak_admin_password }}"
    realm: demo
    state: absent
  no_log: true
"""

RETURN = r"""
realm:
  description: Name of the realm.
  returned: always
  type: str
  sample: demo
created:
  description: How many resources of each kind were created (or would be, in check mode).
  returned: always
  type: dict
  sample: {realm: 0, roles: 0, groups: 1, client_scopes: 0, clients: 0, users: 3}
updated:
  description: How many resources of each kind were changed.
  returned: always
  type: dict
  sample: {realm: 0, roles: 0, groups: 0, client_scopes: 0, clients: 1, users: 2}
unchanged:
  description: How many resources of each kind already matched.
  returned: always
  type: dict
  sample: {realm: 1, roles: 2, groups: 5, client_scopes: 0, clients: 0, users: 5}
deleted:
  description: How many resources of each kind were deleted (only with O(prune), or the realm with O(state=absent)).
  returned: always
  type: dict
  sample: {realm: 0, roles: 0, groups: 0, client_scopes: 0, clients: 0, users: 0}
changes:
  description: One line per created, updated or deleted resource, with the fields that differed.
  returned: always
  type: list
  elements: str
  sample: ["updated users/daniel.king (attributes, groups)", "updated clients/jupyterhub (redirectUris)"]
status:
  description: HTTP status of the Keycloak answer the task failed on (none for connection and data errors).
  returned: failure
  type: int
  sample: 401
api_requests:
  description: Number of HTTP requests sent to Keycloak.
  returned: always
  type: int
  sample: 14
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_realm_import import (
    ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE, REQUIRED_IF, REQUIRED_TOGETHER, ImportFailed, run_import)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE, required_if=REQUIRED_IF,
                           required_together=REQUIRED_TOGETHER, supports_check_mode=True)
    try:
        result = run_import(module.params, check_mode=module.check_mode, diff=module._diff)
    except ImportFailed as exc:
        module.fail_json(msg=str(exc), **exc.result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
