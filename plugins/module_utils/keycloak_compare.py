# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Pure comparison helpers for realm representations: nothing but Python, no Keycloak.

Comparison rule: only what the file says is compared ("desired is a subset of current"), because
Keycloak fills in dozens of defaults the file never mentions.  Lists of strings are compared as
sets (Keycloak does not keep their order), lists of named objects by name.  Attributes are
normalised the way Keycloak stores them before comparing, and :func:`mask` hides secrets in what
is shown to a person.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

SECRET_MASK = '**********'

# Keys whose values are secrets anywhere in a representation.
SECRET_KEYS = frozenset(('secret', 'password', 'clientsecret', 'client_secret', 'secretdata', 'hashedsaltedvalue',
                         'salt', 'registrationaccesstoken', 'privatekey', 'value'))

# 'value' is secret only inside credentials; elsewhere (e.g. attributes) it is data.
_VALUE_IS_SECRET_UNDER = frozenset(('credentials',))


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
