"""Add the install's labels to every object a chart renders (a Helm post-renderer step).

Reads a YAML stream on stdin, writes it to stdout with DATALAB_HELM_LABELS (a JSON object)
merged into metadata.labels of each top-level object, and of each item of a *List object.
Only metadata.labels changes: selectors and pod-template labels, which a chart may rely on
and some of which are immutable, are left as rendered.  Exit status 2 with a one-line
message on stderr when the labels are missing or malformed or the input is not YAML.
"""
from __future__ import annotations

import json
import os
import re
import sys

import yaml

# Text that YAML readers other than PyYAML take for a number (Helm and kubectl read YAML with Go's
# rules: `5e34` and `1_000` are numbers there, plain strings for PyYAML, which would leave them
# unquoted). The chart's 4-character checksums are such text now and then.
NUMBER_LIKE = re.compile(r"^[-+]?(\.[0-9_]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$"
                         r"|^[-+]?0[xXoObB][0-9a-fA-F_]+$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")


class Dumper(yaml.SafeDumper):
    """SafeDumper that quotes every string a reader could take for a number."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if NUMBER_LIKE.match(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


Dumper.add_representer(str, _represent_str)


def fail(msg: str) -> None:
    sys.stderr.write("add_labels: %s\n" % msg)
    sys.exit(2)


def labels_from_env(raw: str | None) -> dict:
    if not raw:
        fail("DATALAB_HELM_LABELS is not set (the jupyterhub role sets it)")
    try:
        labels = json.loads(raw)
    except ValueError as exc:
        fail("DATALAB_HELM_LABELS is not JSON: %s" % exc)
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        fail("DATALAB_HELM_LABELS must be a JSON object of strings")
    return labels


def add_labels(doc, labels: dict):
    if not isinstance(doc, dict):
        return doc
    if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        doc["items"] = [add_labels(item, labels) for item in doc["items"]]
        return doc
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        meta = doc["metadata"] = {}
    meta["labels"] = dict(meta.get("labels") or {}, **labels)
    return doc


def render(stream: str, labels: dict) -> str:
    try:
        docs = [d for d in yaml.safe_load_all(stream) if d is not None]
    except yaml.YAMLError as exc:
        fail("the chart's output is not YAML: %s" % str(exc).splitlines()[0])
    # explicit_start: every document opens with `---`, the first one too, as Helm's own output does.
    # helm diff (HELM_DIFF_USE_UPGRADE_DRY_RUN) reads the manifest from the first `---` on and would
    # otherwise drop the first object.
    return yaml.dump_all([add_labels(d, labels) for d in docs], Dumper=Dumper, default_flow_style=False,
                         sort_keys=False, explicit_start=True)


def main() -> None:
    labels = labels_from_env(os.environ.get("DATALAB_HELM_LABELS"))
    sys.stdout.write(render(sys.stdin.read(), labels))


if __name__ == "__main__":
    main()
