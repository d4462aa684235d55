"""The end-to-end harness: Chromium against the platform the local inventory runs on the real node.

- `platform`: what the converged install put in the cluster (values, Secrets, addresses);
- `flows`: what a person does in the browser (log in through Keycloak, spawn, sign up);
- `browser`: Debian Chromium via playwright, trusting the platform CA through NSS.
"""
