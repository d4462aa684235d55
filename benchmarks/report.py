"""What the benchmarks share: the test bed for the length of a run (started if none runs, stopped only
then), their raw results (JSON, stamped with the time, the cores and the load), and each one's own
`## ` section of docs/benchmarks.md, leaving the sections other benchmarks own."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def replace_section(title: str, lines: list[str], doc: Path = DOC) -> None:
    """`title` is the whole heading line ("## ..."); `lines` the section, heading included."""
    text = doc.read_text()
    start = text.find(title + "\n")
    body = "\n".join(lines).rstrip("\n") + "\n"
    if start >= 0:
        end = text.find("\n## ", start + len(title))
        text = text[:start] + body + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    doc.write_text(text)


def stamp(load_start: float) -> dict:
    """When and where a run was measured: UTC time, cores, load average at the start and now."""
    return {"when": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "cores": os.cpu_count(),
            "load_start": round(load_start, 1), "load_end": round(os.getloadavg()[0], 1)}


def save(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")


def publish(path: Path, report: dict, write_doc, tag: str) -> None:
    """Save the raw results, write the benchmark's section, print the medians."""
    save(path, report)
    write_doc(report)
    print(f"[{tag}] median: {json.dumps(report['median'])}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def testbed_up():
    """The running test bed's ClusterInfo, or a new one that is stopped afterwards."""
    from tools.testbed import cluster

    info, started = cluster.ensure_up()
    try:
        yield info
    finally:
        if started:
            cluster.down()


def runs_from_command_line(doc: str, default: int = 3) -> int:
    """`--runs N` (default 3); the benchmark's docstring is its --help."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=default)
    return parser.parse_args().runs
