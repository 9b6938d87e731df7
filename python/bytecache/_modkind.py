"""Where a module comes from: the standard library, an installed distribution,
or the user's own code. Library code is keyed by version, never walked; the
user's code is fingerprinted. Called from the Rust identity layer."""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

_PY = "python-{}.{}.{}".format(*sys.version_info[:3])
_BUILTIN_MODULES = frozenset(sys.builtin_module_names) | {"builtins"}
_kinds: dict[str, str | None] = {}
_dist_of: Mapping[str, list[str]] | None = None


_NAMES = ("stdlib", "platstdlib", "purelib", "platlib")


def _dirs(*names: str, resolve: bool = True) -> tuple[str, ...]:
    paths = sysconfig.get_paths()
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


def _distribution_version(top: str) -> str:
    global _dist_of
    from importlib import metadata

    # Most distributions are named like their top-level package: ask for that
    # first; scanning every installed distribution costs ~100 ms.
    try:
        return f"{top}=={metadata.version(top)}"
    except (metadata.PackageNotFoundError, ValueError):
        pass
    if _dist_of is None:
        _dist_of = metadata.packages_distributions()
    for d in _dist_of.get(top) or ():
        try:
            return f"{d}=={metadata.version(d)}"
        except metadata.PackageNotFoundError:
            continue
    version = getattr(sys.modules.get(top), "__version__", None)
    return f"{top}=={version if isinstance(version, str) else 'unknown'}"


def _classify(name: str) -> str | None:
    if name in _BUILTIN_MODULES:
        return _PY
    if name == "bytecache" or name.startswith("bytecache."):
        # Our own wrappers are keyed by version; what they wrap is walked.
        return "bytecache==" + _own_version()
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) if module is not None else None
    if module is None:
        spec = None
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            pass
        path = spec.origin if spec is not None else None
    if not path:
        if "." in name:
            # A submodule without a file of its own (made by its package's
            # extension, or lazily, like `six.moves`) ships with its package.
            return classify(name.rpartition(".")[0])
        # Namespace packages and synthetic modules (exec'd code, notebook
        # cells) belong to the user: walk them.
        return None
    if os.path.isabs(path) and not (path.startswith(_LIBRARY_PREFIXES) or _SITE_PART in path):
        return None
    real = os.path.realpath(path)
    if real.startswith(_SITE) or _SITE_PART in real:
        return _distribution_version(name.partition(".")[0])
    if real.startswith(_STDLIB):
        return _PY
    return None


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
    """None for the user's code; else the library and its version."""
    try:
        return _kinds[name]
    except KeyError:
        kind = _kinds[name] = None if _marked and _is_marked(name) else _classify(name)
        return kind


def imported(globals_: dict[str, Any], level: int, name: str) -> object:
    """The module an `import` inside a function body would bind: the module
    object if loaded, else a description that changes when it would."""
    if level:
        try:
            name = importlib.util.resolve_name("." * level + name, globals_.get("__package__"))
        except (ImportError, ValueError):
            return f"unresolved:{level}:{name}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    kind = classify(name)
    if kind is not None:
        return f"{name}:{kind}"
    # A local module the body will import: import it now, so the key sees
    # the same module object the call will use (before and after the call).
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - the call itself will raise it
        return f"unimportable:{name}:{type(e).__name__}"
