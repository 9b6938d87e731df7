"""What a call does that a hit must do again, captured while a miss runs and
replayed, in order, through the normal machinery on a hit:

* text written to `sys.stdout` / `sys.stderr` (`("out", stream, text)`);
* warnings (`("warn", ...)`): every warning the call issues that its own
  filters do not suppress is captured, whatever the caller's filters say, and
  dispatched under them; a hit re-issues it with `warnings.warn_explicit`, so
  the filters, `catch_warnings` and registries of the moment apply;
* log records (`("log", logger, record)`): re-handled by their logger on a
  hit (its level, filters and handlers of the moment apply);
* interpreter-wide generators advanced (`("rng", name, state)`): set to the
  state the call left.

A recorder gets effects only in its own context (`RECORDERS`), so what other
tasks or threads print during an `await` is not replayed by this call.
"""

from __future__ import annotations

import _thread
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextvars import ContextVar
    from typing import Any

_lock = _thread.allocate_lock()
_var: ContextVar[tuple[Any, ...]] | None = None


def _failed(e: Exception) -> None:
    from bytecache import _observe

    _observe.failed(e)


def _recorders() -> tuple[Any, ...]:
    recs = _var.get() if _var is not None else ()
    return tuple(r for r in recs if not r.closed) if recs else ()


# --- output --------------------------------------------------------------------


class _Tee:
    """Stands in for `sys.stdout` / `sys.stderr` while misses run: text
    written in the context of a recorder that joined this tee is recorded,
    and everything passes through."""

    def __init__(self, stream: Any, index: int) -> None:
        self._stream = stream
        self._index = index
        self._joined: list[Any] = []

    def write(self, text: str) -> int:
        if self._joined and isinstance(text, str):
            try:
                active = _recorders()
                if active and not _displaying(sys._getframe(1)):
                    for r in self._joined:
                        if r in active:
                            r.effects.append(("out", self._index, text))
            except Exception as e:  # noqa: BLE001 - printing must not fail because of us
                _failed(e)
        written: int = self._stream.write(text)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_display_codes: tuple[int, set[Any]] = (-1, set())


def _displaying(frame: Any) -> bool:
    """True while a log handler or the warnings machinery writes: that text
    is the display of a record or warning, which a hit re-emits as such."""
    global _display_codes
    n = len(sys.modules)
    if _display_codes[0] != n:
        codes = set()
        logging = sys.modules.get("logging")
        if logging is not None:
            codes.add(logging.Handler.handle.__code__)
        warnings = sys.modules.get("warnings")
        if warnings is not None:
            codes.add(warnings._showwarnmsg_impl.__code__)
            codes.add(_show.__code__)
        _display_codes = (n, codes)
    codes = _display_codes[1]
    f = frame
    for _ in range(8):
        if f is None:
            return False
        if f.f_code in codes:
            return True
        f = f.f_back
    return False


def _join_tees(recorder: Any) -> list[_Tee]:
    joined = []
    for index, name in ((0, "stdout"), (1, "stderr")):
        current = getattr(sys, name)
        if current is None:
            continue
        if not isinstance(current, _Tee):
            current = _Tee(current, index)
            setattr(sys, name, current)
        current._joined.append(recorder)
        joined.append(current)
    return joined


def _leave_tees(recorder: Any, joined: list[_Tee]) -> None:
    for tee in joined:
        if recorder in tee._joined:
            tee._joined.remove(recorder)
        if tee._joined:
            continue
        # Unwrap only what is still current (the user may have replaced it).
        name = "stdout" if tee._index == 0 else "stderr"
        if getattr(sys, name) is tee:
            setattr(sys, name, tee._stream)


# --- warnings ------------------------------------------------------------------

_warn_users = 0
_saved_filters: Any = None
_saved_default: Any = "default"
_installed_filters: list[Any] | None = None
_installed_copy: list[Any] = []
# id of a rewritten filter -> the filter it stands for
_original_of: dict[int, Any] = {}
# the filters last rewritten, and what they became (kept alive: `_original_of`
# is by id), reused while the user's filters stay the same
_rewritten_from: list[Any] | None = None
_rewritten: list[Any] = []
_orig_showwarnmsg: Any = None
_dispatching = _thread._local()
_registries: dict[str, dict[Any, Any]] = {}


def _rewrite(f: Any) -> Any:
    """A filter that shows what `f` would let through or ignore ("always"),
    and raises what it would raise: the call runs as it would, and every
    warning it issues reaches `_show`."""
    if not isinstance(f, tuple) or len(f) != 5 or f[0] == "error":
        return f
    new = ("always",) + f[1:]
    _original_of[id(new)] = f
    return new


def _warnings_enter() -> None:
    global _warn_users, _saved_filters, _installed_filters, _installed_copy, _saved_default
    global _rewritten_from, _rewritten
    import warnings

    with _lock:
        _warn_users += 1
        if _warn_users > 1:
            return
        _saved_filters = warnings.filters
        _saved_default = getattr(warnings, "defaultaction", "default")
        if _saved_default != "error":
            setattr(warnings, "defaultaction", "always")  # noqa: B010 - not in typeshed
        if _saved_filters != _rewritten_from:  # identical items compare by identity: cheap
            _original_of.clear()
            _rewritten_from = list(_saved_filters)
            _rewritten = [_rewrite(f) for f in _rewritten_from]
        _installed_filters = list(_rewritten)
        _installed_copy = list(_rewritten)
        # Not `_filters_mutated()`: that would reset every module's
        # once-per-location registry, showing old warnings again.
        warnings.filters = _installed_filters


def _warnings_leave(recorder: Any) -> None:
    global _warn_users, _saved_filters, _installed_filters
    import warnings

    with _lock:
        _warn_users -= 1
        if _warn_users > 0:
            return
        current = warnings.filters
        saved = _saved_filters if _saved_filters is not None else current
        if current is not _installed_filters or current != _installed_copy:
            # The call changed the filters (simplefilter outside catch_warnings):
            # keep its additions, ahead of the filters it started with.
            added = [f for f in current if id(f) not in _original_of and f not in saved]
            saved = added + [f for f in saved if f not in added]
            from bytecache._reasons import EFFECT, Reason

            recorder.refuse(Reason(EFFECT, "changes the warning filters"))
        warnings.filters = saved
        setattr(warnings, "defaultaction", _saved_default)  # noqa: B010 - not in typeshed
        _saved_filters = _installed_filters = None


def _show(msg: Any) -> Any:
    """`warnings._showwarnmsg`: while misses run, record the warning for the
    recorders of this context and dispatch it under the filters it would
    have met without the capture."""
    if _installed_filters is None or getattr(_dispatching, "on", False):
        return _orig_showwarnmsg(msg)
    try:
        recs = _recorders()
        if recs:
            portable = _portable_warning(msg)
            for r in recs:
                r.effects.append(("warn", portable))
    except Exception as e:  # noqa: BLE001 - the warning is shown regardless
        _failed(e)
    import warnings

    current, default = warnings.filters, getattr(warnings, "defaultaction", "default")
    real = [_original_of.get(id(f), f) for f in current]
    _dispatching.on = True
    warnings.filters = real
    setattr(warnings, "defaultaction", _saved_default)  # noqa: B010 - not in typeshed
    try:
        _reissue(msg.message, msg.category, msg.filename, msg.lineno, msg.source)
    finally:
        warnings.filters = current
        setattr(warnings, "defaultaction", default)  # noqa: B010 - not in typeshed
        _dispatching.on = False
    return None


def _portable_warning(msg: Any) -> tuple[Any, ...]:
    import pickle

    message = msg.message
    try:
        pickle.dumps(message)
    except Exception:  # noqa: BLE001 - keep its text
        message = str(message)
    return (message, msg.category, msg.filename, msg.lineno)


def _module_for(filename: str) -> tuple[str, dict[Any, Any]]:
    """The module name and warning registry of the code at `filename` (our
    own registry when no loaded module has that file)."""
    for name in list(sys.modules):  # names: no tracked pairs (see `_modkind`)
        module = sys.modules.get(name)
        if getattr(module, "__file__", None) == filename:
            g = vars(module)
            return name, g.setdefault("__warningregistry__", {})
    name = filename[:-3] if filename.endswith(".py") else filename
    return name or "<unknown>", _registries.setdefault(filename, {})


def _reissue(message: Any, category: Any, filename: str, lineno: int, source: Any = None) -> None:
    import warnings

    module, registry = _module_for(filename)
    warnings.warn_explicit(message, category, filename, lineno, module=module,
                           registry=registry, source=source)


def _install_warnings() -> None:
    global _orig_showwarnmsg
    import warnings

    if _orig_showwarnmsg is None:
        _orig_showwarnmsg = warnings._showwarnmsg  # type: ignore[attr-defined]
        warnings._showwarnmsg = _show  # type: ignore[attr-defined]


# --- logging -------------------------------------------------------------------

_factory: Any = None


def _ensure_log_capture() -> None:
    """Wraps the log record factory once `logging` is loaded (and again if
    the user installed another factory since)."""
    global _factory
    logging = sys.modules.get("logging")
    if logging is None:
        return
    current = logging.getLogRecordFactory()
    if current is _factory:
        return
    previous = current

    def factory(*args: Any, **kwargs: Any) -> Any:
        record = previous(*args, **kwargs)
        recs = _recorders()
        if recs:
            try:
                portable = _portable_record(record)
                for r in recs:
                    r.effects.append(("log", record.name, portable))
            except Exception as e:  # noqa: BLE001 - logging must not fail because of us
                _failed(e)
        return record

    _factory = factory
    logging.setLogRecordFactory(factory)


def _portable_record(record: Any) -> Any:
    """A copy of `record` that pickles: its message formatted, its exception
    rendered as text."""
    import logging

    copy = logging.LogRecord.__new__(logging.LogRecord)
    copy.__dict__.update(record.__dict__)
    try:
        copy.msg = record.getMessage()
    except Exception:  # noqa: BLE001 - formatting fails for the handler too
        copy.msg = str(record.msg)
    copy.args = None
    if record.exc_info:
        copy.exc_text = logging.Formatter().formatException(record.exc_info)
        copy.exc_info = None
    return copy


def _replay_record(name: str, record: Any) -> None:
    import logging
    import os
    import threading
    import time

    logger = logging.getLogger(name) if name != "root" else logging.getLogger()
    if not logger.isEnabledFor(record.levelno):
        return
    fresh = logging.LogRecord.__new__(logging.LogRecord)
    fresh.__dict__.update(record.__dict__)
    now = time.time()
    fresh.created = now
    fresh.msecs = int(now * 1000) % 1000
    fresh.relativeCreated = (now - logging._startTime) * 1000  # type: ignore[attr-defined]
    fresh.thread = threading.get_ident()
    fresh.threadName = threading.current_thread().name
    fresh.process = os.getpid()
    for r in _recorders():  # a hit inside an outer miss: the outer call logged it
        r.effects.append(("log", name, record))
    logger.handle(fresh)


# --- generators ----------------------------------------------------------------


def rng_left(recorder: Any, name: str) -> None:
    """The call advanced (or reseeded) generator `name`: a hit sets it to
    the state the call left."""
    if name == "random":
        module = sys.modules.get("random")
        if module is not None:
            recorder.effects.append(("rng", name, module.getstate()))
    else:
        mtrand = sys.modules.get("numpy.random.mtrand")
        if mtrand is not None:
            recorder.effects.append(("rng", name, mtrand._rand.get_state(legacy=True)))


def _set_rng(name: str, state: Any) -> None:
    if name == "random":
        import random

        random.setstate(state)
    else:
        import numpy.random

        numpy.random.set_state(state)


def _rng_kind(obj: Any) -> str | None:
    """"random" / "numpy" for a generator object whose state a call can
    advance (and a hit can set), else None."""
    if type(obj).__module__ in ("random", "_random") or (
            "random" in sys.modules and isinstance(obj, sys.modules["random"].Random)):
        return "random"
    npr = sys.modules.get("numpy.random")
    if npr is not None and isinstance(obj, (npr.Generator, npr.RandomState, npr.BitGenerator)):
        return "numpy"
    return None


def _rng_get(obj: Any) -> Any:
    if _rng_kind(obj) == "random":
        return obj.getstate()
    npr = sys.modules["numpy.random"]
    if isinstance(obj, npr.Generator):
        return obj.bit_generator.state
    if isinstance(obj, npr.RandomState):
        return obj.get_state(legacy=False)
    return obj.state


def _rng_set(obj: Any, state: Any) -> None:
    if _rng_kind(obj) == "random":
        obj.setstate(state)
        return
    npr = sys.modules["numpy.random"]
    if isinstance(obj, npr.Generator):
        obj.bit_generator.state = state
    elif isinstance(obj, npr.RandomState):
        obj.set_state(state)
    else:
        obj.state = state


def rng_arguments(arguments: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The generator arguments of a call and their states at its start."""
    out = {}
    for name, value in arguments.items():
        if _rng_kind(value) is not None:
            try:
                out[name] = (value, _rng_get(value))
            except Exception:  # noqa: BLE001 - a state we cannot read: a plain argument
                continue
    return out


def rng_arguments_only(rng_args: dict[str, tuple[Any, Any]], recorder: Any,
                       key: Any, expected: bytes) -> bool:
    """The call changed its arguments or globals: True when only generator
    arguments advanced (the key computed with their starting states is the
    call's key), which a hit replays by setting them to the states the call
    left (recorded here)."""
    if not rng_args:
        return False
    ends = {}
    try:
        for name, (obj, start) in rng_args.items():
            ends[name] = _rng_get(obj)
            _rng_set(obj, start)
        same = bool(key() == expected)
    except Exception:  # noqa: BLE001 - cannot tell: a mutation
        same = False
    finally:
        for name, end in ends.items():
            _rng_set(rng_args[name][0], end)
    if same:
        for name, end in ends.items():
            recorder.effects.append(("rng_arg", name, end))
    return same


# --- per miss ----------------------------------------------------------------------


def install(var: ContextVar[tuple[Any, ...]]) -> None:
    global _var
    _var = var
    _install_warnings()


def start(recorder: Any) -> list[_Tee]:
    _ensure_log_capture()
    _warnings_enter()
    return _join_tees(recorder)


def stop(recorder: Any, joined: list[_Tee]) -> None:
    _leave_tees(recorder, joined)
    _warnings_leave(recorder)


def replay(effects: list[Any] | None, arguments: dict[str, Any]) -> None:
    """Does again, in order, what a stored call did (`arguments`: this
    call's, for generator arguments to advance)."""
    for effect in effects or ():
        kind = effect[0]
        if kind == "out":
            (sys.stdout if effect[1] == 0 else sys.stderr).write(effect[2])
        elif kind == "warn":
            _reissue(*effect[1])
        elif kind == "log":
            _replay_record(effect[1], effect[2])
        elif kind == "rng":
            _set_rng(effect[1], effect[2])
        elif kind == "rng_arg" and effect[1] in arguments:
            _rng_set(arguments[effect[1]], effect[2])
