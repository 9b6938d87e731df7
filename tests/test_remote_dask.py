"""A Dask cluster sharing one remote: `distributed.LocalCluster` with two
worker processes, each with a cache directory of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Runner

pytest.importorskip("distributed")

TASKS = """
import time, bytecache

@bytecache.memoize
def slow_square(x):
    ran("square", x)
    time.sleep(0.3)
    return x * x
"""

MAIN = """
import json, os, sys
from distributed import Client, LocalCluster

def setup(directory, remote):
    import bytecache, dask.sizeof, random
    bytecache.configure(cache_dir=directory, remote=remote)
    # A worker's event loop samples with the global `random` (dask.sizeof)
    # while tasks run, and the observer cannot tell those draws from a
    # call's own yet (see the xfail below): give sizeof a generator of its own.
    dask.sizeof.random = random.Random()

def report():
    import bytecache
    return dict(bytecache.stats())

if __name__ == "__main__":
    run = sys.argv[1]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        for i, w in enumerate(sorted(client.scheduler_info()["workers"])):
            client.run(setup, os.path.join(os.environ["DIRS"], f"{run}-{i}"),
                       os.environ["REMOTE"], workers=[w])
        from tasks import slow_square
        # Every input twice, as separate tasks: both workers get some.
        results = client.gather(client.map(slow_square, list(range(8)) * 2, pure=False))
        print("RESULTS", json.dumps(results), flush=True)
        print("STATS", json.dumps(list(client.run(report).values())), flush=True)
"""


def test_a_cluster_computes_each_input_once_and_a_second_run_is_served_from_the_cache(
        tmp_path: Path, redis_server) -> None:
    server = redis_server()
    runner = Runner(tmp_path)
    runner.write("tasks.py", TASKS)
    runner.write("main.py", MAIN)

    def run(n: int) -> tuple[list[str], list[int], list[dict[str, int]]]:
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "main.py", str(n)], cwd=runner.work,
                              env=runner.env(REMOTE=server.url, DIRS=str(tmp_path / "dirs")),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        ran = sorted(line for line in lines if line.startswith("RAN "))
        results = json.loads(next(x[8:] for x in lines if x.startswith("RESULTS ")))
        stats = json.loads(next(x[6:] for x in lines if x.startswith("STATS ")))
        assert "BytecacheWarning" not in proc.stderr, proc.stderr
        return ran, results, stats

    ran, results, stats = run(1)
    assert results == [x * x for x in range(8)] * 2
    assert ran == sorted(f"RAN square {x}" for x in range(8))  # once each, cluster-wide
    assert sum(s["misses"] for s in stats) == 8 and all(s["misses"] for s in stats)
    # New workers, new (empty) cache directories: all from the remote.
    ran, results, stats = run(2)
    assert results == [x * x for x in range(8)] * 2 and ran == []
    assert sum(s["misses"] for s in stats) == 0
    assert 8 <= sum(s["remote_hits"] for s in stats) <= 16


@pytest.mark.xfail(strict=True, reason="the observer takes draws from the global `random` by "
                   "another thread for the call's own, and keys the call on its state")
def test_draws_from_random_by_another_thread_are_not_the_calls(runner: Runner) -> None:
    script = """
import random, threading, time, bytecache

def draw():
    while True:
        random.random()
        time.sleep(0.005)

threading.Thread(target=draw, daemon=True).start()

@bytecache.memoize
def slow(x):
    ran("slow", x)
    time.sleep(0.3)
    return x

slow(1)
"""
    assert "RAN slow 1" in runner.run(script).stdout
    assert "RAN" not in runner.run(script).stdout
