"""Where a module comes from: the standard library, an installed distribution,
or the user's own code. Library code is keyed by what is installed, never
walked; the user's code is fingerprinted. Called from the Rust identity layer.

Nothing here imports a module of the user's or runs its code: a module that
is not loaded is located with the import system's finders (as
`importlib.util.find_spec` does, without importing its parent packages) and
read and compiled, never executed. Nor is `importlib.metadata` imported (it
costs ~25 ms in a new process): distributions are found by their `.dist-info`
directories and keyed by the digest of their `RECORD` (every installed file's
hash), so a re-install with edited code and the same version is a different
library. The cache directory keeps those identities for later processes
(`_distcache`)."""

from __future__ import annotations

import _imp
import os
import sys

from bytecache import _bytecache, _distcache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_PY = "python-{}.{}.{}".format(*sys.version_info[:3])
_BUILTIN_MODULES = frozenset(sys.builtin_module_names) | {"builtins"}
_STDLIB_NAMES = sys.stdlib_module_names
_kinds: dict[str, str | None] = {}


_NAMES = ("stdlib", "platstdlib", "purelib", "platlib")


_PATHS = _distcache.paths(_NAMES)  # sysconfig.get_paths(), kept across processes


def _dirs(*names: str, resolve: bool = True) -> tuple[str, ...]:
    paths = _PATHS
    spell = os.path.realpath if resolve else os.path.normpath
    return tuple(spell(paths[n]) + os.sep for n in names if n in paths)


_STDLIB = _dirs("stdlib", "platstdlib")
_SITE = _dirs("purelib", "platlib")
_SITE_PART = os.sep + "site-packages" + os.sep
# Library directories as spelled and as resolved: a module path outside all
# of them is the user's code without resolving it (a system call per path
# component). Taking a library for the user's code only walks it, which is
# never stale; the other way round could be, so candidates are resolved.
_LIBRARY_PREFIXES = _STDLIB + _SITE + _dirs(*_NAMES, resolve=False)


# --- locating a module without importing anything ---------------------------


def locate(name: str) -> Any:
    """The spec `import name` would find, or None. Parent packages that are
    not loaded are located too, never imported (their `__init__` could
    extend `__path__` at run time; that is not seen here)."""
    parent = name.rpartition(".")[0]
    path = None
    if parent:
        loaded = sys.modules.get(parent)
        if loaded is not None:
            path = vars(loaded).get("__path__")
        else:
            spec = locate(parent)
            path = getattr(spec, "submodule_search_locations", None)
        if path is None:
            return None  # the parent is not a package
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            spec = find_spec(name, path, None)
        except Exception:  # noqa: BLE001 - a broken finder: ask the next one
            continue
        if spec is not None:
            return spec
    return None


def _module_path(name: str) -> tuple[bool, str | None]:
    """(found, path of the file the module runs from)."""
    module = sys.modules.get(name)
    if module is not None:
        # vars(): a module-level `__getattr__` (lazy loaders) is not called.
        path = vars(module).get("__file__")
        return True, path if isinstance(path, str) else None
    spec = locate(name)
    if spec is None:
        return False, None
    return True, spec.origin if getattr(spec, "has_location", False) else None


def _classify(name: str) -> str | None:
    if name in _BUILTIN_MODULES:
        return _PY
    if name == "bytecache" or name.startswith("bytecache."):
        # Our own wrappers are keyed by version; what they wrap is walked.
        return "bytecache==" + _bytecache.__version__
    found, path = _module_path(name)
    top, dot, _ = name.partition(".")
    if dot and path:
        # A submodule inside its top-level package's directory is classified
        # with it (without resolving its path again).
        top_path = _module_path(top)[1]
        if top_path and path.startswith(os.path.dirname(top_path) + os.sep):
            return classify(top)
    if not path:
        if "." in name:
            # A submodule without a file of its own (made by its package's
            # extension, or lazily, like `six.moves`) ships with its package.
            return classify(name.rpartition(".")[0])
        if found and name in _STDLIB_NAMES:
            return _PY  # frozen (`_frozen_importlib`)
        # Namespace packages and synthetic modules (exec'd code, notebook
        # cells) belong to the user: walk them.
        return None
    if os.path.isabs(path) and not (path.startswith(_LIBRARY_PREFIXES) or _SITE_PART in path):
        return None
    real = _realpath(path)
    site = _site_of(real)
    if site is not None:
        return _installed(site, real[len(site):])
    if real.startswith(_STDLIB):
        return _PY
    return None


# directory -> where it resolves to, for this process (the library
# directories, resolved at import, are the roots)
_real_dirs: dict[str, str] = {d.rstrip(os.sep): d.rstrip(os.sep) for d in _STDLIB + _SITE}


def _realpath(path: str) -> str:
    """`os.path.realpath(path)` for a module's file, resolving each directory
    once per process: a file in a directory seen before costs one `lstat`
    (is it a link?) instead of one per component of its path."""
    head, sep, tail = path.rpartition(os.sep)
    real_head = _real_dirs.get(head)
    if real_head is not None and tail not in ("", ".", ".."):
        # In a directory resolved before (so absolute and normalized): no
        # `normpath`, no `split`.
        real = real_head + sep + tail
    else:
        if not os.path.isabs(path) or os.path.normpath(path) != path:
            return os.path.realpath(path)
        head, tail = os.path.split(path)
        if not tail:
            return path  # the root
        real_head = _real_dirs.get(head)
        if real_head is None:
            real_head = _real_dirs[head] = _realpath(head)
        real = os.path.join(real_head, tail)
    return os.path.realpath(real) if os.path.islink(real) else real


def _own_version() -> str:
    from bytecache import _bytecache

    return _bytecache.__version__


_marked: tuple[str, ...] = ()


def mark(patterns: tuple[str, ...]) -> None:
    """Modules matching `patterns` (names or fnmatch globs) are the user's
    code from now on, wherever they are installed: `enable(modules=...)`
    marks a library the user works on, so its code is fingerprinted (edits
    recompute) rather than keyed by version."""
    global _marked
    if patterns == _marked:
        return
    _marked = patterns
    _kinds.clear()
    from bytecache import _bytecache

    _bytecache.forget_classifications()


def _is_marked(name: str) -> bool:
    import fnmatch

    return any(name == p or fnmatch.fnmatchcase(name, p) for p in _marked)


def classify(name: str) -> str | None:
    """None for the user's code; else the library and its installed identity."""
    try:
        return _kinds[name]
    except KeyError:
        kind = _kinds[name] = None if _marked and _is_marked(name) else _classify(name)
        return kind


# --- installed distributions --------------------------------------------------

# site directory -> {normalized distribution name: its metadata directory}
_infos: dict[str, dict[str, str]] = {}
# (site directory, top-level name) -> identity
_identities: dict[tuple[str, str], str] = {}
_META = (".dist-info", ".egg-info")


def _site_of(real: str) -> str | None:
    for site in _SITE:
        if real.startswith(site):
            return site
    i = real.find(_SITE_PART)
    return real[: i + len(_SITE_PART)] if i >= 0 else None


def _normalize(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def _top_of(entry: str) -> str | None:
    """The top-level module an installed path belongs to (`numpy` for
    `numpy/linalg/x.py`, `six` for `six.py`), None for metadata, scripts
    and `.pth` files."""
    first = entry.strip('"').split("/", 1)
    if first[0] in ("", "..", "__pycache__") or first[0].endswith(_META + (".data",)):
        return None
    if len(first) == 1:  # a file at the top: a module (`six.py`, `_x.cpython-311-...so`)
        stem, dot, ext = first[0].partition(".")
        return stem if dot and not ext.endswith("pth") else None
    return first[0]


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _record_tops(record: bytes) -> set[str]:
    """The top-level names a RECORD installs."""
    # `dir/` of `dir/...`, or `file` of `file,hash,size` (a file at the top)
    firsts = {line.split(b"/", 1)[0] + b"/" if b"/" in line else line.split(b",", 1)[0]
              for line in record.split(b"\n")}
    tops = {_top_of(first.decode("utf-8", "replace")) for first in firsts}
    tops.discard(None)
    return tops  # type: ignore[return-value]


def _lists(record: bytes, top: str) -> bool:
    """Whether a RECORD installs `top` (a top-level name, or `a/b`)."""
    t = top.encode()
    return any(
        record.startswith(p) or b"\n" + p in record
        for q in (b"", b'"')
        for p in (q + t + b"/", q + t + b".")
    )


def _metadata_dirs(site: str) -> dict[str, str]:
    infos = _infos.get(site)
    if infos is None:
        infos = {}
        try:
            names = os.listdir(site)
        except OSError:
            names = []
        for n in sorted(names):
            if n.endswith(_META):
                infos.setdefault(_normalize(n.partition("-")[0]), n)
        _infos[site] = infos
    return infos


def _find(site: str, top: str) -> tuple[str | None, bytes | None]:
    """The metadata directory of the distribution in `site` that installs
    `top`, and its RECORD. Most distributions are named like their
    top-level package (or like the portion `b` of a namespace package
    `a/b`), or their name contains it (`python_dateutil`, `pyzmq`): those
    are asked first."""
    infos = _metadata_dirs(site)
    name = _normalize(top.rpartition("/")[2])
    order = sorted(infos.items(), key=lambda kv: (kv[0] != name, name not in kv[0]))
    for _, info in order:
        if "/" not in top:
            listed = _read(os.path.join(site, info, "top_level.txt"))
            if listed is not None:
                if top in listed.decode("utf-8", "replace").split():
                    return info, _read(os.path.join(site, info, "RECORD"))
                continue
        record = _read(os.path.join(site, info, "RECORD"))
        if record is not None and _lists(record, top):
            return info, record
    return None, None


def _installed(site: str, rel: str) -> str:
    """The identity of the installed distribution holding `site/rel`: its
    name, version and the digest of its RECORD; without metadata, the
    sizes and modification times of its files."""
    rel = rel.replace(os.sep, "/")
    top = _top_of(rel) or rel
    parts = rel.split("/", 2)
    if len(parts) == 3 and not os.path.exists(os.path.join(site, parts[0], "__init__.py")):
        top = f"{parts[0]}/{parts[1]}"  # a portion of a namespace package
    key = (site, top)
    identity = _identities.get(key)
    if identity is None:
        identity = _identities[key] = _identify(site, top)
    return identity


def _identify(site: str, top: str) -> str:
    kept = _distcache.recall(site, top)
    if kept is not None:
        identity, tops = kept
        _unit_tops[identity] = tops
        return identity
    info, record = _find(site, top)
    if info is None:
        return f"{top}@{_files_digest(site, top)}"
    name, _, version = info.rpartition(".")[0].partition("-")
    if record is None:
        return f"{name}=={version}@{_files_digest(site, top)}"
    identity = f"{name}=={version}#{_code_digest(record, info)}"
    tops = _unit_tops[identity] = _record_tops(record) | {top.partition("/")[0]}
    _distcache.keep(site, top, info, identity, tops)
    return identity


def _code_digest(record: bytes, info: str) -> str:
    """The digest of what a RECORD says is installed, minus the metadata
    (`direct_url.json` names the wheel file) and what has no hash there
    (compiled bytecode, RECORD itself)."""
    meta = (info.encode(), b'"' + info.encode())
    lines = [line for line in record.split(b"\n")
             if line and not line.endswith(b",") and not line.startswith(meta)]
    lines.sort()
    return _bytecache.hash_value(b"\n".join(lines)).hex()


def _files_digest(site: str, top: str) -> str:
    """Sizes and modification times of the files of `top` (a package
    directory or top-level module files), for what has no RECORD."""
    seen: list[tuple[str, int, int]] = []
    root = os.path.join(site, top)

    def note(path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        seen.append((os.path.relpath(path, site), st.st_size, st.st_mtime_ns))

    if os.path.isdir(root):
        for d, dirs, files in os.walk(root):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for f in sorted(files):
                if not f.endswith(".pyc"):
                    note(os.path.join(d, f))
    else:
        try:
            names = sorted(os.listdir(site))
        except OSError:
            names = []
        for n in names:
            if n.startswith(top + ".") and not n.endswith(_META):
                note(os.path.join(site, n))
    return _bytecache.hash_value(tuple(seen)).hex()


def unit_modules(name: str) -> list[str]:
    """The loaded modules of the library unit module `name` belongs to, in
    no particular order (the scan sorts what it finds): its top-level
    package for the standard library (a collection of libraries), its
    distribution otherwise. `sys` and `builtins` hold the interpreter's
    state and are no unit's."""
    kind = classify(name)
    if kind is None:
        return []
    top = name.partition(".")[0]
    tops = {top} if kind == _PY else _unit_tops.get(kind, {top})
    # A module inside its top-level package's directory is the package's.
    # (A top-level name that is not loaded has no loaded submodules: not
    # looked for.)
    homes = {}
    for t in tops:
        if t not in sys.modules:
            continue
        path = _module_path(t)[1]
        if path and classify(t) == kind:
            homes[t] = os.path.dirname(path) + os.sep
    # Names only (strings are not tracked by the garbage collector: a
    # thousand (name, module) pairs could set off a collection); the loop
    # over `sys.modules` runs in Rust (it was a tenth of a first call).
    inside, others = _bytecache.modules_under(homes)
    out = [n for n in inside if n not in _INTERPRETER]
    out += [n for n in others if n not in _INTERPRETER and classify(n) == kind]
    return out


_INTERPRETER = frozenset({"sys", "builtins"})
# library identity -> the top-level names its distribution installs
_unit_tops: dict[str, set[str]] = {}


# --- modules imported in a function body ---------------------------------------


def resolve(globals_: dict[str, Any], level: int, name: str) -> str | None:
    """The absolute name `import` resolves a (relative) name to in a module
    with `globals_`, as the import system does; None if it cannot."""
    if not level:
        return name
    package = globals_.get("__package__")
    if package is None:
        spec = globals_.get("__spec__")
        package = getattr(spec, "parent", None)
    if package is None:
        module = globals_.get("__name__")
        if not isinstance(module, str):
            return None
        package = module if "__path__" in globals_ else module.rpartition(".")[0]
    if not isinstance(package, str) or not package:
        return None
    bits = package.rsplit(".", level - 1)
    if len(bits) < level:
        return None
    base = bits[0]
    return f"{base}.{name}" if name else base


# (path, size, mtime) -> compiled code
_compiled: dict[tuple[str, int, int], object] = {}


def unloaded(name: str) -> tuple[Any, ...]:
    """What `import name` would run, found without running it:
    ("source", is_package, code, path) with the module's code compiled,
    not run;
    ("error", text) when it cannot compile; ("extension", path);
    ("namespace",); ("missing",); ("opaque", origin) when its code cannot be
    read without importing it."""
    spec = locate(name)
    if spec is None:
        return ("missing",)
    is_package = spec.submodule_search_locations is not None
    origin = spec.origin
    loader = spec.loader
    if origin is None or not getattr(spec, "has_location", False):
        if is_package and origin in (None, "namespace"):
            return ("namespace",)
        return ("opaque", str(origin))
    if origin.endswith(tuple(_imp.extension_suffixes())):
        return ("extension", origin)
    try:
        st = os.stat(origin)
    except OSError:
        return ("missing",)
    key = (origin, st.st_size, st.st_mtime_ns)
    code = _compiled.get(key)
    if code is None:
        source: object = None
        if origin.endswith(".py"):
            source = _read(origin)
        elif loader is not None and hasattr(loader, "get_source"):
            try:
                source = loader.get_source(name)
            except Exception as e:  # noqa: BLE001 - what importing would raise
                return ("error", f"{type(e).__name__}: {e}")
        if source is None:
            return ("opaque", origin)
        try:
            code = _compile(source, origin)
        except (SyntaxError, ValueError) as e:
            content = source if isinstance(source, bytes) else str(source).encode()
            return ("error", f"{type(e).__name__}: {e} ({_bytecache.hash_value(content).hex()})")
        _compiled[key] = code
    return ("source", is_package, code, os.path.realpath(origin))


def _compile(source: object, path: str) -> object:
    """A module's code, without the docstrings of the module and its classes
    (as functions' are left out of their fingerprints: a docstring edit
    does not invalidate)."""
    import ast

    tree = compile(source, path, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)  # type: ignore[call-overload]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef)) and ast.get_docstring(node, clean=False):
            node.body[0] = ast.Pass()
    return compile(ast.fix_missing_locations(tree), path, "exec", dont_inherit=True)
