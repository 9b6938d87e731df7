"""A small data pipeline: every step is memoized to disk by bytecache.

Run it twice: the second run (a fresh process) is served from the cache.
Edit one step (say THRESHOLD) and only the steps that depend on it recompute.
"""

import time

import numpy as np

import bytecache

N_ROWS = 2_000_000
THRESHOLD = 0.5


@bytecache.memoize
def load(seed: int) -> np.ndarray:
    time.sleep(1.0)  # stands for reading a large file or querying a database
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N_ROWS, 4))


@bytecache.memoize
def clean(raw: np.ndarray) -> np.ndarray:
    time.sleep(0.5)
    return raw[np.abs(raw).max(axis=1) < 3.0]


@bytecache.memoize
def features(rows: np.ndarray) -> np.ndarray:
    time.sleep(0.5)
    return np.column_stack([rows, rows[:, 0] * rows[:, 1], np.tanh(rows[:, 2])])


@bytecache.memoize
def fit(x: np.ndarray) -> dict[str, float]:
    time.sleep(1.0)  # stands for training a model
    y = (x[:, 0] + x[:, 4] > THRESHOLD).astype(float)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    return {"weights_norm": float(np.linalg.norm(w)), "positives": float(y.mean())}


def main() -> None:
    total = time.perf_counter()
    for step, run in [
        ("load", lambda: load(42)),
        ("clean", lambda: clean(state["raw"])),
        ("features", lambda: features(state["rows"])),
        ("fit", lambda: fit(state["x"])),
    ]:
        t = time.perf_counter()
        out = run()
        state[{"load": "raw", "clean": "rows", "features": "x", "fit": "model"}[step]] = out
        print(f"  {step:<9} {time.perf_counter() - t:7.3f} s")
    print(f"  total     {time.perf_counter() - total:7.3f} s   result: {state['model']}")
    s = bytecache.stats()
    print(f"  cache: {s['hits']} hits, {s['misses']} misses, {s['saved_seconds']:.1f} s saved")


state: dict[str, object] = {}

if __name__ == "__main__":
    main()
