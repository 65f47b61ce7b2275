"""Building the native kernels: compiler errors are reported, nothing partial is left behind."""

import pytest


def test_kernel_build_error_shows_the_compiler_message(tmp_path, monkeypatch):
    from convnext_jax.kernels import build

    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++;\n")
    monkeypatch.setattr(build, "SOURCES", (broken,))
    monkeypatch.setenv("CONVNEXT_JAX_KERNEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(build.KernelBuildError, match="compiling broken.cc failed"):
        build._build(build.library_path())
    assert not list((tmp_path / "cache").rglob("*.so"))  # no partial library left behind
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CONVNEXT_JAX_KERNEL_CACHE", str(tmp_path / "file" / "cache"))  # not a directory
    with pytest.raises(build.KernelBuildError, match="CONVNEXT_JAX_KERNEL_CACHE"):
        build._build(build.library_path())
