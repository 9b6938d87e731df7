"""What `_modkind` learns about the installation, kept across processes.

Two things cost every new process about a millisecond each, and change only
when the installation does:

* a distribution's identity, the digest of its `RECORD` (numpy's lists
  ~1,500 files). Kept with the stamps (inode, size, mtime, ctime) of the
  site directory and of the RECORD, and reused only while both are
  unchanged: installing, removing or re-installing any distribution there
  creates or removes a `.dist-info` directory, which changes the site's
  stamp, so the distribution found for a top-level name is the same one;
  an edited RECORD changes its own.
* the interpreter's library directories (`sysconfig.get_paths()`, which
  imports `sysconfig` and the build's configuration). Kept under a digest
  of everything they are computed from: the interpreter's prefixes,
  version, ABI and platform, the environment variables `sysconfig` reads,
  and the stamps of the executable, `sysconfig` (a package from 3.13) and the configuration
  module.

A stamp written less than two seconds after its file last changed is not
kept (a file system with coarse timestamps could show the same stamp after
a later change). Nothing is kept or read in a cache directory another user
could write (`_config.trusted`, the store's rule). The file, `libraries` in the
cache directory, is one tab-separated line per entry under a magic line; a
line that does not parse is ignored, and a file that is not ours is never
read past its first line.
"""

from __future__ import annotations

import os
import sys
import time

_MAGIC = "bytecache-libraries 2"
_NAME = "libraries"
# Entries beyond this start the file over.
_MAX_ENTRIES = 4096
_RACY_NS = 2_000_000_000
# Fields per line, by kind: "L" a distribution's identity, "P" the paths.
_FIELDS = {"L": 8, "P": 3}
# Key fields per line, by kind (the kind included).
_KEYS = {"L": 3, "P": 2}

# key -> the rest of its line, as read
_entries: dict[str, tuple[str, ...]] | None = None
# where they were read from: the cache directories that decided it
_read_for: tuple[str, ...] = ()
# cache directories named by `memoize(cache_dir=...)`, in order
_named: list[str] = []


def consider(directory: str) -> None:
    """A cache directory a memoized function uses: the file is kept there
    when the default cache directory does not exist."""
    if directory not in _named:
        _named.append(directory)


def _path() -> str | None:
    """The file in the default cache directory, else in the first directory
    `consider`ed; None when neither exists or another user can write it."""
    from bytecache import _config

    for directory in (_config.cache_dir(), *_named):
        try:
            st = os.stat(directory)
        except OSError:
            continue
        if not _config.trusted(st):
            return None
        return os.path.join(directory, _NAME)
    return None


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _stamp(st: os.stat_result | None) -> str | None:
    if st is None:
        return None
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"


def _settled(*stats: os.stat_result) -> bool:
    """Whether no file changed in the last two seconds (see the module docs)."""
    newest = max(max(st.st_mtime_ns, st.st_ctime_ns) for st in stats)
    return newest <= time.time_ns() - _RACY_NS


def _read(path: str) -> dict[str, tuple[str, ...]]:
    entries: dict[str, tuple[str, ...]] = {}
    try:
        # Bytes, decoded here: a first text-mode `open` in a process costs
        # ~30 us more (a first call's keying reads this file).
        with open(path, "rb") as f:
            magic = f.readline(len(_MAGIC) + 1)
            if magic.rstrip(b"\n") != _MAGIC.encode():
                return entries
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return entries
    for line in text.split("\n"):
        fields = line.split("\t")
        n = _KEYS.get(fields[0])
        if n is not None and len(fields) == _FIELDS[fields[0]]:
            entries["\t".join(fields[:n])] = tuple(fields[n:])
    return entries


def _loaded() -> dict[str, tuple[str, ...]]:
    """The entries of the file, read again when the cache directory changed
    since (`BYTECACHE_DIR` set after the import, say): else this process
    would keep reading one file and writing another."""
    global _entries, _read_for
    from bytecache import _config

    where = (_config.cache_dir(), *_named)
    if _entries is None or where != _read_for:
        path = _path()
        _entries = _read(path) if path else {}
        _read_for = where
    return _entries


def _keep(key: tuple[str, ...], entry: tuple[str, ...]) -> None:
    """Adds an entry (its key's fields, the kind first, and the rest) to the
    file (best effort: a file that cannot be written is left as it is),
    merged with what other processes kept since."""
    if any("\t" in f or "\n" in f for f in (*key, *entry)):
        return
    joined = "\t".join(key)
    _loaded()[joined] = entry
    path = _path()
    if path is None:
        return
    entries = _read(path)
    if len(entries) >= _MAX_ENTRIES:
        entries = {}
    entries[joined] = entry
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(_MAGIC + "\n")
            for k, e in entries.items():
                f.write(k + "\t" + "\t".join(e) + "\n")
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


# --- distributions' identities ------------------------------------------------


def recall(site: str, top: str) -> tuple[str, set[str]] | None:
    """The identity kept for `top` in `site` and the top-level names its
    distribution installs, while neither the site nor its RECORD changed."""
    entry = _loaded().get(f"L\t{site}\t{top}")
    if entry is None:
        return None
    site_stamp, info, record_stamp, identity, tops = entry
    if _stamp(_stat(site)) != site_stamp:
        return None
    if _stamp(_stat(os.path.join(site, info, "RECORD"))) != record_stamp:
        return None
    return identity, set(tops.split(" "))


def keep(site: str, top: str, info: str, identity: str, tops: set[str]) -> None:
    """Keeps an identity just computed from `site/info/RECORD`."""
    site_st, record_st = _stat(site), _stat(os.path.join(site, info, "RECORD"))
    if site_st is None or record_st is None or not _settled(site_st, record_st):
        return
    if any(" " in t for t in tops):
        return
    _keep(("L", site, top),
          (str(_stamp(site_st)), info, str(_stamp(record_st)), identity, " ".join(sorted(tops))))


# --- the interpreter's library directories -------------------------------------

#: What `sysconfig` reads from the environment.
_ENVIRONMENT = ("_PYTHON_SYSCONFIGDATA_NAME", "_PYTHON_PROJECT_BASE", "_PYTHON_HOST_PLATFORM",
                "PYTHONHOME", "PYTHONUSERBASE")


def _interpreter() -> str | None:
    """A digest of everything `sysconfig.get_paths()` is computed from, or
    None when one of its files cannot be found or changed just now."""
    stdlib = os.path.dirname(os.__file__)
    multiarch = getattr(sys.implementation, "_multiarch", "")
    config = f"_sysconfigdata_{getattr(sys, 'abiflags', '')}_{sys.platform}_{multiarch}.py"
    # sysconfig is a package from 3.13 on.
    module = next((m for m in (os.path.join(stdlib, "sysconfig.py"),
                               os.path.join(stdlib, "sysconfig", "__init__.py"))
                   if os.path.exists(m)), "sysconfig")
    files = (os.path.realpath(sys.executable), module, os.path.join(stdlib, config))
    stats = [_stat(f) for f in files]
    if any(st is None for st in stats) or not _settled(*stats):  # type: ignore[arg-type]
        return None
    facts = (sys.version, sys.implementation.name, sys.executable, sys.prefix, sys.exec_prefix,
             sys.base_prefix, sys.base_exec_prefix, sys.platlibdir, sys.platform, os.name,
             tuple(os.environ.get(v) for v in _ENVIRONMENT), files,
             tuple(_stamp(st) for st in stats))
    from bytecache import _bytecache

    return _bytecache.hash_value(repr(facts)).hex()


def paths(names: tuple[str, ...]) -> dict[str, str]:
    """`sysconfig.get_paths()` (those of `names`), kept for this interpreter."""
    fingerprint = _interpreter()
    if fingerprint is not None:
        entry = _loaded().get(f"P\t{fingerprint}")
        if entry is not None:
            values = entry[0].split("\x1f")
            if len(values) == len(names):
                return {n: v for n, v in zip(names, values, strict=True) if v}
    import sysconfig

    found = sysconfig.get_paths()
    if fingerprint is not None:
        _keep(("P", fingerprint), ("\x1f".join(found.get(n, "") for n in names),))
    return {n: found[n] for n in names if n in found}
