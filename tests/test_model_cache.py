"""The simulator model cache: its eviction (``systole.sim.verilog.evict``: least recently
used models go first, until the models fit the budget; busy, kept and fresh models stay),
its budget setting, and a damaged entry rebuilt instead of reused."""

import fcntl
import os

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

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
    for value in ("lots", "inf", "-1", "nan"):
        monkeypatch.setenv("SYSTOLE_CACHE_MAX_GB", value)
        with pytest.raises(ValueError, match=rf"SYSTOLE_CACHE_MAX_GB must be a finite size "
                                             rf"in GiB \(>= 0\), got '{value}'"):
            verilog.evict(now=NOW)


def test_bad_budget_fails_before_a_build(tmp_path, monkeypatch):
    monkeypatch.setenv("SYSTOLE_CACHE", str(tmp_path))
    monkeypatch.setenv("SYSTOLE_CACHE_MAX_GB", "inf")

    def never():
        raise AssertionError("the model was built before the budget was checked")
    with pytest.raises(ValueError, match="SYSTOLE_CACHE_MAX_GB must be a finite size"):
        verilog.build(never, "counter", "bad-budget")


class _Counter(wiring.Component):
    count: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.count.eq(self.count + 1)
        return m


def test_damaged_model_is_rebuilt(tmp_path, monkeypatch, capsys):
    """A stamped model whose executable was truncated, or deleted, is rebuilt, not reused;
    a stamp that records nothing (an older cache's) counts as damaged too."""
    monkeypatch.setenv("SYSTOLE_CACHE", str(tmp_path))
    built = []

    def make():
        built.append(1)
        return _Counter()
    build_dir = verilog.build(make, "counter", "damage")
    product = build_dir / "counter"
    size = product.stat().st_size
    assert verilog.build(make, "counter", "damage") == build_dir and len(built) == 1
    with open(product, "r+b") as file:
        file.truncate(size // 2)
    capsys.readouterr()
    assert verilog.build(make, "counter", "damage") == build_dir and len(built) == 2
    assert f"counter is {size // 2} bytes, the build made {size}" in capsys.readouterr().err
    assert product.stat().st_size == size
    for damage, reason in ((product.unlink, "counter is missing"),
                           (lambda: (build_dir / "systole-build-ok").write_text("damage"),
                            "its build stamp is unreadable")):
        damage()
        rebuilt = len(built) + 1
        assert verilog.build(make, "counter", "damage") == build_dir and len(built) == rebuilt
        assert f"is damaged ({reason}); rebuilding it" in capsys.readouterr().err
        assert product.stat().st_size == size
    assert verilog.build(make, "counter", "damage") == build_dir and len(built) == 4
