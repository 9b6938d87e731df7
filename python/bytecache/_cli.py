"""Command line maintenance of the result store, and of the keys a remote
tier trusts.

``python -m bytecache {stats,ls,gc,verify,clear} [--cache-dir DIR]``
``python -m bytecache {keygen,trust,untrust}``

The cache directory is ``--cache-dir`` (before or after the command), else
``$BYTECACHE_DIR``, else ``$XDG_CACHE_HOME/bytecache``, else
``~/.cache/bytecache``. The result store lives in its ``store/``
subdirectory. No command creates a cache that does not exist. With a remote
(``$BYTECACHE_REMOTE``), ``stats`` reports it too and ``clear`` removes from
it as well; ``ls``, ``gc`` and ``verify`` are about the local store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from bytecache import _config, _inventory, _units
from bytecache._bytecache import BytecacheError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from bytecache._bytecache import Store
    from bytecache._remote import Backend


def _parser() -> argparse.ArgumentParser:
    # --cache-dir on the main parser and on every command: it may come before
    # or after the command (SUPPRESS keeps a later default from erasing it).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", default=argparse.SUPPRESS,
                        help="cache directory (the store is in its store/ subdirectory)")
    doc = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bytecache", description=doc,
                                     parents=[common])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("stats", parents=[common], help="entries, functions, size, hits")
    ls = sub.add_parser("ls", parents=[common], help="list entries, most recently used first")
    ls.add_argument("function", nargs="?", help="only this function's entries (name or id)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    sub.add_parser("gc", parents=[common], help="enforce max_bytes now, compact, drop orphans")
    sub.add_parser("verify", parents=[common],
                   help="check every MAC and checksum; quarantine bad entries")
    clear = sub.add_parser("clear", parents=[common],
                           help="remove entries: all, or those of the functions/ids given")
    clear.add_argument("targets", nargs="*", metavar="FUNCTION_OR_ID",
                       help="`module.qualname` or qualname, or an id (prefix) from `ls`")
    clear.add_argument("--group", help="a function's group id (hex, or a prefix of it)")
    sub.add_parser("keygen", parents=[common],
                   help="print your public key (made on first use) for others to trust")
    trust = sub.add_parser("trust", parents=[common],
                           help="use remote entries signed by KEY; without KEY: list the keys")
    trust.add_argument("key", nargs="?", metavar="KEY", help="ed25519:... as keygen prints it")
    trust.add_argument("label", nargs="?", default="", help="whose key it is (a reminder)")
    untrust = sub.add_parser("untrust", parents=[common], help="stop trusting KEY")
    untrust.add_argument("key", metavar="KEY")
    return parser


def _open(directory: str) -> Store | None:
    """The local store in `directory`, or None when there is none (nothing
    is created)."""
    if not os.path.isdir(os.path.join(directory, "store")):
        return None
    return _config.local_store(directory)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    directory = _config.cache_dir(getattr(args, "cache_dir", None))
    try:
        if args.cmd in ("keygen", "trust", "untrust"):
            return _keys(args, directory)
        store = _open(directory)
        if args.cmd == "stats":
            _stats(store, directory)
            _remote_stats()
        elif args.cmd == "ls":
            _ls(store, args.function, as_json=args.json)
        elif store is None:
            print(f"no cache in {directory}")
        elif args.cmd == "gc":
            print(f"evicted {store.gc()} entries")
        elif args.cmd == "verify":
            r = store.verify()
            for key, reason in r["bad"]:
                print(f"BAD {key}: {reason} (quarantined)")
            print(f"checked {r['checked']} entries, {len(r['bad'])} bad")
            return 1 if r["bad"] else 0
        elif args.cmd == "clear":
            targets = list(args.targets) + ([args.group] if args.group else [])
            _clear(store, targets)
    except _inventory.NoMatch as e:
        print(f"bytecache: {e}", file=sys.stderr)
        return 2
    except (BytecacheError, ValueError, OSError) as e:
        print(f"bytecache: error: {e}", file=sys.stderr)
        return 2
    return 0


def _stats(store: Store | None, directory: str) -> None:
    if store is None:
        print(f"path:     {os.path.join(directory, 'store')} (does not exist)")
        print("entries:  0")
        return
    s = store.stats()
    print(f"path:     {s['path']}")
    print(f"entries:  {s['entries']} ({len(_inventory.functions(store))} functions)")
    print(f"size:     {_units.size(s['bytes'])} of {_units.size(s['max_bytes'])}")
    print(f"hits:     {s['hits']}")


def _backend() -> Backend | None:
    """The configured remote's backend, or None (a line says why)."""
    url = _config.remote_url()
    if not url:
        return None
    from bytecache import _remote

    try:
        from bytecache import _redis
    except ImportError:
        print(f"remote:   {_remote.shown(url)} needs the redis package "
              "(pip install 'bytecache[remote]')", file=sys.stderr)
        return None
    return _redis.RedisBackend(url, _remote.namespace(), _remote.TIMEOUT)


def _remote_stats() -> None:
    from bytecache._remote import RemoteError, namespace, shown

    backend = _backend()
    if backend is None:
        return
    print(f"remote:   {shown(_config.remote_url())}")
    try:
        info = backend.info()
    except RemoteError as e:
        print(f"          unavailable: {e}")
        return
    limit = _units.size(info["max_memory"]) if info["max_memory"] else "no limit"
    print(f"          {info['entries']} entries for {namespace()}")
    print(f"          {info['hits']} remote hits (all machines)")
    print(f"          server memory {_units.size(info['used_memory'])} of {limit}")


def _ls(store: Store | None, target: str | None, *, as_json: bool) -> None:
    funcs = _inventory.functions(store) if store is not None else []
    rows = [(f, e) for f in funcs for e in f.entries]
    if target is not None:
        chosen, entry = _inventory.select(funcs, target)
        rows = [(f, e) for f, e in rows if f in chosen and (entry is None or e is entry)]
    rows.sort(key=lambda r: -r[1]["last_used"])
    now = time.time()
    if as_json:
        for f, e in rows:
            print(json.dumps({**e, "function": f.name}))
        return
    width = max([len("FUNCTION")] + [len(f.label) for f, _ in rows])
    print(f"{'ID':<12}  {'FUNCTION':<{width}}  {'SIZE':>10}  {'COMPUTE':>8}  {'HITS':>6}  "
          f"{'AGE':>7}")
    for f, e in rows:
        print(f"{e['key'][:12]}  {f.label:<{width}}  {_units.size(e['size']):>10}  "
              f"{_units.duration(e['compute_seconds']):>8}  {e['hits']:>6}  "
              f"{_units.duration(max(0.0, now - e['created'])):>7}")


def _clear(store: Store, targets: list[str]) -> None:
    """Removes the entries (all, or the targets') from the local store and
    from the remote, if one is configured."""
    backend = _backend()
    if not targets:
        print(f"removed {store.clear(None)} entries")
        _on_remote(backend, lambda r: r.clear(None))
        return
    funcs = _inventory.functions(store)
    # Resolve every target before removing anything: a typo removes nothing.
    keys: list[bytes] = []
    groups: list[bytes] = []
    for found, entry in [_inventory.select(funcs, t) for t in targets]:
        if entry is not None:
            keys.append(bytes.fromhex(entry["key"]))
        else:
            groups.extend(bytes.fromhex(f.group) for f in found)
    removed = sum(map(store.remove, keys)) + sum(map(store.clear, groups))
    print(f"removed {removed} entries")
    _on_remote(backend, lambda r: sum(map(r.remove, keys)) + sum(map(r.clear, groups)))


def _on_remote(backend: Backend | None, remove: Callable[[Backend], int]) -> None:
    from bytecache._remote import RemoteError

    if backend is None:
        return
    try:
        n = remove(backend)
    except RemoteError as e:
        print(f"bytecache: the remote cache is unavailable ({e}); nothing removed from it",
              file=sys.stderr)
        return
    print(f"removed {n} entries from the remote cache")


def _keys(args: argparse.Namespace, directory: str) -> int:
    from bytecache import _bytecache, _trust

    identity = _bytecache.Identity(directory)
    if args.cmd == "keygen":
        print(_trust.encode(identity.public))
        print(f"(the signing key is {identity.path}; keep it private)", file=sys.stderr)
        return 0
    listed = _trust.listed(identity)
    if args.cmd == "trust" and args.key is None:
        print(f"{_trust.encode(identity.public)}  (yours)")
        for key, label in listed:
            print(f"{_trust.encode(key)}  {label}".rstrip())
        return 0
    key = _trust.decode(args.key)
    kept = [(k, label) for k, label in listed if k != key]
    if args.cmd == "trust":
        kept.append((key, args.label))
    elif len(kept) == len(listed):
        print(f"bytecache: {args.key} is not in the trusted keys", file=sys.stderr)
        return 2
    _trust.set_listed(identity, kept)
    return 0
