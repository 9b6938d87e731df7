"""What classification learns about the installation is kept in the cache
directory for later processes (`_distcache`): distributions' identities,
reused only while the site directory and the distribution's RECORD are as
they were, and the interpreter's library directories. Each check runs a
fresh interpreter, on a site directory of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Prints the identity of `fakepkg` in the site directory argv[1]; with
# argv[2] == "kept-only", finding it anew fails (so only a kept one answers).
IDENTIFY = """
import sys
from bytecache import _modkind
if sys.argv[2] == "kept-only":
    def refuse(*a):
        raise AssertionError("the identity was computed again")
    _modkind._find = refuse
print(_modkind._installed(sys.argv[1], "fakepkg/__init__.py"))
"""


def identify(site: Path, cache: Path, mode: str = "any") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BYTECACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", IDENTIFY, str(site) + os.sep, mode],
                          capture_output=True, text=True, env=env, timeout=60)


def dist(site: Path, info: str, files: dict[str, str], top_level: str | None) -> None:
    d = site / info
    d.mkdir()
    if top_level is not None:
        (d / "top_level.txt").write_text(top_level + "\n")
    record = [f"{name},sha256={digest},10" for name, digest in files.items()]
    record += [f"{info}/RECORD,,"]
    (d / "RECORD").write_text("\n".join(record) + "\n")


def kept(cache: Path, kind: str) -> list[str]:
    path = cache / "libraries"
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.startswith(kind + "\t")]


def settled() -> None:
    """Stamps newer than two seconds are not kept (coarse timestamps)."""
    time.sleep(2.1)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    s = tmp_path / "site-packages"
    (s / "fakepkg").mkdir(parents=True)
    (s / "fakepkg" / "__init__.py").write_text("X = 1\n")
    dist(s, "fakepkg-1.0.dist-info", {"fakepkg/__init__.py": "aaa"}, "fakepkg")
    return s


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    c = tmp_path / "cache"
    c.mkdir(mode=0o700)
    return c


def test_a_kept_identity_answers_a_new_process(site: Path, cache: Path) -> None:
    settled()
    first = identify(site, cache)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("fakepkg==1.0#")
    assert (cache / "libraries").read_text().startswith("bytecache-libraries 2\n")
    assert len(kept(cache, "L")) == 1
    again = identify(site, cache, "kept-only")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_a_cache_directory_chosen_after_the_import_is_read_and_written(
        site: Path, cache: Path, tmp_path: Path) -> None:
    # `_modkind`'s import already read the file of the directory in effect
    # then; setting `BYTECACHE_DIR` after it switches both ways.
    settled()
    script = IDENTIFY.replace("from bytecache import _modkind\n", (
        "from bytecache import _modkind\n"
        "import os\n"
        f"os.environ['BYTECACHE_DIR'] = {str(cache)!r}\n"))
    env = {**os.environ, "BYTECACHE_DIR": str(tmp_path / "elsewhere")}
    runs = [subprocess.run([sys.executable, "-c", script, str(site) + os.sep, mode],
                           capture_output=True, text=True, env=env, timeout=60)
            for mode in ("any", "kept-only")]
    assert [r.returncode for r in runs] == [0, 0], runs[1].stderr
    assert runs[1].stdout == runs[0].stdout
    assert len(kept(cache, "L")) == 1


def test_an_edited_record_is_read_again(site: Path, cache: Path) -> None:
    settled()
    first = identify(site, cache).stdout
    record = site / "fakepkg-1.0.dist-info" / "RECORD"
    record.write_text(record.read_text().replace("sha256=aaa", "sha256=bbb"))
    assert identify(site, cache, "kept-only").returncode != 0
    second = identify(site, cache)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("fakepkg==1.0#") and second.stdout != first


def test_a_distribution_installed_beside_it_is_seen(tmp_path: Path, cache: Path) -> None:
    # `fakepkg` is first found through the RECORD of a distribution named
    # otherwise; then a `fakepkg` distribution is installed over its files
    # and the old metadata stays. Its RECORD is unchanged: only the site
    # directory's stamp tells.
    site = tmp_path / "site-packages"
    (site / "fakepkg").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text("X = 1\n")
    dist(site, "weird-1.0.dist-info", {"fakepkg/__init__.py": "aaa"}, None)
    settled()
    assert identify(site, cache).stdout.startswith("weird==1.0#")
    dist(site, "fakepkg-2.0.dist-info", {"fakepkg/__init__.py": "ccc"}, "fakepkg")
    assert identify(site, cache).stdout.startswith("fakepkg==2.0#")


def test_a_fresh_install_is_not_kept(site: Path, cache: Path) -> None:
    assert identify(site, cache).returncode == 0
    assert kept(cache, "L") == []


def test_nothing_is_kept_in_a_directory_others_can_write(site: Path, cache: Path) -> None:
    cache.chmod(0o770)
    settled()
    assert identify(site, cache).returncode == 0
    assert not (cache / "libraries").exists()


@pytest.mark.parametrize("content", [
    b"\x00\xff not ours\n",
    b"bytecache-libraries 1\nshort\tline\n\xff\xfe\n",
    b"bytecache-libraries 999\nanything\n",
])
def test_a_foreign_or_damaged_file_is_ignored(site: Path, cache: Path, content: bytes) -> None:
    (cache / "libraries").write_bytes(content)
    settled()
    first = identify(site, cache)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("fakepkg==1.0#")
    again = identify(site, cache, "kept-only")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


# Prints the library directories classification uses; with argv[1] ==
# "kept-only", importing sysconfig fails (so only kept ones answer).
PATHS = """
import sys
if sys.argv[1] == "kept-only":
    sys.modules["sysconfig"] = None
from bytecache import _modkind
print(_modkind._STDLIB, _modkind._SITE, _modkind._LIBRARY_PREFIXES)
"""


def paths(cache: Path, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PATHS, mode], capture_output=True, text=True,
                          env={**os.environ, "BYTECACHE_DIR": str(cache), **env}, timeout=60)


def test_the_library_directories_are_kept(cache: Path) -> None:
    assert paths(cache, "kept-only").returncode != 0  # nothing kept yet
    first = paths(cache, "any")
    assert first.returncode == 0, first.stderr
    assert len(kept(cache, "P")) == 1
    again = paths(cache, "kept-only")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_the_library_directories_follow_what_sysconfig_reads(cache: Path) -> None:
    assert paths(cache, "any").returncode == 0
    other = paths(cache, "kept-only", PYTHONUSERBASE=str(cache / "elsewhere"))
    assert other.returncode != 0  # another environment: computed again
    assert paths(cache, "any", PYTHONUSERBASE=str(cache / "elsewhere")).returncode == 0
    assert len(kept(cache, "P")) == 2


def test_kept_in_a_memoized_functions_directory_without_a_default_one(tmp_path: Path) -> None:
    home, own = tmp_path / "home", tmp_path / "own"
    home.mkdir()
    own.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYTECACHE", "XDG_"))}
    script = f"""
import bytecache
f = bytecache.memoize(cache_dir={str(own)!r})(lambda x: x)
print(f(1))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env={**env, "HOME": str(home)}, timeout=60)
    assert p.returncode == 0, p.stderr
    assert len(kept(own, "P")) == 1
    assert not (home / ".cache").exists()
