"""`%load_ext bytecache` in IPython / Jupyter: memoize the notebook's functions
without decorators, and define once.

Define once: a decorated top-level ``def`` that a cell re-executes unchanged
keeps the object already bound to its name when that object carries state
(the decorator returned something other than a closure-free plain function:
``functools.lru_cache``, ``numba.jit``, a memoizing wrapper), so its state
survives re-running the cell, including calls later in the same cell. A
changed definition replaces it.

The cell's syntax tree gets one more, outermost decorator on each such
``def``. It fingerprints a *probe*: a function whose body is the whole
definition statement (decorator expressions, defaults, the body), compiled
on its own, so the digest covers the code of the decorators and the function
and the values they read when the definition ran (`lru_cache(maxsize=N)` with
another `N` is a different definition).
"""

from __future__ import annotations

import ast
import copy
import types

from bytecache import _once

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from IPython.core.interactiveshell import InteractiveShell

# The name the added decorator calls, bound in the user namespace (hidden).
_HOOK = "__bytecache_define_once__"


def _carries_state(obj: object) -> bool:
    return not (type(obj) is types.FunctionType and obj.__closure__ is None)


class DefineOnce(ast.NodeTransformer):
    """An IPython AST transformer; calling it is the added decorator."""

    def __init__(self, ip: InteractiveShell) -> None:
        self.ip = ip
        self.definitions = _once.Definitions()
        self.probes: list[types.CodeType] = []
        self._index: dict[str, int] = {}

    def visit_Module(self, node: ast.Module) -> ast.Module:  # noqa: N802 - ast API
        # Bound (again) before every cell: `%reset` empties the namespace.
        if self.ip.user_ns.get(_HOOK) is not self:
            self.ip.user_ns[_HOOK] = self.ip.user_ns_hidden[_HOOK] = self
        for stmt in node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.decorator_list:
                try:
                    index = self._probe(stmt)
                except Exception:  # noqa: BLE001 - a definition we cannot probe stays as written
                    index = None
                if index is not None:
                    first = stmt.decorator_list[0]
                    call = ast.Call(func=ast.Name(_HOOK, ast.Load()),
                                    args=[ast.Constant(stmt.name), ast.Constant(index)],
                                    keywords=[])
                    for n in ast.walk(call):
                        ast.copy_location(n, first)
                    stmt.decorator_list.insert(0, call)
        return node

    def _probe(self, stmt: ast.FunctionDef | ast.AsyncFunctionDef) -> int | None:
        """The index of the probe for `stmt`, or None when it cannot be made
        (the definition then stays as written)."""
        text = ast.dump(stmt)
        index = self._index.get(text)
        if index is not None:
            return index
        template = ast.parse(f"def probe():\n    return {stmt.name}\n")
        probe = template.body[0]
        assert isinstance(probe, ast.FunctionDef)
        probe.body.insert(0, copy.deepcopy(stmt))
        ast.fix_missing_locations(template)
        try:
            module = compile(template, "<bytecache define-once>", "exec")
        except (SyntaxError, ValueError, TypeError):  # e.g. `await` in a decorator
            return None
        code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
        self.probes.append(code)
        index = self._index[text] = len(self.probes) - 1
        return index

    def __call__(self, name: str, index: int) -> Any:
        def define_once(obj: Any) -> Any:
            try:
                if not _carries_state(obj):
                    return obj
                namespace = self.ip.user_ns
                probe = types.FunctionType(self.probes[index], namespace)
                return self.definitions.keep(namespace, name, obj, _once.digest(probe))
            except Exception:  # noqa: BLE001 - never break a cell: the new object wins
                return obj

        return define_once


_state: dict[str, Any] = {}


def load_ipython_extension(ip: InteractiveShell) -> None:
    from bytecache import _auto

    _auto.enable()  # marks __main__: the kernel's user namespace
    if _state.get("ip") is None:
        transformer = DefineOnce(ip)
        _state["ip"], _state["transformer"] = ip, transformer
        ip.ast_transformers.append(transformer)


def unload_ipython_extension(ip: InteractiveShell) -> None:
    from bytecache import _auto

    _auto.disable()
    if _state.pop("ip", None) is not None:
        transformer = _state.pop("transformer")
        if transformer in ip.ast_transformers:
            ip.ast_transformers.remove(transformer)
