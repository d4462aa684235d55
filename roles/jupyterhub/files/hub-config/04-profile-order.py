# 04-profile-order (datalab.notebooks)
#
# Helm stores chart values as maps with sorted keys, so the profile options reach the
# hub as CPU, Image, Memory and their choices as "1", "16", "2", "32" ... Lists are
# kept, so the role also hands the hub the order it rendered, as JSON in
# DATALAB_PROFILE_ORDER:
#   [{"display_name": <profile>, "options": [[<option>, [<choice>, ...]], ...]}, ...]
# Options and choices are put back in that order. What the order does not name (a
# profile, option or choice added through jupyterhub_extra_values) follows, choices in
# numeric order when every name starts with a number ("4 GiB"), otherwise as they came.
# `c` is the hub configuration, defined by the jupyterhub_config.py that executes this snippet.
# pylint: disable=undefined-variable
import json
import os
import re

DATALAB_LEADING_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)")


def datalab_numeric_order(choices):
    """`choices` (a dict) in numeric order of their names, or unchanged if a name has no leading number."""
    if not all(DATALAB_LEADING_NUMBER.match(str(name)) for name in choices):
        return choices
    return dict(
        sorted(choices.items(), key=lambda item: float(DATALAB_LEADING_NUMBER.match(str(item[0])).group(1)))
    )


def datalab_in_order(mapping, names):
    """`mapping` (a dict) with the keys listed in `names` first, in that order, then the others."""
    listed = [str(name) for name in names if str(name) in mapping]
    return {**{name: mapping[name] for name in listed}, **{k: v for k, v in mapping.items() if k not in listed}}


def datalab_parse_order(text):
    """DATALAB_PROFILE_ORDER -> {profile display name: [(option, [choice, ...]), ...]}; {} when unset."""
    if not (text or "").strip():
        return {}
    return {
        entry["display_name"]: [(option, list(names)) for option, names in entry.get("options") or []]
        for entry in json.loads(text)
    }


def datalab_order_profiles(profiles, order=None):
    order = order or {}
    for profile in profiles:
        options = profile.get("profile_options")
        if not isinstance(options, dict):
            continue
        declared = dict(order.get(profile.get("display_name"), []))
        for name, option in options.items():
            if isinstance(option, dict) and isinstance(option.get("choices"), dict):
                if name in declared:
                    option["choices"] = datalab_in_order(option["choices"], declared[name])
                else:
                    option["choices"] = datalab_numeric_order(option["choices"])
        profile["profile_options"] = datalab_in_order(options, declared)
    return profiles


if "profile_list" in c.KubeSpawner and isinstance(c.KubeSpawner.profile_list, list):
    c.KubeSpawner.profile_list = datalab_order_profiles(
        c.KubeSpawner.profile_list, datalab_parse_order(os.environ.get("DATALAB_PROFILE_ORDER"))
    )
