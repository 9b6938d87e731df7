"""Identities of installed distributions, kept across processes.

A distribution's identity is the digest of its `RECORD` (`_modkind`): reading
and hashing it costs every new process about a millisecond per library
(numpy's RECORD lists ~1,500 files). The cache directory keeps each identity
in `libraries` with what it was computed from, and a later process reuses it
only while both are unchanged:

* the site directory's stamp (inode, size, mtime, ctime): installing,
  removing or re-installing any distribution there creates or removes a
  `.dist-info` directory, which changes it, so the distribution found for a
  top-level name is the same one;
* the `RECORD`'s stamp: an edited RECORD is read again.

A stamp written less than two seconds after its file last changed is not
kept (a file system with coarse timestamps could show the same stamp after
a later change). Nothing is kept or read in a cache directory another user
could write (the rule of `_config._check_dir`). The file is one line per
entry, tab-separated; a line that does not parse is ignored, and a file
that is not ours is never read past its first line.
"""

from __future__ import annotations

import os
import time

_MAGIC = "bytecache-libraries 1"
_NAME = "libraries"
# Entries beyond this start the file over.
_MAX_ENTRIES = 4096
_RACY_NS = 2_000_000_000

# key -> (site stamp, info, record stamp, identity, tops), as read
_entries: dict[str, tuple[str, str, str, str, str]] | None = None


def _path() -> str | None:
    from bytecache import _config

    directory = _config.cache_dir()
    try:
        st = os.stat(directory)
    except OSError:
        return None
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return None
    return os.path.join(directory, _NAME)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _stamp(st: os.stat_result | None) -> str | None:
    if st is None:
        return None
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"


def _read(path: str) -> dict[str, tuple[str, str, str, str, str]]:
    entries: dict[str, tuple[str, str, str, str, str]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            if f.readline().rstrip("\n") != _MAGIC:
                return entries
            for line in f:
                fields = line.rstrip("\n").split("\t")
                if len(fields) == 7:
                    entries[fields[0] + "\t" + fields[1]] = (
                        fields[2], fields[3], fields[4], fields[5], fields[6])
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return entries


def _loaded() -> dict[str, tuple[str, str, str, str, str]]:
    global _entries
    if _entries is None:
        path = _path()
        _entries = _read(path) if path else {}
    return _entries


def recall(site: str, top: str) -> tuple[str, set[str]] | None:
    """The identity kept for `top` in `site` and the top-level names its
    distribution installs, while neither the site nor its RECORD changed."""
    entry = _loaded().get(site + "\t" + top)
    if entry is None:
        return None
    site_stamp, info, record_stamp, identity, tops = entry
    if _stamp(_stat(site)) != site_stamp:
        return None
    if _stamp(_stat(os.path.join(site, info, "RECORD"))) != record_stamp:
        return None
    return identity, set(tops.split(" "))


def keep(site: str, top: str, info: str, identity: str, tops: set[str]) -> None:
    """Keeps an identity just computed from `site/info/RECORD` (best effort:
    a file that cannot be written is left as it is)."""
    site_st, record_st = _stat(site), _stat(os.path.join(site, info, "RECORD"))
    if site_st is None or record_st is None:
        return
    newest = max(site_st.st_mtime_ns, site_st.st_ctime_ns,
                 record_st.st_mtime_ns, record_st.st_ctime_ns)
    if newest > time.time_ns() - _RACY_NS:
        return
    site_stamp, record_stamp = str(_stamp(site_st)), str(_stamp(record_st))
    fields = (site, top, site_stamp, info, record_stamp, identity, " ".join(sorted(tops)))
    if any("\t" in f or "\n" in f for f in fields) or any(" " in t for t in tops):
        return
    path = _path()
    if path is None:
        return
    entries = _read(path)  # what other processes kept since
    if len(entries) >= _MAX_ENTRIES:
        entries = {}
    entry = (site_stamp, info, record_stamp, identity, fields[6])
    entries[site + "\t" + top] = entry
    _loaded()[site + "\t" + top] = entry
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(_MAGIC + "\n")
            for key, entry in entries.items():
                f.write(key + "\t" + "\t".join(entry) + "\n")
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
