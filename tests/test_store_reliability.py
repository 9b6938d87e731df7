"""The store under hostile conditions, in fresh processes: a full file
system, damaged buffers, a poisoned index header, no usable HOME, a
replaced secret, symlinks and unsafe directories. In every case the call
runs normally (at most one warning) and nothing stored is lost."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bytecache import _bytecache as bc
from conftest import Runner

SMALL = """
import bytecache

@bytecache.memoize
def f(x):
    ran(x)
    return [x, "value"]

print("SUM", sum(f(i)[0] for i in range({n})))
"""


def ran_args(proc: subprocess.CompletedProcess[str]) -> list[int]:
    """The arguments of the calls that really ran, in order."""
    return [int(line.split()[1]) for line in proc.stdout.splitlines()
            if line.startswith("RAN ") and line.split()[1].isdigit()]


def fill(mnt: Path) -> Path:
    """Fills the file system at `mnt` up to its last byte."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 1 << 20
        while size >= 512:
            try:
                os.write(fd, b"\xff" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                size //= 2
    finally:
        os.close(fd)
    return filler


def data_files(cache: Path) -> list[Path]:
    return sorted((cache / "store" / "data").iterdir())


def own_file(cache: Path) -> Path:
    """The data file of the one entry with buffers (its id has bit 31 set)."""
    (big,) = [p for p in data_files(cache) if int(p.name, 16) & (1 << 31)]
    return big


# --- a full file system: never a signal, nothing lost ---------------------


def test_full_filesystem_runs_normally_and_keeps_entries(runner: Runner, tmpfs) -> None:
    mnt = tmpfs("2m")
    env = {"BYTECACHE_DIR": str(mnt / "cache")}
    # Results of 20 KB past the first ten: more than the space a segment
    # has allocated ahead of its end (64 KiB) when the disk fills up.
    script = SMALL.replace('return [x, "value"]', 'return [x, "value" * (4000 if x >= 10 else 1)]')
    assert ran_args(runner.run(script.format(n=10), **env)) == list(range(10))
    filler = fill(mnt)
    # New keys probe index pages no one touched yet, and every put needs
    # space: a store that maps unallocated pages dies of SIGBUS here.
    proc = runner.run(script.format(n=60), **env)
    assert "SUM 1770" in proc.stdout
    assert not set(ran_args(proc)) & set(range(10)), "stored entries still hit"
    assert proc.stderr.count("BytecacheWarning") == 1, proc.stderr
    assert "no space left" in proc.stderr
    filler.unlink()
    proc = runner.run(script.format(n=60), **env)
    assert min(ran_args(proc), default=10) >= 10 and "Warning" not in proc.stderr
    proc = runner.run(script.format(n=60), **env)
    assert ran_args(proc) == [] and "SUM 1770" in proc.stdout


def test_full_filesystem_with_a_sparse_index_of_an_older_version(runner: Runner, tmpfs) -> None:
    mnt = tmpfs("2m")
    env = {"BYTECACHE_DIR": str(mnt / "cache")}
    runner.run(SMALL.format(n=10), **env)
    # Rewrite the index with holes where its pages are zero, as versions
    # that created it sparse left it.
    index = mnt / "cache" / "store" / "index"
    raw = index.read_bytes()
    sparse = index.with_name("index.sparse")
    with open(sparse, "wb") as fh:
        for at in range(0, len(raw), 4096):
            page = raw[at:at + 4096]
            if page.strip(b"\0"):
                fh.seek(at)
                fh.write(page)
        fh.truncate(len(raw))
    os.chmod(sparse, 0o600)
    os.replace(sparse, index)
    assert os.stat(index).st_blocks * 512 < len(raw)
    filler = fill(mnt)
    proc = runner.run(SMALL.format(n=60), **env)
    assert "SUM 1770" in proc.stdout and ran_args(proc) == list(range(60))
    assert proc.stderr.count("BytecacheWarning") == 1 and "no space left" in proc.stderr
    filler.unlink()
    assert ran_args(runner.run(SMALL.format(n=10), **env)) == [], "nothing was lost"


def test_full_filesystem_while_the_index_grows_leaves_no_orphan(runner: Runner, tmpfs) -> None:
    mnt = tmpfs("2m")
    env = {"BYTECACHE_DIR": str(mnt / "cache")}
    runner.run(SMALL.format(n=768), **env)  # the index (1024 slots) at 3/4
    filler = fill(mnt)
    os.truncate(filler, filler.stat().st_size - (64 << 10))  # room for a record, not an index
    script = "import numpy as np, bytecache\nprint(bytecache.memoize(np.ones)(4096).sum())"
    proc = runner.run(script, **env)
    assert "4096.0" in proc.stdout and proc.stderr.count("BytecacheWarning") == 1
    assert "no space left" in proc.stderr
    own = [p for p in data_files(mnt / "cache") if int(p.name, 16) & (1 << 31)]
    assert own == [], "the record that could not be published was removed"
    filler.unlink()
    runner.run(script, **env)
    assert len([p for p in data_files(mnt / "cache") if int(p.name, 16) & (1 << 31)]) == 1


# --- damaged buffers are never returned -----------------------------------

BIG = """
import numpy as np
import bytecache

@bytecache.memoize
def big():
    ran("big")
    return np.arange(1 << 20, dtype=np.float64)  # 8 MiB

a = big()
print("SUM", float(a.sum()), a.flags.writeable)
"""
BIG_SUM = float(sum(range(1 << 20)))


def test_damaged_8mib_buffer_is_recomputed(runner: Runner) -> None:
    assert "RAN big" in runner.run(BIG).stdout
    proc = runner.run(BIG)
    assert "RAN" not in proc.stdout and f"SUM {BIG_SUM} True" in proc.stdout
    with open(own_file(runner.cache), "r+b") as fh:  # one flipped byte near the end
        fh.seek(-100, os.SEEK_END)
        b = fh.read(1)
        fh.seek(-100, os.SEEK_END)
        fh.write(bytes([b[0] ^ 0x40]))
    proc = runner.run(BIG)
    assert "RAN big" in proc.stdout and f"SUM {BIG_SUM} True" in proc.stdout
    assert proc.stderr.count("BytecacheWarning") == 1 and "damaged" in proc.stderr
    proc = runner.run(BIG)
    assert "RAN" not in proc.stdout and f"SUM {BIG_SUM} True" in proc.stdout
    assert proc.stderr == ""


def test_checked_buffers_are_marked_and_a_touched_file_checked_again(runner: Runner) -> None:
    runner.run(BIG)
    mark = own_file(runner.cache).stat().st_mtime
    # A mark is a date no clock shows (see src/storage/stamp.rs).
    assert 100_000_000 <= mark < 900_000_000
    os.utime(own_file(runner.cache))  # same bytes, new mtime: hashed, then marked again
    assert own_file(runner.cache).stat().st_mtime > 900_000_000
    proc = runner.run(BIG)
    assert "RAN" not in proc.stdout and proc.stderr == ""
    assert 100_000_000 <= own_file(runner.cache).stat().st_mtime < 900_000_000


# --- a poisoned header counter never disables the cache -------------------

H_BYTES = 12  # index header word: record bytes of live entries


def test_poisoned_byte_total_is_recounted(runner: Runner) -> None:
    assert len(ran_args(runner.run(SMALL.format(n=100)))) == 100
    index = runner.cache / "store" / "index"
    with open(index, "r+b") as fh:
        fh.seek(8 * H_BYTES)
        fh.write((2**62).to_bytes(8, "little"))
    proc = runner.run(SMALL.format(n=200))
    assert ran_args(proc) == list(range(100, 200)) and proc.stderr == ""
    proc = runner.run(SMALL.format(n=200))
    assert ran_args(proc) == [], "nothing was evicted"
    stats = subprocess.run(
        [sys.executable, "-m", "bytecache", "stats"], env=runner.env(), capture_output=True,
        text=True, check=True).stdout
    assert "entries:  200" in stats and str(2**62) not in stats


# --- where the secret lives -----------------------------------------------


def secrets_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("secret") if p.is_file())


def check_secret(secret: Path) -> None:
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700


def test_home_that_is_not_a_directory_uses_the_temp_fallback(runner: Runner) -> None:
    home_file = runner.root / "home-file"
    home_file.write_text("not a directory")
    tmp = runner.root / "tmp"
    tmp.mkdir(mode=0o700)
    env = {"HOME": str(home_file), "TMPDIR": str(tmp)}
    assert ran_args(runner.run(SMALL.format(n=3), **env)) == [0, 1, 2]
    proc = runner.run(SMALL.format(n=3), **env)
    assert ran_args(proc) == [] and proc.stderr == ""
    (secret,) = secrets_under(tmp)
    assert secret == tmp / f"bytecache-{os.geteuid()}" / "secret"
    check_secret(secret)


def test_no_home_at_all(runner: Runner) -> None:
    """HOME unset, and the account's home from the password database not
    writable (a read-only mount over its .config, in a mount namespace of
    the child's own): the secret goes to $TMPDIR/bytecache-<uid>/."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to hide the account's home (CI runs as root)")
    home = pwd.getpwuid(os.geteuid()).pw_dir
    tmp = runner.root / "tmp"
    tmp.mkdir(mode=0o700)
    runner.write("main.py", SMALL.format(n=3))
    env = {k: v for k, v in runner.env(TMPDIR=str(tmp)).items() if k != "HOME"}
    hide = ('mkdir -p "$1/.config" && mount -t tmpfs -o ro,mode=0755,size=64k tmpfs '
            '"$1/.config" && exec "$2" main.py')
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "sh", home,
           sys.executable]

    def run() -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd, cwd=runner.work, env=env, capture_output=True, text=True,
                              timeout=120)
        if "mount:" in proc.stderr or "unshare:" in proc.stderr:
            pytest.skip(f"cannot make a mount namespace here: {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stderr
        return proc

    assert ran_args(run()) == [0, 1, 2]
    proc = run()
    assert ran_args(proc) == [] and proc.stderr == "", "cached without HOME"
    (secret,) = secrets_under(tmp)
    check_secret(secret)


def test_regenerated_secret_is_not_reported_as_damage(runner: Runner) -> None:
    runner.run(SMALL.format(n=5))
    (secret,) = secrets_under(runner.home)
    secret.unlink()
    proc = runner.run(SMALL.format(n=5))
    assert ran_args(proc) == list(range(5))
    assert proc.stderr.count("BytecacheWarning") == 1 and "another secret" in proc.stderr
    assert "damaged" not in proc.stderr
    proc = runner.run(SMALL.format(n=5))
    assert ran_args(proc) == [] and proc.stderr == ""


def test_short_secret_is_corrupt(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"too short")
    secret.chmod(0o600)
    with pytest.raises(bc.CorruptCacheError, match="32 bytes"):
        bc.Store(str(tmp_path / "store"), secret_path=str(secret))


def test_secret_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "conf"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(bc.UnsafeCacheDirError):
        bc.Store(str(tmp_path / "store"), secret_path=str(d / "secret"))
    assert not (d / "secret").exists()
    d.chmod(0o700)
    bc.Store(str(tmp_path / "store"), secret_path=str(d / "secret"))


def test_cache_under_a_world_writable_parent_without_sticky_bit(runner: Runner) -> None:
    shared = runner.root / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = {"BYTECACHE_DIR": str(shared / "cache")}
    proc = runner.run(SMALL.format(n=2), **env)
    assert ran_args(proc) == [0, 1] and "SUM 1" in proc.stdout
    assert proc.stderr.count("BytecacheWarning") == 1 and "sticky" in proc.stderr
    with pytest.raises(bc.UnsafeCacheDirError, match="sticky"):
        bc.Store(str(shared / "other"), secret_path=str(runner.root / "secret"))
    shared.chmod(0o1777)  # like /tmp: others cannot rename what is ours
    runner.run(SMALL.format(n=2), **env)
    assert ran_args(runner.run(SMALL.format(n=2), **env)) == []


# --- a data file replaced by a symlink is repaired once --------------------

BOTH = """
import numpy as np
import bytecache

@bytecache.memoize
def f(x):
    ran(x)
    return [x, "value"]

@bytecache.memoize
def g():
    ran("g")
    return np.ones(1 << 18)

print("SUM", f(1)[0] + f(2)[0], g().sum())
"""


@pytest.mark.parametrize("which", ["own file", "segment"])
def test_data_file_replaced_by_symlink_is_repaired(runner: Runner, which: str) -> None:
    runner.run(BOTH)
    if which == "own file":
        victim = own_file(runner.cache)
    else:
        (victim,) = [p for p in data_files(runner.cache) if not int(p.name, 16) & (1 << 31)]
    copy = runner.root / "elsewhere"
    shutil.copy2(victim, copy)
    victim.unlink()
    victim.symlink_to(copy)
    proc = runner.run(BOTH)
    assert "SUM 3 262144.0" in proc.stdout
    ran = [line for line in proc.stdout.splitlines() if line.startswith("RAN")]
    assert ran == (["RAN g"] if which == "own file" else ["RAN 1", "RAN 2"])
    assert proc.stderr.count("BytecacheWarning") == 1 and "damaged" in proc.stderr
    proc = runner.run(BOTH)
    assert "RAN" not in proc.stdout and proc.stderr == "", "repaired for good"
    assert not victim.is_symlink()
