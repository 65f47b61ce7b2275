"""The ops table: choices, what 'auto' resolves to, errors, and that choosing imports no kernels."""

import os
import subprocess
import sys

import jax
import pytest

from convnext_jax.errors import ConfigError
from convnext_jax.ops import OPTION, impl_choices, implementation, resolve_impl, resolve_ops


def test_auto_picks_the_native_kernels_on_cpu():
    on_cpu = jax.default_backend() == "cpu"
    assert resolve_impl("dwconv") == ("ffi" if on_cpu else "lax")
    assert resolve_impl("layer_norm") == resolve_impl("gelu") == ("ffi" if on_cpu else "xla")
    assert resolve_impl("dense") == "xla"
    assert resolve_impl("dwconv", backend="gpu") == "lax" and resolve_impl("layer_norm", backend="gpu") == "xla"
    ops = resolve_ops(dwconv="shift", gelu="xla")
    assert ops.dwconv is implementation("dwconv", "shift") and ops.gelu is implementation("gelu", "xla")
    assert "dwconv=shift" in ops.describe() and "gelu=xla" in ops.describe()


def test_unknown_names_and_native_kernels_off_cpu_are_config_errors():
    with pytest.raises(ConfigError, match="dwconv_impl must be one of auto, lax, lax_vjp, shift, ffi; got 'fft'"):
        resolve_impl("dwconv", "fft")
    with pytest.raises(ConfigError, match="gelu_impl"):
        resolve_impl("gelu", "fast")
    with pytest.raises(ConfigError, match="norm_impl='ffi' is a CPU kernel; the backend is 'gpu' .use auto, xla."):
        resolve_impl("layer_norm", "ffi", backend="gpu")
    assert set(OPTION) == {"dwconv", "layer_norm", "gelu", "dense"}
    assert impl_choices("dense") == ("auto", "xla", "autodiff")


def test_choosing_imports_no_kernels():
    """Config validation uses the table; neither it nor the model config imports the kernels."""
    script = (
        "import sys\n"
        "import convnext_jax.ops, convnext_jax.models.config\n"
        "from convnext_jax.models.config import ConvNeXtConfig\n"
        "ConvNeXtConfig(dwconv_impl='ffi', norm_impl='xla')\n"
        "assert not [m for m in sys.modules if m.startswith('convnext_jax.kernels')], sorted(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_without_a_compiler_auto_falls_back_and_ffi_says_why(tmp_path):
    """No C++ compiler: 'auto' uses the shift formulation (with a warning), 'ffi' raises."""
    script = (
        "import jax, pytest\n"
        "from convnext_jax.kernels import KernelBuildError\n"
        "from convnext_jax.ops import resolve_impl\n"
        "assert resolve_impl('dwconv', 'auto') == 'shift'\n"
        "assert resolve_impl('layer_norm', 'auto') == resolve_impl('gelu', 'auto') == 'xla'\n"
        "with pytest.raises(KernelBuildError, match='no C\\+\\+ compiler'):\n"
        "    resolve_impl('dwconv', 'ffi')\n"
        "print('ok')\n"
    )
    env = {**os.environ, "CXX": "no-such-compiler", "CONVNEXT_JAX_KERNEL_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ok" in result.stdout and "falls back to the XLA 'shift' formulation" in result.stderr
