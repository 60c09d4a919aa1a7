"""`python -m minisparse.zoo`: list the shipped models; `build` ships a `minisparse reproduce` folder's models;
`unpack` lays the shipped models out for `minisparse reproduce --reuse` (see files/README.md)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .packaged import FILES, build, manifest, unpack


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minisparse.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="action")
    b = sub.add_parser("build", help="ship seed 0 of a finished `minisparse reproduce --out OUT` folder")
    b.add_argument("out", type=Path)
    b.add_argument("--command", required=True, help="the command that made OUT, recorded as provenance")
    b.add_argument("--commit", help="the commit that made OUT (default: this checkout's HEAD)")
    u = sub.add_parser("unpack", help="lay the shipped models out as reproduce's models in OUT")
    u.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.action == "build":
        build(args.out, command=args.command, commit=args.commit or _commit())
    elif args.action == "unpack":
        for path in unpack(args.out):
            print(path)
        return 0
    for name, e in manifest().items():
        print(f"{name:16s} {e['bytes'] / 1e6:5.2f} MB  density {e['density']:<7.4g} val {e['val_loss']:.3f} nats/byte"
              + (f"  matched to {e['matched_to']}" if e["matched_to"] else ""))
    print(f"files in {FILES}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
