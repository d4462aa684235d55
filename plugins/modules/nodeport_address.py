#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: nodeport_address
short_description: Find the node address at which a NodePort Service is reachable
version_added: 0.1.0
description:
  - Reads a Service, its EndpointSlices (C(discovery.k8s.io/v1)) and the Nodes that run its ready
    endpoints, and returns the node address and node port at which the Service is reachable from
    outside the cluster, for example to publish it in a ConfigMap or put it in a certificate.
  - Only nodes that run a ready endpoint of the selected port qualify, so the address also works for a
    Service with C(externalTrafficPolicy=Local).
  - Each qualifying node contributes its best address by O(address_types); the candidates are ranked by
    that preference, then by node name, and the first one is returned. The result is the same for the
    same cluster state, whatever order the API lists objects in.
  - Reads only; never changes the cluster.
  - Runs as an action plugin in the controller's process (like the C(kubernetes.core.k8s) lookup), so it starts no
    module and the Python of the target host needs no C(kubernetes) library; the API server is reached from the
    controller.
author:
  - datalab.notebooks developers (!UNKNOWN)
options:
  name:
    description:
      - Name of the Service.
    type: str
    required: true
  namespace:
    description:
      - Namespace of the Service.
    type: str
    required: true
  port:
    description:
      - The Service port, by name (V(https)) or by number (V(443), the Service port, not the node port).
      - May be omitted when the Service has a single port.
    type: str
  address_types:
    description:
      - Node address types to use, most preferred first. A node with none of them does not qualify.
    type: list
    elements: str
    choices: [ExternalIP, InternalIP, ExternalDNS, InternalDNS, Hostname]
    default: [ExternalIP, InternalIP]
  scheme:
    description:
      - URL scheme of the returned RV(url).
    type: str
    default: https
  wait:
    description:
      - Wait up to O(wait_timeout) seconds for a ready endpoint when there is none yet.
      - Other failures (Service missing, wrong type, unknown port, no usable node address) are reported at once.
    type: bool
    default: false
  wait_timeout:
    description:
      - How many seconds O(wait) waits.
    type: int
    default: 120
extends_documentation_fragment:
  - datalab.notebooks.k8s_connection
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - datalab.notebooks.controller_action
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  action_group:
    support: full
    membership:
      - datalab.notebooks.k8s
  check_mode:
    support: full
  diff_mode:
    support: N/A
    details: The module changes nothing.
seealso:
  - name: Service type NodePort
    description: How Kubernetes exposes a Service on every node.
    link: https://kubernetes.io/docs/concepts/services-networking/service/#type-nodeport
  - name: EndpointSlices
    description: The API that lists a Service's endpoints and the nodes they run on.
    link: https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/
"""

EXAMPLES = r"""
- name: Find where Keycloak is reachable from outside the cluster
  datalab.notebooks.nodeport_address:
    kubeconfig: ~/.kube/config
    namespace: datalab
    name: keycloak
    port: https
    wait: true
    wait_timeout: 300
  register: keycloak_nodeport

- name: Publish the Keycloak address for the hub
  kubernetes.core.k8s:
    kubeconfig: ~/.kube/config
    state: present
    definition:
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: keycloak-address
        namespace: datalab
      data:
        keycloakAddress: "{{ keycloak_nodeport.address }}"
        keycloakNodeIp: "{{ keycloak_nodeport.node_ip }}"

- name: Use the nodes' internal addresses, with the connection options set once for the group
  module_defaults:
    group/datalab.notebooks.k8s:
      kubeconfig: /etc/kubernetes/admin.conf
      context: admin@prod
  datalab.notebooks.nodeport_address:
    namespace: datalab
    name: jupyterhub
    port: "80"
    address_types: [InternalIP]
    scheme: http
"""

RETURN = r"""
node_name:
  description: Name of the chosen node.
  returned: success
  type: str
  sample: worker-1
node_ip:
  description: The chosen node's address (an IP address, or a DNS name for the DNS address types).
  returned: success
  type: str
  sample: 192.0.2.10
address_type:
  description: Type of RV(node_ip), one of O(address_types).
  returned: success
  type: str
  sample: ExternalIP
node_port:
  description: The node port of the selected Service port.
  returned: success
  type: int
  sample: 31093
port_name:
  description: Name of the selected Service port; empty for an unnamed port.
  returned: success
  type: str
  sample: https
address:
  description: RV(node_ip) and RV(node_port) as C(host:port), with an IPv6 address in brackets.
  returned: success
  type: str
  sample: 192.0.2.10:31093
url:
  description: O(scheme)://RV(address).
  returned: success
  type: str
  sample: https://192.0.2.10:31093
candidates:
  description:
    - Every qualifying node, best first (address type preference, then node name). The first one is the result.
  returned: success
  type: list
  elements: dict
  contains:
    node_name:
      description: Node name.
      type: str
    node_ip:
      description: The node's preferred address.
      type: str
    address_type:
      description: Type of that address.
      type: str
    address:
      description: C(host:port) on that node.
      type: str
  sample:
    - {node_name: worker-1, node_ip: 192.0.2.10, address_type: ExternalIP, address: "192.0.2.10:31093"}
    - {node_name: worker-2, node_ip: 10.0.0.12, address_type: InternalIP, address: "10.0.0.12:31093"}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.datalab.notebooks.plugins.module_utils import k8s_connection, nodeport


def main():
    argument_spec = dict(nodeport.ARGUMENT_SPEC, **k8s_connection.CONNECTION_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not k8s_connection.HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=k8s_connection.KUBERNETES_IMPORT_ERROR)

    params = module.params
    try:
        with k8s_connection.api_client(params) as client:
            result = nodeport.discover_with(k8s_connection.make_get_json(client), params)
    except (nodeport.NodePortError, k8s_connection.K8sConnectionError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
