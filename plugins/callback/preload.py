# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
name: preload
type: aggregate
short_description: Import the Kubernetes client once, in the controller's main process
version_added: 0.2.0
description:
  - Ansible runs every task of every host in a new worker process forked from the controller's main process.
    A task that uses the C(kubernetes.core.k8s) lookup, C(datalab.notebooks.k8s_apply) or
    C(datalab.notebooks.nodeport_address) imports the C(kubernetes) client in its worker, about half a second
    each time. This callback imports it once in the main process when it is loaded, so every worker starts with
    it already imported.
  - It changes nothing else and prints nothing. Without the C(kubernetes) package it does nothing.
  - Enable it with C(callbacks_enabled = datalab.notebooks.preload) in C([defaults]) of C(ansible.cfg) (the
    collection's checkout does) or E(ANSIBLE_CALLBACKS_ENABLED).
author:
  - datalab.notebooks developers (!UNKNOWN)
requirements:
  - enabled in callbacks_enabled
"""

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "datalab.notebooks.preload"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        try:  # what the lookup and the action plugins import, so that forked workers inherit it
            import kubernetes.client  # noqa: F401  pylint: disable=unused-import
            import kubernetes.config  # noqa: F401  pylint: disable=unused-import
            import kubernetes.dynamic  # noqa: F401  pylint: disable=unused-import
        except ImportError:
            pass
