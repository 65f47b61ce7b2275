// Depthwise 2-D convolution for XLA:CPU as XLA FFI custom calls (NHWC, fp32, stride 1,
// 'same' zero padding with pad = k / 2 before and k - 1 - pad after, as in
// convnext_jax/models/dwconv.py). Built on first use by convnext_jax/kernels/build.py.
//
//   DwconvForward:    y[n,h,w,c]  = b[c] + sum_{i,j} x[n, h+i-ph, w+j-pw, c] * k[i,j,c]
//                     (the input gradient is the same call with the flipped kernel, b = 0)
//   DwconvKernelGrad: dk[i,j,c]   = sum_{n,h,w} x[n, h+i-ph, w+j-pw, c] * g[n,h,w,c]
//
// Channels are the contiguous axis, so every inner loop is a unit-stride multiply-add over
// a block of channels that the compiler vectorises. Work is split into a fixed number of
// chunks that do not depend on the thread count, and partial kernel gradients are summed
// in chunk order, so results are bit-identical run to run.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu_common.h"

namespace ffi = xla::ffi;

namespace {

using convnext_jax::kLanes;
using convnext_jax::Load8;
using convnext_jax::ParallelFor;
using convnext_jax::Vec8;

constexpr int64_t kTile = 4;   // output pixels per register tile in the forward pass

struct Geometry {
  int64_t n, h, w, c, kh, kw, ph, pw;
  int64_t Offset(int64_t n_, int64_t h_, int64_t w_) const { return ((n_ * h + h_) * w + w_) * c; }
};

// out[p, c0:c0+L] = sum over valid taps of x * k for the P pixels (n, h, w..w+P-1). With
// Interior, every tap of every pixel is inside the image and no bounds are checked. For L = 8
// the P accumulators are vector registers.
template <int64_t P, int64_t L, bool Interior>
inline void ForwardTile(const float* x, const float* k, const float* b, float* y, const Geometry& g, int64_t n,
                        int64_t h, int64_t w, int64_t c0) {
  const int64_t i0 = std::max<int64_t>(0, g.ph - h), i1 = std::min<int64_t>(g.kh, g.h + g.ph - h);
  if constexpr (L == kLanes) {
    Vec8 acc[P];
    for (int64_t p = 0; p < P; ++p) acc[p] = Load8(b + c0);
    for (int64_t i = i0; i < i1; ++i) {
      const float* xrow = x + g.Offset(n, h + i - g.ph, 0) + c0;
      const float* krow = k + i * g.kw * g.c + c0;
      for (int64_t j = 0; j < g.kw; ++j) {
        const Vec8 kv = Load8(krow + j * g.c);
#pragma GCC unroll 8
        for (int64_t p = 0; p < P; ++p) {
          const int64_t xw = w + p + j - g.pw;
          if (!Interior && (xw < 0 || xw >= g.w)) continue;
          acc[p] += Load8(xrow + xw * g.c) * kv;
        }
      }
    }
    for (int64_t p = 0; p < P; ++p) std::memcpy(y + g.Offset(n, h, w + p) + c0, &acc[p], sizeof(Vec8));
  } else {
    float acc[P][L];
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t c = 0; c < L; ++c) acc[p][c] = b[c0 + c];
    }
    for (int64_t i = i0; i < i1; ++i) {
      const float* xrow = x + g.Offset(n, h + i - g.ph, 0) + c0;
      const float* krow = k + i * g.kw * g.c + c0;
      for (int64_t j = 0; j < g.kw; ++j) {
        const float* kp = krow + j * g.c;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t xw = w + p + j - g.pw;
          if (!Interior && (xw < 0 || xw >= g.w)) continue;
          const float* xp = xrow + xw * g.c;
          for (int64_t c = 0; c < L; ++c) acc[p][c] += xp[c] * kp[c];
        }
      }
    }
    for (int64_t p = 0; p < P; ++p) {
      float* out = y + g.Offset(n, h, w + p) + c0;
      for (int64_t c = 0; c < L; ++c) out[c] = acc[p][c];
    }
  }
}

// One output row (n, h), channels [c0, c0 + L).
template <int64_t L>
void ForwardRowBlock(const float* x, const float* k, const float* b, float* y, const Geometry& g, int64_t n, int64_t h,
                     int64_t c0) {
  const int64_t lo = g.pw, hi = g.w - (g.kw - 1 - g.pw);  // pixels whose taps are all inside
  int64_t w = 0;
  for (; w + kTile <= g.w; w += kTile) {
    if (w >= lo && w + kTile <= hi) {
      ForwardTile<kTile, L, true>(x, k, b, y, g, n, h, w, c0);
    } else {
      ForwardTile<kTile, L, false>(x, k, b, y, g, n, h, w, c0);
    }
  }
  for (; w < g.w; ++w) ForwardTile<1, L, false>(x, k, b, y, g, n, h, w, c0);
}

void ForwardRow(const float* x, const float* k, const float* b, float* y, const Geometry& g, int64_t n, int64_t h) {
  int64_t c0 = 0;
  for (; c0 + kLanes <= g.c; c0 += kLanes) ForwardRowBlock<kLanes>(x, k, b, y, g, n, h, c0);
  for (; c0 < g.c; ++c0) ForwardRowBlock<1>(x, k, b, y, g, n, h, c0);
}

// dk[i, :, c0:c0+L] += sum over images [n0, n1) and pixels of x(shifted by tap) * g, for one
// kernel row i; the KW tap accumulators stay in registers.
template <int64_t KW, int64_t L>
void KernelGradRow(const float* x, const float* gy, float* dk, const Geometry& g, int64_t n0, int64_t n1,
                   int64_t i, int64_t c0) {
  // For L = 8 the KW tap accumulators are vector registers; otherwise scalar arrays.
  using Acc = std::conditional_t<L == kLanes, Vec8, float[L]>;
  Acc acc[KW] = {};
  const int64_t lo = g.pw, hi = g.w - (g.kw - 1 - g.pw);
  const int64_t h0 = std::max<int64_t>(0, g.ph - i), h1 = std::min<int64_t>(g.h, g.h + g.ph - i);
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t h = h0; h < h1; ++h) {
      const float* xrow = x + g.Offset(n, h + i - g.ph, 0) + c0;
      const float* grow = gy + g.Offset(n, h, 0) + c0;
      for (int64_t w = 0; w < g.w; ++w) {
        const bool interior = w >= lo && w < hi;
        if constexpr (L == kLanes) {
          const Vec8 gv = Load8(grow + w * g.c);
#pragma GCC unroll 16
          for (int64_t j = 0; j < KW; ++j) {
            const int64_t xw = w + j - g.pw;
            if (!interior && (xw < 0 || xw >= g.w)) continue;
            acc[j] += Load8(xrow + xw * g.c) * gv;
          }
        } else {
          const float* gp = grow + w * g.c;
          for (int64_t j = 0; j < KW; ++j) {
            const int64_t xw = w + j - g.pw;
            if (!interior && (xw < 0 || xw >= g.w)) continue;
            for (int64_t c = 0; c < L; ++c) acc[j][c] += xrow[xw * g.c + c] * gp[c];
          }
        }
      }
    }
  }
  for (int64_t j = 0; j < KW; ++j) {
    float* out = dk + (i * g.kw + j) * g.c + c0;
    for (int64_t c = 0; c < L; ++c) out[c] += acc[j][c];
  }
}

template <int64_t KW>
void KernelGradRows(const float* x, const float* gy, float* dk, const Geometry& g, int64_t n0, int64_t n1) {
  for (int64_t i = 0; i < g.kh; ++i) {
    int64_t c0 = 0;
    for (; c0 + kLanes <= g.c; c0 += kLanes) KernelGradRow<KW, kLanes>(x, gy, dk, g, n0, n1, i, c0);
    for (; c0 < g.c; ++c0) KernelGradRow<KW, 1>(x, gy, dk, g, n0, n1, i, c0);
  }
}

// Kernel gradient of images [n0, n1) added into dk; KW is a template argument for the usual
// odd kernel widths so the tap accumulators live in registers.
void KernelGradImages(const float* x, const float* gy, float* dk, const Geometry& g, int64_t n0, int64_t n1) {
  switch (g.kw) {
    case 1: return KernelGradRows<1>(x, gy, dk, g, n0, n1);
    case 3: return KernelGradRows<3>(x, gy, dk, g, n0, n1);
    case 5: return KernelGradRows<5>(x, gy, dk, g, n0, n1);
    case 7: return KernelGradRows<7>(x, gy, dk, g, n0, n1);
    case 9: return KernelGradRows<9>(x, gy, dk, g, n0, n1);
    case 11: return KernelGradRows<11>(x, gy, dk, g, n0, n1);
    default: break;
  }
  for (int64_t n = n0; n < n1; ++n) {  // any other width: plain loops
    for (int64_t h = 0; h < g.h; ++h) {
      for (int64_t w = 0; w < g.w; ++w) {
        const float* gp = gy + g.Offset(n, h, w);
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t xh = h + i - g.ph;
          if (xh < 0 || xh >= g.h) continue;
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t xw = w + j - g.pw;
            if (xw < 0 || xw >= g.w) continue;
            const float* xp = x + g.Offset(n, xh, xw);
            float* out = dk + (i * g.kw + j) * g.c;
            for (int64_t c = 0; c < g.c; ++c) out[c] += xp[c] * gp[c];
          }
        }
      }
    }
  }
}

// Geometry from the (N, H, W, C) image and (KH, KW, C) kernel dimensions.
template <typename Dims>
ffi::Error MakeGeometry(const Dims& xd, const Dims& kd, Geometry* g) {
  if (xd.size() != 4 || kd.size() != 3 || kd[2] != xd[3]) {
    return ffi::Error::InvalidArgument("dwconv expects x (N, H, W, C) and kernel (KH, KW, C)");
  }
  *g = Geometry{xd[0], xd[1], xd[2], xd[3], kd[0], kd[1], kd[0] / 2, kd[1] / 2};
  return ffi::Error::Success();
}

ffi::Error DwconvForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                             ffi::Buffer<ffi::F32> bias, ffi::ResultBuffer<ffi::F32> y) {
  Geometry g;
  if (ffi::Error err = MakeGeometry(x.dimensions(), k.dimensions(), &g); err.failure()) return err;
  if (bias.element_count() != g.c) return ffi::Error::InvalidArgument("dwconv bias must have shape (C,)");
  const float* bp = bias.typed_data();
  const float* xp = x.typed_data();
  const float* kp = k.typed_data();
  float* yp = y->typed_data();
  const int64_t rows = g.n * g.h;
  const int64_t chunks = std::min<int64_t>(rows, 64);
  ParallelFor(pool, chunks, [&](int64_t chunk) {
    for (int64_t r = chunk * rows / chunks; r < (chunk + 1) * rows / chunks; ++r) {
      ForwardRow(xp, kp, bp, yp, g, r / g.h, r % g.h);
    }
  });
  return ffi::Error::Success();
}

ffi::Error DwconvKernelGradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> gy,
                                ffi::ResultBuffer<ffi::F32> dk) {
  Geometry g;
  if (ffi::Error err = MakeGeometry(x.dimensions(), dk->dimensions(), &g); err.failure()) return err;
  if (gy.element_count() != x.element_count()) {
    return ffi::Error::InvalidArgument("dwconv kernel grad expects g with the shape of x");
  }
  const int64_t taps = g.kh * g.kw * g.c;
  // Fixed chunking over groups of images, independent of the thread count.
  const int64_t groups = std::min<int64_t>(g.n, 16);
  std::vector<float> partial(static_cast<size_t>(groups) * taps, 0.0f);
  const float* xp = x.typed_data();
  const float* gp = gy.typed_data();
  ParallelFor(pool, groups, [&](int64_t group) {
    KernelGradImages(xp, gp, partial.data() + group * taps, g, group * g.n / groups, (group + 1) * g.n / groups);
  });
  float* out = dk->typed_data();
  if (groups == 0) {  // empty batch: the gradient is zero
    std::fill(out, out + taps, 0.0f);
    return ffi::Error::Success();
  }
  std::memcpy(out, partial.data(), taps * sizeof(float));
  for (int64_t group = 1; group < groups; ++group) {
    const float* src = partial.data() + group * taps;
    for (int64_t t = 0; t < taps; ++t) out[t] += src[t];
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DwconvForward, DwconvForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // x (N, H, W, C)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // kernel (KH, KW, C)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // bias (C,), the accumulators' start
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(DwconvKernelGrad, DwconvKernelGradImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
