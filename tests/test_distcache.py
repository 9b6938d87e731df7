"""Identities of installed distributions are kept in the cache directory for
later processes (`_distcache`), and reused only while the site directory and
the distribution's RECORD are as they were. Each check runs a fresh
interpreter on a site directory of its own."""

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
    assert (cache / "libraries").read_text().startswith("bytecache-libraries 1\n")
    again = identify(site, cache, "kept-only")
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


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
    assert not (cache / "libraries").exists()


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
