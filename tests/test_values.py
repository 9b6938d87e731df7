"""Values by what they are: sets in their iteration order where it is the
same in every process, arrays and frames by logical content (a value and
its round-tripped copy, which is what a hit returns, key the same),
instances by their true state."""

from __future__ import annotations

import pytest

from conftest import Runner

SETS = """
from bytecache import _bytecache
h = lambda v: _bytecache.hash_value(v).hex()
print(h({8, 0}) != h({0, 8}), list({8, 0}) != list({0, 8}))
print(h({1, 2, 3}) == h({3, 2, 1}))
print(h(frozenset({(1, 2.5), (8, 0.5)})))
print(h({"a", "bb", "ccc"}), h({"ccc", "bb", "a"}))
"""


def test_sets_key_in_iteration_order_when_that_order_is_deterministic(runner: Runner) -> None:
    outs = [runner.out(SETS, PYTHONHASHSEED=seed) for seed in ("1", "2")]
    assert outs[0] == outs[1], "keys differ between processes"
    ordered, same_order, _, _, strings, strings_other_order = outs[0]
    assert (ordered, same_order) == ("True", "True")
    # Strings hash by seed: their order is not deterministic, so normalized.
    assert strings == strings_other_order


LAYOUT = """
import numpy as np
import bytecache

@bytecache.memoize
def make():
    return np.arange(24.0).reshape(4, 6)[:, 1]

@bytecache.memoize
def use(a):
    ran("use")
    return float(a @ a)

print(use(make()))
"""


def test_a_view_and_its_copy_key_the_same(runner: Runner) -> None:
    # Run 1 computes both; run 2 gets make()'s contiguous copy from the
    # store, which must key as the view did.
    assert runner.out(LAYOUT) == ["RAN", "use", "580.0"]
    assert runner.out(LAYOUT) == ["580.0"]
    assert runner.out(LAYOUT) == ["580.0"]


ROUND_TRIPS = """
import pickle
import numpy as np
import pandas as pd
from bytecache import _bytecache

def frames():
    yield "2-d block", pd.DataFrame(np.arange(12.0).reshape(3, 4), columns=list("abcd"))
    yield "fortran block", pd.DataFrame(np.asfortranarray(np.arange(12).reshape(3, 4)))
    yield "columns", pd.DataFrame({{"a": [1.0, 2.0], "b": [3, 4], "s": ["x", "y"]}})
    wide = pd.DataFrame(np.arange(8.0).reshape(2, 4))
    wide[4] = [1.0, 2.0]  # an unconsolidated second block
    yield "unconsolidated", wide
    yield "extension dtypes", pd.DataFrame({{
        "cat": pd.Categorical(["u", "v", "u"]),
        "when": pd.date_range("2024-01-01", periods=3, tz="UTC"),
        "n": pd.array([1, None, 3], dtype="Int64"),
    }})
    yield "series view", pd.DataFrame(np.arange(12.0).reshape(3, 4))[2]
    yield "masked", np.ma.array(np.arange(4.0), mask=[0, 1, 0, 0])
    # GridSearchCV.cv_results_: masked object arrays among plain ones; its
    # fill value is read (hashed) before the copy is made.
    param = np.ma.MaskedArray(np.empty(3, dtype=object), mask=True)
    param[0] = {{"C": 1}}
    _bytecache.hash_value(param)
    yield "cv results", {{"param_C": param, "rank": np.array([2, 1], dtype=np.int32)}}
    yield "object array", np.array([["a", 1], ["b", None]], dtype=object).T

for name, v in frames():
    copies = [pickle.loads(pickle.dumps(v)), v.copy() if hasattr(v, "copy") else v]
    if hasattr(v, "_consolidate"):
        copies.append(v._consolidate())
    keys = {{_bytecache.hash_value(c) for c in [v, *copies]}}
    print(name.replace(" ", "_"), len(keys))
"""


def test_frames_and_arrays_key_like_their_round_tripped_copies(runner: Runner) -> None:
    pytest.importorskip("pandas")
    out = dict(line.split() for line in runner.run(ROUND_TRIPS.format()).stdout.splitlines())
    assert out and all(n == "1" for n in out.values()), out


DISTINCT = """
import numpy as np
import pandas as pd
from bytecache import _bytecache

base = pd.DataFrame({"s": ["a", "b", None], "x": [1.0, 2.0, 3.0]})
variants = {
    "base": base,
    "string": base.assign(s=["a", "c", None]),
    "missing": base.assign(s=["a", "b", "c"]),
    "object dtype": base.astype({"s": object}),
    "view": base.iloc[::2],
    "masked": np.ma.array([1.0, 2.0], mask=[0, 1]),
    "other mask": np.ma.array([1.0, 2.0], mask=[1, 0]),
    "hard mask": np.ma.array([1.0, 2.0], mask=[0, 1], hard_mask=True),
    "unmasked": np.array([1.0, 2.0]),
    "column": np.arange(6.0).reshape(2, 3)[:, 0],
    "row": np.arange(6.0).reshape(2, 3)[0, :2],
    "int32": np.array([0, 3], dtype="int32"),
    "shape": np.arange(6.0).reshape(3, 2),
    "flat": np.arange(6.0),
}
keys = {name: _bytecache.hash_value(v) for name, v in variants.items()}
print(len(set(keys.values())) == len(keys))
"""


def test_distinct_values_key_differently(runner: Runner) -> None:
    pytest.importorskip("pandas")
    assert runner.out(DISTINCT) == ["True"]


STRINGS = """
import pandas as pd
from bytecache import _bytecache

n = 200_000
df = pd.DataFrame({"s": [f"row{i}" for i in range(n)]})
other = df.copy()
other.loc[n - 1, "s"] = "changed"
print(_bytecache.hash_value(df) == _bytecache.hash_value(df.copy()),
      _bytecache.hash_value(df) != _bytecache.hash_value(other))
"""


def test_string_columns_key_by_every_string(runner: Runner) -> None:
    pytest.importorskip("pandas")
    assert runner.out(STRINGS) == ["True", "True"]


STATE = """
from bytecache import _bytecache

class Model:
    def __init__(self, weights, cache):
        self.weights = weights
        self._cache = cache
    def __getstate__(self):
        return {"weights": self.weights}  # the cache is left out of pickles

class Point:
    __slots__ = ("x", "y")

a, b = Point(), Point()
a.x = b.x = 1
a.y = 2
h = _bytecache.hash_value
print(h(Model([1], {"k": 1})) != h(Model([1], {"k": 2})), h(a) != h(b))

class Tagged(list):
    def __iter__(self):
        return iter(())  # hides the items from iteration, not from the key
print(h(Tagged([1])) != h(Tagged([2])))
"""


def test_instances_key_by_their_true_state(runner: Runner) -> None:
    assert runner.out(STATE) == ["True", "True", "True"]
