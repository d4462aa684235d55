"""TEST STAND-IN for the TrustStore controller of the Stackable secret-operator 26.3.

The operator's image cannot be built on the test bed, so the stand-in chart runs nothing. While a
test needs it, this plays the part of the operator that the roles rely on: for every TrustStore
(`secrets.stackable.tech/v1alpha1`) it reads the SecretClass the TrustStore names, takes the CA from
that class's `autoTls.ca.secret` (generating it when the class says `autoGenerate`, as the operator
does at start-up) and writes it as the operator does - an object named like the TrustStore, in its
namespace, of `spec.targetKind` (default ConfigMap), with the `tls-pem` file name `ca.crt`, owned by
the TrustStore (controller reference), without labels of its own.

Usage: `with truststore_controller(api_client): ...` runs a pass every `interval` seconds in a thread.
"""
from __future__ import annotations

import base64
import contextlib
import datetime
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.rest import ApiException

GROUP = "secrets.stackable.tech"
CA_FILE = "ca.crt"


def _new_ca():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secret-operator self-signed (test stand-in)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _class_ca(core, custom, class_name):
    """The PEM CA of SecretClass class_name (autoTls backend), or None while there is none."""
    try:
        secret_class = custom.get_cluster_custom_object(GROUP, "v1alpha2", "secretclasses", class_name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    ca = secret_class["spec"].get("backend", {}).get("autoTls", {}).get("ca", {})
    ref = ca.get("secret") or {}
    if not ref:
        return None
    try:
        data = core.read_namespaced_secret(ref["name"], ref["namespace"]).data or {}
    except ApiException as exc:
        if exc.status != 404 or not ca.get("autoGenerate"):
            return None
        cert, key = _new_ca()
        data = {CA_FILE: base64.b64encode(cert).decode(), "ca.key": base64.b64encode(key).decode()}
        core.create_namespaced_secret(ref["namespace"], client.V1Secret(
            metadata=client.V1ObjectMeta(name=ref["name"]), data=data))
    return base64.b64decode(data[CA_FILE]).decode() if CA_FILE in data else None


def reconcile(api_client):
    """One pass over every TrustStore in the cluster; returns the names written (namespace/name)."""
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    written = []
    for store in custom.list_cluster_custom_object(GROUP, "v1alpha1", "truststores")["items"]:
        spec, meta = store["spec"], store["metadata"]
        if spec.get("format") not in (None, "tls-pem"):
            continue  # the roles ask only for tls-pem
        pem = _class_ca(core, custom, spec["secretClassName"])
        if pem is None:
            continue
        owner = client.V1OwnerReference(api_version="%s/v1alpha1" % GROUP, kind="TrustStore", name=meta["name"],
                                        uid=meta["uid"], controller=True)
        target = client.V1ObjectMeta(name=meta["name"], namespace=meta["namespace"], owner_references=[owner])
        if spec.get("targetKind", "ConfigMap") == "Secret":
            body = client.V1Secret(metadata=target, string_data={CA_FILE: pem})
            write, read = core.replace_namespaced_secret, core.read_namespaced_secret
            create = core.create_namespaced_secret
        else:
            body = client.V1ConfigMap(metadata=target, data={CA_FILE: pem})
            write, read = core.replace_namespaced_config_map, core.read_namespaced_config_map
            create = core.create_namespaced_config_map
        try:
            current = read(meta["name"], meta["namespace"])
        except ApiException as exc:
            if exc.status != 404:
                raise
            create(meta["namespace"], body)
        else:
            if (current.data or {}).get(CA_FILE) == pem and current.metadata.owner_references:
                continue
            write(meta["name"], meta["namespace"], body)
        written.append("%s/%s" % (meta["namespace"], meta["name"]))
    return written


@contextlib.contextmanager
def truststore_controller(api_client, interval=1.0):
    """Reconcile TrustStores in a background thread while the block runs."""
    stop = threading.Event()
    errors = []

    def loop():
        while not stop.is_set():
            try:
                reconcile(api_client)
            except ApiException as exc:  # e.g. the CRD not installed yet: try again
                if exc.status not in (404, 409):
                    errors.append(exc)
            stop.wait(interval)

    thread = threading.Thread(target=loop, name="standin-truststore-controller", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
    if errors:
        raise errors[0]
