"""The end-to-end harness: the real programs of the stack as loopback processes.

- `platform`: what the converged install put in the cluster (values, Secrets, addresses);
- `keycloak_proc`: Keycloak on the node address and port of ConfigMap keycloak-address;
- `hub_proc` (+ `hub_config.py`, run by JupyterHub itself): the hub from the role's values;
- `browser`: Debian Chromium via playwright, trusting the platform CA through NSS.
"""
