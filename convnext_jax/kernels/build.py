"""Compile the C++ XLA:CPU kernels once per machine and register them as FFI targets.

Like `torch.utils.cpp_extension.load`, the shared library is built on first use with the
system C++ compiler (`$CXX`, default `g++`; one compiler process per source, in parallel)
against the XLA FFI headers shipped in jaxlib, and cached under `$CONVNEXT_JAX_KERNEL_CACHE`
(default `~/.cache/convnext_jax/kernels`). The cache key covers the sources, jaxlib
version, compiler, flags and the CPU's instruction set (the library is built with
`-march=native`), so a shared home directory never hands a library to a machine that cannot
run it. Builds happen in a temporary directory and the library is renamed into place, so
concurrent processes (sweep workers, multi-process tests) never see a partial library.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import jax
import jaxlib

from convnext_jax.errors import UserError
from convnext_jax.kernels.targets import SYMBOLS

log = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).parent
SOURCES = (KERNEL_DIR / "dwconv_cpu.cc", KERNEL_DIR / "layernorm_cpu.cc", KERNEL_DIR / "gelu_cpu.cc")
HEADERS = (KERNEL_DIR / "cpu_common.h",)
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-w")


class KernelBuildError(UserError, RuntimeError):
    """The C++ kernels could not be compiled or loaded (no compiler, compile error, ...)."""


def _cpu_signature() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    root = os.environ.get("CONVNEXT_JAX_KERNEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "convnext_jax" / "kernels"


def _compiler() -> str:
    cxx = os.environ.get("CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise KernelBuildError(f"no C++ compiler {cxx!r} on PATH (set $CXX, or install g++ to build the CPU kernels)")
    return path


def library_path(
    sources: tuple[Path, ...] | None = None,
    headers: tuple[Path, ...] | None = None,
    flags: tuple[str, ...] | None = None,
    name: str = "convnext_cpu_kernels.so",
    with_jaxlib: bool = True,
) -> Path:
    """Where the library for these sources (default: the XLA kernels), jaxlib (when it builds
    against its headers), compiler, flags and CPU lives (built or not)."""
    sources, headers, flags = sources or SOURCES, HEADERS if headers is None else headers, flags or FLAGS
    cxx = _compiler()
    version = subprocess.run([cxx, "--version"], check=False, capture_output=True, text=True).stdout.splitlines()[:1]
    texts = [path.read_text() for path in (*sources, *headers)]
    key = hashlib.sha256(
        "\n".join([*texts, jaxlib.__version__ if with_jaxlib else "", cxx, *version, *flags, _cpu_signature()]).encode()
    ).hexdigest()[:16]
    return _cache_dir() / key / name


def _build(
    target: Path,
    sources: tuple[Path, ...] | None = None,
    flags: tuple[str, ...] | None = None,
    libraries: tuple[str, ...] = (),
) -> None:
    """Compile every source (default: the XLA kernels) to an object file (in parallel), link them
    (with `libraries`: linker arguments after the objects), rename into place."""
    sources, flags = sources or SOURCES, flags or FLAGS
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(dir=target.parent))
    except OSError as err:
        raise KernelBuildError(
            f"cannot write the kernel cache {target.parent}: {err} "
            "(set $CONVNEXT_JAX_KERNEL_CACHE to a writable directory)"
        ) from err
    try:
        compile_flags = [flag for flag in flags if flag != "-shared"]
        includes = [f"-I{jax.ffi.include_dir()}", f"-I{KERNEL_DIR}"]
        jobs = []
        for source in sources:
            cmd = [_compiler(), *compile_flags, *includes, "-c", str(source), "-o", str(workdir / f"{source.stem}.o")]
            log.info("building native kernels: %s", " ".join(cmd))
            jobs.append((source, cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        errors = [(source, cmd, proc.communicate()[1]) for source, cmd, proc in jobs]  # wait for all
        for (source, cmd, stderr), (_, _, proc) in zip(errors, jobs):
            if proc.returncode != 0:
                raise KernelBuildError(f"compiling {source.name} failed ({' '.join(cmd)}):\n{stderr[-4000:]}")
        library = workdir / target.name
        cmd = [_compiler(), *flags, *(str(workdir / f"{s.stem}.o") for s in sources), *libraries, "-o", str(library)]
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise KernelBuildError(f"linking {target.name} failed ({' '.join(cmd)}):\n{result.stderr[-4000:]}")
        os.replace(library, target)  # atomic: concurrent builders never see a partial library
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def load_library(
    sources: tuple[Path, ...] | None = None,
    headers: tuple[Path, ...] | None = None,
    flags: tuple[str, ...] | None = None,
    name: str = "convnext_cpu_kernels.so",
    *,
    libraries: tuple[str, ...] = (),
    with_jaxlib: bool = True,
) -> ctypes.CDLL:
    """Build (if not cached) and load a native library (default: the XLA kernels); the cache key
    covers the link arguments too (`libraries`: another libjpeg builds another library).

    Raises KernelBuildError with the compiler's or the loader's message when that is impossible.
    """
    flags = flags or FLAGS
    target = library_path(sources, headers, (*flags, *libraries), name, with_jaxlib)
    if not target.exists():
        _build(target, sources, flags, libraries)
    try:
        return ctypes.cdll.LoadLibrary(str(target))
    except OSError as err:
        raise KernelBuildError(f"loading {target} failed: {err} (delete it to rebuild)") from err


class OptionalLibrary:
    """A native library for an optional speed-up, built and loaded on first call, once per
    process (thread-safe); the call returns None where it cannot be built, after one warning
    naming what falls back (`unavailable`) and why."""

    def __init__(self, load: Callable[[], ctypes.CDLL], unavailable: str):
        self._load, self._unavailable = load, unavailable
        self._lock = threading.Lock()
        self._loaded = False
        self._library: ctypes.CDLL | None = None

    def __call__(self) -> ctypes.CDLL | None:
        with self._lock:
            if not self._loaded:
                try:
                    self._library = self._load()
                except (KernelBuildError, OSError) as err:
                    log.warning("%s: %s", self._unavailable, err)
                self._loaded = True
            return self._library


@functools.cache
def load_cpu_kernels() -> Path:
    """Build (if not cached), load and register the kernels; returns the library path.

    Raises KernelBuildError with the compiler's message when that is impossible.
    """
    lib = load_library()
    for name, symbol in SYMBOLS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return Path(lib._name)


@functools.cache
def cpu_kernels_available() -> bool:
    """True when the kernels are loaded (building them if needed); logs why not otherwise."""
    try:
        load_cpu_kernels()
    except KernelBuildError as err:
        log.warning(
            "native CPU kernels unavailable (depthwise conv falls back to the XLA 'shift' formulation, "
            "LayerNorm to XLA): %s",
            err,
        )
        return False
    return True
