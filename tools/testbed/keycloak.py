"""Placeholder until the Keycloak test-bed process lands (being written)."""
from .procs import TestbedError


def up():
    raise TestbedError("keycloak test bed not available yet")


def down():
    pass


def status():
    return {}


def env():
    raise TestbedError("keycloak test bed not available yet")
