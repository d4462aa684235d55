"""Image builds of the local inventory: cold (an empty image cache) and unchanged (everything cached).

Each cold run is a new process, `python -m tools.testbed.images build <the seven images>`, with
DATALAB_CACHE set to a new empty directory: Debian roots, wheels' installs, layers, archives and the
MinIO / mc binaries are all made again.  Only the registries' download caches stay warm, as on CI
(.debs under DATALAB_DOWNLOADS, pip's wheels, npm's and Maven's caches, Go's module and build caches).
Each unchanged run is the same command again on the last cold run's cache: it computes every key
and finds every archive valid.  Per image, a cold figure is the time its own `ensure` took, bases it
was the first to need included (the order is the command's: keycloak first builds debian-base and
debian-jre).

Writes benchmarks/results/images.json and the section "## Image builds" of docs/benchmarks.md; with
--images other than the local inventory's seven (e.g. `--images spark-base`), images-<names>.json and
the section "## Image builds: <names>".
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.report import replace_section, save, stamp  # noqa: E402
from tools.testbed.platform_images import LOCAL_INVENTORY  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "images.json"
SECTION = "## Image builds"
LINE = re.compile(r"^(\S+) (built|cached) ([0-9.]+)s ")


def say(msg: str) -> None:
    print(f"[bench-images] {msg}", file=sys.stderr, flush=True)


def build_all(cache: Path, names: tuple[str, ...]) -> dict:
    """One process building (or finding) `names` in `cache`: wall time and each image's own time."""
    env = {**os.environ, "DATALAB_CACHE": str(cache)}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tools.testbed.images", "build", *names], cwd=REPO, env=env,
                          text=True, capture_output=True, check=False)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"image build failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    per, states = {}, {}
    for line in proc.stdout.splitlines():
        m = LINE.match(line)
        if m:
            per[m.group(1)] = float(m.group(3))
            states[m.group(1)] = m.group(2)
    if set(per) != set(names):
        raise SystemExit(f"the build printed no result for {sorted(set(names) - set(per))}:\n{proc.stdout}")
    return {"wall_s": round(wall, 1), "per_image_s": per, "states": states}


def write_doc(report: dict, section: str) -> None:
    cold, warm = report["cold"], report["unchanged"]
    med = report["median"]
    names = report["images"]
    what = f"the {len(names)} images of the local inventory" if section == SECTION else ", ".join(names)
    lines = [
        section, "",
        f"Measured {report['when']} on {report['cores']} cores by `{report['command']}` (raw data in "
        f"`benchmarks/results/{report['results']}`): {what}, {len(cold)} cold "
        f"builds (each a new process on a new empty image cache; registry download caches warm, as on CI) and "
        f"{len(warm)} unchanged reruns (the same command on a full cache); medians. Load average at the start: "
        f"{report['load_start']}, at the end: {report['load_end']}.", "",
        "| | cold, median | cold, all runs | unchanged, median |", "|---|---|---|---|",
        f"| {'all ' + str(len(names)) + ' images' if len(names) > 1 else names[0]}, whole process | "
        f"{med['cold_wall_s']} s | "
        f"{', '.join(str(r['wall_s']) for r in cold)} | {med['unchanged_wall_s']} s |",
    ]
    for n in names:
        lines.append(f"| `{n}` | {med['cold_per_image_s'][n]} s | "
                     f"{', '.join(str(r['per_image_s'][n]) for r in cold)} | {med['unchanged_per_image_s'][n]} s |")
    lines += ["", f"Unchanged / cold, whole process: {med['unchanged_over_cold']} (median of the {len(cold)} pairs). "
              "A cold figure includes the bases that image was the first to need"
              + (" (keycloak: debian-base and debian-jre; k8s-hub: debian-python)." if section == SECTION
                 else " (from the Debian root up)."), ""]
    replace_section(section, lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--images", nargs="*", default=list(LOCAL_INVENTORY))
    args = parser.parse_args()
    names = tuple(args.images)
    default = names == tuple(LOCAL_INVENTORY)
    section = SECTION if default else f"{SECTION}: {', '.join(names)}"
    results = RESULTS if default else RESULTS.with_name(f"images-{'-'.join(names)}.json")
    load_start = os.getloadavg()[0]
    cold, warm = [], []
    with tempfile.TemporaryDirectory(prefix="bench-images-") as work:
        for i in range(args.runs):
            cache = Path(work) / f"cache-{i}"
            cache.mkdir()
            say(f"cold run {i + 1}/{args.runs} into {cache}")
            cold.append(build_all(cache, names))
            say(f"cold run {i + 1}: {cold[-1]['wall_s']} s")
            if i < args.runs - 1:
                shutil.rmtree(cache, ignore_errors=True)
        for i in range(args.runs):
            warm.append(build_all(cache, names))
            if set(warm[-1]["states"].values()) != {"cached"}:
                raise SystemExit(f"an unchanged rerun rebuilt something: {warm[-1]['states']}")
            say(f"unchanged run {i + 1}: {warm[-1]['wall_s']} s")
    median = {
        "cold_wall_s": round(statistics.median(r["wall_s"] for r in cold), 1),
        "unchanged_wall_s": round(statistics.median(r["wall_s"] for r in warm), 1),
        "unchanged_over_cold": round(statistics.median(w["wall_s"] / c["wall_s"] for c, w in zip(cold, warm)), 4),
        "cold_per_image_s": {n: round(statistics.median(r["per_image_s"][n] for r in cold), 1) for n in names},
        "unchanged_per_image_s": {n: round(statistics.median(r["per_image_s"][n] for r in warm), 2) for n in names},
    }
    report = {**stamp(load_start), "images": list(names),
              "cold": cold, "unchanged": warm, "median": median, "results": results.name,
              "command": "python benchmarks/images.py" + ("" if default else " --images " + " ".join(names))}
    save(results, report)
    write_doc(report, section)
    say(f"median: {json.dumps(median)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
