"""Known digests, pinned: every stored key is made of these encodings, so a
refactor that changes one would silently orphan every entry. A change here
must be deliberate: bump `KEY_VERSION` (src/identity/plan.rs) and update the
pins. Libraries are classified as `pinned` so installed versions do not
matter; functions are pinned per CPython minor version (bytecode differs)."""

from __future__ import annotations

import sys

import pytest

from conftest import Runner

pytest.importorskip("pandas")

SCRIPT = """
import numpy as np
import pandas as pd
from bytecache import _bytecache, _modkind

real = _modkind.classify
_modkind.classify = lambda name: None if real(name) is None else "pinned"

def f(x, k=2):
    return x * k + 1

values = {
    "int": 1,
    "tuple": (1, "a", 2.5, None, b"b"),
    "dict": {"k": [1, 2.0], "s": frozenset({3, 4})},
    "array": np.arange(6.0).reshape(2, 3),
    "frame": pd.DataFrame(np.arange(6.0).reshape(3, 2)),
    "function": f,
}
for name, v in values.items():
    print(name, _bytecache.hash_value(v).hex())
"""

PINNED = {
    "int": "d5ff11931565b0238b571f4a3c41f9ad",
    "tuple": "2da20c83c57e5ee4d96bbad7e5b53838",
    "dict": "ee057b91e6504e992f52a7ea4e4747d8",
    "array": "4f9e5cc9b642068e6b8d0ce7ac721d38",
    "frame": "3bc531b0683a195b85ede9b3afd3ba1e",
}

FUNCTION = {
    (3, 11): "b420b8c3bf1332af6c0abf1e0b2d15ad",
    (3, 12): "b420b8c3bf1332af6c0abf1e0b2d15ad",
    (3, 13): "074f9da1f55b3cb26efb4e99d1a0f1a7",
}


def test_known_digests_do_not_change(runner: Runner) -> None:
    got = dict(line.split() for line in runner.run(SCRIPT).stdout.splitlines())
    expected = {**PINNED, "function": FUNCTION[sys.version_info[:2]]}
    assert got == expected
