"""The compile cache, trusted like code (Inductor unpickles its entries), lives outside the run directory in a
private per-user directory, which a requeued job finds again; a planted one is refused (docs/faults.md R2-3)."""
import os
import stat

import pytest

from egovlpv2.errors import UserError
from egovlpv2.model.compile import CompileMode
from egovlpv2.train.compile import run_cache_dir, start_compile_clock, use_private_compile_cache


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    return tmp_path / "cache"


def test_the_cache_is_private_outside_the_run_directory_and_found_again(cache_home, tmp_path, monkeypatch):
    run = tmp_path / "shared" / "run"
    path = use_private_compile_cache(run)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == path
    assert path.startswith(str(cache_home / "egovlpv2" / "compile")) and not path.startswith(str(run))
    info = os.stat(path)
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    assert use_private_compile_cache(tmp_path / "shared" / ".." / "shared" / "run") == path  # a requeued job
    assert run_cache_dir(tmp_path / "other") != run_cache_dir(run)
    assert not run.exists()
    clock = start_compile_clock(CompileMode.BLOCKS, run)
    clock.close()
    assert start_compile_clock(CompileMode.OFF, run) is None


@pytest.mark.parametrize("plant", ["world-writable", "other-owner", "link"])
def test_a_planted_cache_directory_is_refused(cache_home, tmp_path, plant):
    run = tmp_path / "run"
    target = run_cache_dir(run)
    target.parent.mkdir(parents=True, mode=0o700)
    if plant == "link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.mkdir()
        os.chmod(target, 0o777)
        if plant == "other-owner":
            if os.getuid() != 0:
                pytest.skip("giving a directory to another user needs root")
            os.chmod(target, 0o700)
            os.chown(target, 65534, 65534)
    with pytest.raises(UserError, match="not private"):
        use_private_compile_cache(run)
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ


def test_an_explicit_cache_directory_wins(cache_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_private_compile_cache(tmp_path / "run") == str(tmp_path / "mine")
