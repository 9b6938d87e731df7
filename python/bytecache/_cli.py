"""Command line maintenance of the result store.

``python -m bytecache {stats,ls,gc,verify,clear} [--cache-dir DIR]``

The cache directory is ``--cache-dir``, else ``$BYTECACHE_DIR``, else
``$XDG_CACHE_HOME/bytecache``, else ``~/.cache/bytecache``. The result store
lives in its ``store/`` subdirectory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bytecache import _config
from bytecache._bytecache import BytecacheError


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bytecache", description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", help="cache directory (store is in its store/ subdir)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("stats", help="entry count, size, hits")
    ls = sub.add_parser("ls", help="list entries")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    sub.add_parser("gc", help="enforce max_bytes now, compact, drop orphan files")
    sub.add_parser("verify", help="check every MAC and checksum; quarantine bad entries")
    clear = sub.add_parser("clear", help="remove all entries (or one function's)")
    clear.add_argument("--group", help="group (function identity) as 32 hex digits")
    args = parser.parse_args(argv)

    try:
        store = _config.store(_config.cache_dir(args.cache_dir))
        if args.cmd == "stats":
            s = store.stats()
            print(f"path:     {s['path']}")
            print(f"entries:  {s['entries']}")
            print(f"size:     {_human(s['bytes'])} of {_human(s['max_bytes'])}")
            print(f"hits:     {s['hits']}")
        elif args.cmd == "ls":
            for e in sorted(store.entries(), key=lambda e: -e["last_used"]):
                if args.json:
                    print(json.dumps(e))
                else:
                    used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["last_used"]))
                    print(
                        f"{e['key']}  {e['group'][:12]}  {_human(e['size']):>10}  "
                        f"{e['compute_seconds']:9.3f}s  {e['hits']:6d} hits  {used}"
                    )
        elif args.cmd == "gc":
            print(f"evicted {store.gc()} entries")
        elif args.cmd == "verify":
            r = store.verify()
            for key, reason in r["bad"]:
                print(f"BAD {key}: {reason} (quarantined)")
            print(f"checked {r['checked']} entries, {len(r['bad'])} bad")
            return 1 if r["bad"] else 0
        elif args.cmd == "clear":
            group = bytes.fromhex(args.group) if args.group else None
            print(f"removed {store.clear(group)} entries")
    except (BytecacheError, ValueError, OSError) as e:
        print(f"bytecache: error: {e}", file=sys.stderr)
        return 2
    return 0
