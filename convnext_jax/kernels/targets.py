"""The names of the native kernels: the FFI target each op calls, and its C++ symbol.

The one place these names live: `build.py` registers every target, the ops in
`convnext_jax/ops/` call them by these constants.
"""

DWCONV_FORWARD = "convnext_dwconv_forward"
DWCONV_KERNEL_GRAD = "convnext_dwconv_kernel_grad"
LAYERNORM_FORWARD = "convnext_layernorm_forward"
LAYERNORM_BACKWARD = "convnext_layernorm_backward"
GELU_FORWARD = "convnext_gelu_forward"
GELU_BACKWARD = "convnext_gelu_backward"

# FFI target -> exported C++ handler symbol (XLA_FFI_DEFINE_HANDLER_SYMBOL in the .cc files).
SYMBOLS = {
    DWCONV_FORWARD: "DwconvForward",
    DWCONV_KERNEL_GRAD: "DwconvKernelGrad",
    LAYERNORM_FORWARD: "LayerNormForward",
    LAYERNORM_BACKWARD: "LayerNormBackward",
    GELU_FORWARD: "GeluForward",
    GELU_BACKWARD: "GeluBackward",
}
