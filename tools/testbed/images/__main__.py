"""`python -m tools.testbed.images build <name>... | list | import <containerd socket> <name>...`"""
from __future__ import annotations

import argparse
import sys
import time

from ..procs import TestbedError
from . import api, recipes


def _list() -> int:
    print(f"{'NAME':16} {'KEY':14} {'SIZE':>8}  {'CACHED':6}  REFS")
    for name in sorted(recipes.RECIPES):
        k = api.keys(name)[name]
        b = api.cached(name)
        size = f"{b.record['size'] / 1e6:.0f} MB" if b else "-"
        print(f"{name:16} {k[:12]:14} {size:>8}  {'yes' if b else 'no':6}  {' '.join(recipes.RECIPES[name].refs)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.testbed.images")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or find cached) images")
    b.add_argument("names", nargs="+")
    sub.add_parser("list", help="recipes, their keys and whether they are cached")
    i = sub.add_parser("import", help="import images into a containerd (namespace k8s.io)")
    i.add_argument("address")
    i.add_argument("names", nargs="+")
    args = p.parse_args(argv)
    try:
        if args.cmd == "list":
            return _list()
        built = []
        for name in args.names:
            t0 = time.monotonic()
            res = api.ensure(name)
            built.append(res)
            print(f"{name} {'built' if res.built else 'cached'} {time.monotonic() - t0:.1f}s {res.archive}")
        if args.cmd == "import":
            t0 = time.monotonic()
            api.import_into(args.address, built)
            print(f"imported into {args.address} in {time.monotonic() - t0:.1f}s")
        return 0
    except TestbedError as exc:
        print(f"[testbed] error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
