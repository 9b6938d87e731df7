"""`%load_ext bytecache` in IPython / Jupyter: memoize the notebook's functions
without decorators, and keep unchanged re-run definitions (define once)."""

from __future__ import annotations

from bytecache import _once

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_state: dict[str, Any] = {}


def _pre_run_cell(*_: Any) -> None:
    ip = _state.get("ip")
    if ip is not None:
        _state["before"] = _once.snapshot(ip.user_ns)


def _post_run_cell(*_: Any) -> None:
    ip = _state.get("ip")
    before = _state.pop("before", None)
    if ip is not None and before:
        _once.restore_unchanged(ip.user_ns, before)


def load_ipython_extension(ip: Any) -> None:
    from bytecache import _auto

    _auto.enable()  # marks __main__: the kernel's user namespace
    if _state.get("ip") is None:
        _state["ip"] = ip
        ip.events.register("pre_run_cell", _pre_run_cell)
        ip.events.register("post_run_cell", _post_run_cell)


def unload_ipython_extension(ip: Any) -> None:
    from bytecache import _auto

    _auto.disable()
    if _state.pop("ip", None) is not None:
        ip.events.unregister("pre_run_cell", _pre_run_cell)
        ip.events.unregister("post_run_cell", _post_run_cell)
