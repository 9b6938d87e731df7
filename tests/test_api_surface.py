"""The public API's edges: invalid arguments raise with the allowed range, and
every BytecacheWarning points at the user's line, not at bytecache's own."""

from __future__ import annotations

import math

import pytest

import bytecache
from conftest import Runner


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: bytecache.configure(max_bytes=-1), ValueError, "between 1 and 2**64 - 1"),
        (lambda: bytecache.configure(max_bytes=0), ValueError, "between 1 and 2**64 - 1"),
        (lambda: bytecache.configure(max_bytes=2**64), ValueError, "between 1 and 2**64 - 1"),
        (lambda: bytecache.configure(max_bytes=1.5), TypeError, "must be an int"),
        (lambda: bytecache.configure(max_bytes=True), TypeError, "must be an int"),
        (lambda: bytecache.configure(cache_dir=""), ValueError, "non-empty path"),
        (lambda: bytecache.configure(cache_dir=3), TypeError, "must be a path"),
        (lambda: bytecache.configure(remote="http://host/"), ValueError, "must be a Redis URL"),
        (lambda: bytecache.configure(remote=3), TypeError, "must be a URL string"),
        (lambda: bytecache.configure(trusted_keys="ed25519:x"), TypeError, "use ('ed25519:x',)"),
        (lambda: bytecache.configure(trusted_keys=["ed25519:AAAA"]), ValueError,
         "not a 32-byte Ed25519 public key"),
        (lambda: bytecache.configure(trusted_keys=["ssh-ed25519 AAAA"]), ValueError,
         "looks like ed25519:<base64>"),
        (lambda: bytecache.enable(min_seconds=-1), ValueError, ">= 0, got -1"),
        (lambda: bytecache.enable(min_seconds=math.nan), ValueError, "finite"),
        (lambda: bytecache.enable(min_seconds="1"), TypeError, "number of seconds"),
        (lambda: bytecache.enable(modules=[]), ValueError, "at least one module"),
        (lambda: bytecache.enable(modules=[3]), TypeError, "as strings"),
        (lambda: bytecache.enable(cache_dir=""), ValueError, "non-empty path"),
        (lambda: bytecache.memoize(min_seconds=-1), ValueError, ">= 0, got -1"),
        (lambda: bytecache.memoize(min_seconds=math.inf), ValueError, "finite"),
        (lambda: bytecache.memoize(ignore="verbose"), TypeError, "use ('verbose',)"),
        (lambda: bytecache.memoize(cache_dir=""), ValueError, "non-empty path"),
        (lambda: bytecache.clear(cache_dir=""), ValueError, "non-empty path"),
        (lambda: bytecache.stats(cache_dir=b"/tmp"), TypeError, "must be a path"),
    ],
)
def test_invalid_arguments_raise_with_the_allowed_range(call, error, words) -> None:
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
    assert not bytecache.is_enabled()


def test_valid_arguments_are_accepted(tmp_path, monkeypatch) -> None:
    from bytecache import _config

    monkeypatch.setattr(_config, "_configured", {})
    bytecache.memoize(min_seconds=0, ignore=["v"], cache_dir=tmp_path)
    bytecache.memoize(min_seconds=1)
    bytecache.configure(max_bytes=2**64 - 1, cache_dir=tmp_path)
    assert _config._configured == {"max_bytes": 2**64 - 1, "cache_dir": str(tmp_path)}
    key = "ed25519:" + "A" * 43 + "="
    bytecache.configure(remote=" redis://h:1/0 ", trusted_keys=[key])
    assert _config._configured["remote"] == "redis://h:1/0"
    assert _config._configured["trusted_keys"] == (bytes(32),)
    bytecache.configure(remote="")
    assert _config.remote_url() == ""


WARNINGS = """
import warnings, threading
warnings.simplefilter("always")
import bytecache

@bytecache.memoize
def takes(x):
    return 1

@bytecache.memoize
def gives():
    return threading.Lock()

def auto(y):
    return threading.Lock()

def show(w):
    for m in w:
        print(m.filename.rsplit("/", 1)[-1], m.lineno, m.category.__name__)

with warnings.catch_warnings(record=True) as w:
    takes(threading.Lock())  # line 22
    gives()  # line 23
    bytecache.enable(min_seconds=0)
    auto(1)  # line 25
    auto(threading.Lock())  # line 26
    bytecache.disable()
show(w)
"""


def test_clearing_a_missing_cache_creates_nothing(tmp_path) -> None:
    assert bytecache.clear(cache_dir=tmp_path / "none") == 0
    assert not (tmp_path / "none").exists()


def test_warnings_point_at_the_users_line(runner: Runner) -> None:
    out = runner.run(WARNINGS).stdout.split("\n")
    assert out[:-1] == [
        "main.py 22 BytecacheWarning",
        "main.py 23 BytecacheWarning",
        "main.py 25 BytecacheWarning",
        "main.py 26 BytecacheWarning",
    ]
