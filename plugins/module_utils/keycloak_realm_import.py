# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What the module ``keycloak_realm_import`` and its action plugin share: the argument spec and one run.

The module runs it on the host; the action plugin runs it in the controller's process when the host's
connection is local (no module start-up), and starts the module otherwise.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_admin import (
    CONNECTION_ARG_SPEC, CONNECTION_REQUIRED_TOGETHER, KeycloakError, admin_from_params)
from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_realm import RealmImporter
from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_realm_rep import (
    RESOURCE_TYPES, UNMANAGED_CHOICES, RealmError, load_realm, read_realm_file)

ARGUMENT_SPEC = dict(
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    src=dict(type='path'),
    realm_data=dict(type='dict'),
    realm=dict(type='str'),
    manage=dict(type='list', elements='str', choices=list(RESOURCE_TYPES), default=list(RESOURCE_TYPES)),
    prune=dict(type='bool', default=False),
    update_passwords=dict(type='bool', default=False, no_log=False),
    unmanaged_attributes=dict(type='str', choices=sorted(UNMANAGED_CHOICES), default='fail'),
    **CONNECTION_ARG_SPEC
)
MUTUALLY_EXCLUSIVE = [('src', 'realm_data')]
REQUIRED_IF = [('state', 'present', ('src', 'realm_data'), True),
               ('state', 'absent', ('realm', 'src', 'realm_data'), True)]
REQUIRED_TOGETHER = CONNECTION_REQUIRED_TOGETHER


class ImportFailed(Exception):
    """The import stopped; ``result`` holds what the module's failure carries besides the message."""

    def __init__(self, msg, result):
        super(ImportFailed, self).__init__(msg)
        self.result = result


def run_import(params, check_mode=False, diff=False):
    """Import (state present) or delete (absent) the realm ``params`` name; the module's result as a dict."""
    api = None
    try:
        if params['src']:
            data = read_realm_file(params['src'])
        else:
            data = params['realm_data'] if params['realm_data'] is not None else {}
        rep = load_realm(data, params['realm'])
        api = admin_from_params(params)
        api.login()
        importer = RealmImporter(api, rep, manage=params['manage'], prune=params['prune'],
                                 update_passwords=params['update_passwords'], check_mode=check_mode,
                                 diff=diff, unmanaged_attributes=params['unmanaged_attributes'])
        result = (importer.run() if params['state'] == 'present' else importer.delete()).as_dict()
    except (RealmError, KeycloakError) as exc:
        raise ImportFailed(str(exc), dict(status=getattr(exc, 'status', None),
                                          api_requests=api.requests if api else 0))
    finally:
        if api is not None:
            api.close()
    result['api_requests'] = api.requests
    return result
