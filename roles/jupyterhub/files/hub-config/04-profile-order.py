# 04-profile-order (datalab.notebooks)
#
# Helm stores chart values as maps with sorted keys, so the profile choices reach
# the hub as "1", "16", "2", "32" ... Put choices whose names start with a number
# (CPUs, "4 GB") back in numeric order; other options (images) keep their order.
# `c` is the hub configuration, defined by the jupyterhub_config.py that executes this snippet.
# pylint: disable=undefined-variable
import re

DATALAB_LEADING_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)")


def datalab_numeric_order(choices):
    """`choices` (a dict) in numeric order of their names, or unchanged if a name has no leading number."""
    if not all(DATALAB_LEADING_NUMBER.match(str(name)) for name in choices):
        return choices
    return dict(
        sorted(choices.items(), key=lambda item: float(DATALAB_LEADING_NUMBER.match(str(item[0])).group(1)))
    )


def datalab_order_profiles(profiles):
    for profile in profiles:
        for option in (profile.get("profile_options") or {}).values():
            if isinstance(option.get("choices"), dict):
                option["choices"] = datalab_numeric_order(option["choices"])
    return profiles


if "profile_list" in c.KubeSpawner and isinstance(c.KubeSpawner.profile_list, list):
    c.KubeSpawner.profile_list = datalab_order_profiles(c.KubeSpawner.profile_list)
