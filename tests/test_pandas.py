"""pandas arguments: keyed by content (blocks, index, columns, attributes), the
same in every process, and different whenever any of them differs."""

from __future__ import annotations

import pytest

from conftest import Runner

pytest.importorskip("pandas")

FRAMES = """
import numpy as np
import pandas as pd

def frame():
    return pd.DataFrame(
        {"a": np.arange(6, dtype="float64"), "b": list("xyzxyz"), "c": np.arange(6)},
        index=pd.Index([f"r{i}" for i in range(6)], name="row"),
    )

def variants():
    base = frame()
    out = {"base": base, "same": frame()}
    v = frame(); v.loc["r3", "a"] = 99.0; out["value"] = v
    v = frame(); v.loc["r3", "b"] = "q"; out["string"] = v
    v = frame(); v.index = pd.Index([f"s{i}" for i in range(6)], name="row"); out["index"] = v
    v = frame(); v.index.name = "other"; out["index name"] = v
    out["column name"] = frame().rename(columns={"c": "d"})
    out["column order"] = frame()[["b", "a", "c"]]
    out["dtype"] = frame().astype({"c": "int32"})
    v = frame(); v.attrs["unit"] = "m"; out["attrs"] = v
    out["series"] = frame()["a"]
    out["series renamed"] = frame()["a"].rename("z")
    out["range index"] = frame().reset_index(drop=True)
    return out
"""


def test_pandas_keys_are_content_keys_and_stable_across_processes(runner: Runner) -> None:
    runner.write("frames.py", FRAMES)
    script = """
from bytecache import _bytecache
from frames import variants

for name, v in variants().items():
    print(name.replace(" ", "_"), _bytecache.hash_value(v).hex())
"""
    runs = [
        dict(line.split() for line in runner.run(script, PYTHONHASHSEED=seed).stdout.splitlines())
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1], "keys differ between processes"
    keys = runs[0]
    assert keys["base"] == keys["same"]
    distinct = {k: v for k, v in keys.items() if k != "same"}
    assert len(set(distinct.values())) == len(distinct), keys


def test_a_dataframe_argument_hits_in_a_new_process_and_misses_when_edited(runner: Runner) -> None:
    runner.write("frames.py", FRAMES)
    script = """
import os
import bytecache
from frames import frame

@bytecache.memoize
def total(df):
    ran()
    return float(df["a"].sum())

df = frame()
if os.environ.get("EDIT"):
    df.loc["r0", "a"] = 10.0
print(total(df))
"""
    assert runner.out(script) == ["RAN", "15.0"]
    assert runner.out(script) == ["15.0"]
    assert runner.out(script, EDIT="1") == ["RAN", "25.0"]
