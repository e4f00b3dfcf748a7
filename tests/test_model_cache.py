"""The simulator model cache's eviction (``systole.sim.verilog.evict``): least recently
used models go first, until the models fit the budget; busy, kept and fresh models stay."""

import fcntl
import os

import pytest

from systole.sim import verilog

NOW = 1_000_000.0


def _model(root, name, *, last_use, size=1000, stamped=True):
    path = root / "sim" / name
    path.mkdir(parents=True)
    (path / "model.bin").write_bytes(bytes(size))
    if stamped:
        (path / "systole-build-ok").write_text("")
        os.utime(path / "systole-build-ok", (last_use, last_use))
    else:
        os.utime(path, (last_use, last_use))
    return path


@pytest.fixture
def cache(tmp_path):
    """Four 1000-byte models, last used 4000, 3000, 2000 and 60 seconds before NOW."""
    return tmp_path, [_model(tmp_path, name, last_use=NOW - age)
                      for name, age in (("a", 4000), ("b", 3000), ("c", 2000), ("d", 60))]


def _left(root):
    return sorted(path.name for path in (root / "sim").iterdir() if path.is_dir())


def test_oldest_models_go_first_until_the_budget_holds(cache):
    root, (a, b, _, _) = cache
    assert verilog.evict(root, budget=2500, now=NOW) == [a, b]
    assert _left(root) == ["c", "d"]
    assert verilog.evict(root, budget=2500, now=NOW) == []      # already within budget


def test_models_in_use_kept_or_fresh_stay(cache):
    root, (a, b, c, d) = cache
    # a is being run (run() holds its lock shared), b is the model just asked for.
    with open(a.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        removed = verilog.evict(root, budget=0, keep=[b], now=NOW)
    assert removed == [c]           # d was used 60 s ago, inside min_idle
    assert _left(root) == ["a", "b", "d"]
    assert verilog.evict(root, budget=0, now=NOW, min_idle=0) == [a, b, d]


def test_unstamped_directory_counts_from_its_own_time(tmp_path):
    _model(tmp_path, "done", last_use=NOW - 5000)
    failed = _model(tmp_path, "failed", last_use=NOW - 9000, stamped=False)
    assert verilog.evict(tmp_path, budget=1500, now=NOW) == [failed]


def test_budget_from_the_environment(cache, monkeypatch):
    root, (a, _, _, _) = cache
    monkeypatch.setenv("SYSTOLE_CACHE", str(root))
    monkeypatch.setenv("SYSTOLE_CACHE_MAX_GB", str(3500 / 2**30))
    assert verilog.evict(now=NOW) == [a]
    monkeypatch.setenv("SYSTOLE_CACHE_MAX_GB", "lots")
    with pytest.raises(ValueError, match=r"SYSTOLE_CACHE_MAX_GB must be a size in GiB "
                                         r"\(>= 0\), got 'lots'"):
        verilog.evict(now=NOW)
