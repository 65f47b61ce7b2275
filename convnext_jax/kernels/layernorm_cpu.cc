// LayerNorm over the last (contiguous) axis for XLA:CPU as XLA FFI custom calls, fp32,
// with the same maths as convnext_jax/models/layers.py::layer_norm (two-pass variance).
// Built on first use by convnext_jax/kernels/build.py.
//
//   LayerNormForward:  y = (x - mean) * rstd * scale + bias, also returns mean and rstd
//                      (rstd = 1 / sqrt(var + eps)) per row for the backward pass.
//   LayerNormBackward: x_hat = (x - mean) * rstd, g' = g * scale,
//                      dx = rstd * (g' - mean(g') - x_hat * mean(g' * x_hat)),
//                      dscale = sum_rows g * x_hat, dbias = sum_rows g.
//
// XLA:CPU runs these row reductions over few channels (40 in ConvNeXt-atto's first stage)
// as several passes at ~2 ns per element; here one row stays in L1 for all its passes.
// Rows are split into a fixed number of chunks (independent of the thread count) and the
// per-chunk partial dscale/dbias are summed in chunk order, so results are bit-identical
// run to run.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu_common.h"

namespace ffi = xla::ffi;

namespace {

using convnext_jax::kLanes;
using convnext_jax::Load8;
using convnext_jax::ParallelFor;
using convnext_jax::RowsAndChannels;
using convnext_jax::Splat8;
using convnext_jax::Store8;
using convnext_jax::Sum8;
using convnext_jax::Vec8;

constexpr int64_t kForwardChunks = 64;
constexpr int64_t kBackwardChunks = 32;  // each holds a partial dscale and dbias

float RowSum(const float* x, int64_t c) {
  Vec8 a0 = {}, a1 = {};
  int64_t i = 0;
  for (; i + 2 * kLanes <= c; i += 2 * kLanes) {
    a0 += Load8(x + i);
    a1 += Load8(x + i + kLanes);
  }
  for (; i + kLanes <= c; i += kLanes) a0 += Load8(x + i);
  float s = Sum8(a0 + a1);
  for (; i < c; ++i) s += x[i];
  return s;
}

float RowSquaredDeviation(const float* x, int64_t c, float mean) {
  const Vec8 m = Splat8(mean);
  Vec8 a0 = {}, a1 = {};
  int64_t i = 0;
  for (; i + 2 * kLanes <= c; i += 2 * kLanes) {
    const Vec8 d0 = Load8(x + i) - m, d1 = Load8(x + i + kLanes) - m;
    a0 += d0 * d0;
    a1 += d1 * d1;
  }
  for (; i + kLanes <= c; i += kLanes) {
    const Vec8 d = Load8(x + i) - m;
    a0 += d * d;
  }
  float s = Sum8(a0 + a1);
  for (; i < c; ++i) s += (x[i] - mean) * (x[i] - mean);
  return s;
}

ffi::Error CheckVector(const ffi::Buffer<ffi::F32>& v, int64_t channels, const char* name) {
  if (v.dimensions().size() != 1 || v.dimensions()[0] != channels) {
    return ffi::Error::InvalidArgument(std::string("layer norm ") + name + " must have shape (C,) with C = " +
                                       std::to_string(channels));
  }
  return ffi::Error::Success();
}

ffi::Error LayerNormForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> scale,
                                ffi::Buffer<ffi::F32> bias, float eps, ffi::ResultBuffer<ffi::F32> y,
                                ffi::ResultBuffer<ffi::F32> mean, ffi::ResultBuffer<ffi::F32> rstd) {
  int64_t rows, c;
  RowsAndChannels(x, &rows, &c);
  if (ffi::Error err = CheckVector(scale, c, "scale"); err.failure()) return err;
  if (ffi::Error err = CheckVector(bias, c, "bias"); err.failure()) return err;
  const float* xp = x.typed_data();
  const float* sp = scale.typed_data();
  const float* bp = bias.typed_data();
  float* yp = y->typed_data();
  float* mp = mean->typed_data();
  float* rp = rstd->typed_data();
  const int64_t chunks = std::min(rows, kForwardChunks);
  ParallelFor(pool, chunks, [&](int64_t chunk) {
    for (int64_t r = chunk * rows / chunks; r < (chunk + 1) * rows / chunks; ++r) {
      const float* xr = xp + r * c;
      float* yr = yp + r * c;
      const float m = RowSum(xr, c) / c;
      const float s = 1.0f / std::sqrt(RowSquaredDeviation(xr, c, m) / c + eps);
      mp[r] = m;
      rp[r] = s;
      const Vec8 mv = Splat8(m), sv = Splat8(s);
      int64_t i = 0;
      for (; i + kLanes <= c; i += kLanes) {
        Store8(yr + i, (Load8(xr + i) - mv) * sv * Load8(sp + i) + Load8(bp + i));
      }
      for (; i < c; ++i) yr[i] = (xr[i] - m) * s * sp[i] + bp[i];
    }
  });
  return ffi::Error::Success();
}

// One row of the backward pass: writes dx and adds g * x_hat and g into dscale, dbias.
void BackwardRow(const float* x, const float* g, const float* scale, float m, float s, int64_t c, float* dx,
                 float* dscale, float* dbias) {
  const Vec8 mv = Splat8(m), sv = Splat8(s);
  Vec8 sum_gs = {}, sum_gsx = {};
  int64_t i = 0;
  for (; i + kLanes <= c; i += kLanes) {
    const Vec8 x_hat = (Load8(x + i) - mv) * sv, gv = Load8(g + i), gs = gv * Load8(scale + i);
    sum_gs += gs;
    sum_gsx += gs * x_hat;
    Store8(dscale + i, Load8(dscale + i) + gv * x_hat);
    Store8(dbias + i, Load8(dbias + i) + gv);
  }
  float a = Sum8(sum_gs), b = Sum8(sum_gsx);
  for (int64_t j = i; j < c; ++j) {
    const float x_hat = (x[j] - m) * s, gs = g[j] * scale[j];
    a += gs;
    b += gs * x_hat;
    dscale[j] += g[j] * x_hat;
    dbias[j] += g[j];
  }
  a /= c;
  b /= c;
  const Vec8 av = Splat8(a), bv = Splat8(b);
  for (i = 0; i + kLanes <= c; i += kLanes) {
    const Vec8 x_hat = (Load8(x + i) - mv) * sv, gs = Load8(g + i) * Load8(scale + i);
    Store8(dx + i, sv * (gs - av - x_hat * bv));
  }
  for (; i < c; ++i) dx[i] = s * (g[i] * scale[i] - a - (x[i] - m) * s * b);
}

ffi::Error LayerNormBackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> scale,
                                 ffi::Buffer<ffi::F32> mean, ffi::Buffer<ffi::F32> rstd, ffi::Buffer<ffi::F32> g,
                                 ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dscale,
                                 ffi::ResultBuffer<ffi::F32> dbias) {
  int64_t rows, c;
  RowsAndChannels(x, &rows, &c);
  if (ffi::Error err = CheckVector(scale, c, "scale"); err.failure()) return err;
  if (g.element_count() != x.element_count() || mean.element_count() != rows || rstd.element_count() != rows) {
    return ffi::Error::InvalidArgument("layer norm backward: g must match x, mean and rstd have one value per row");
  }
  const float* xp = x.typed_data();
  const float* sp = scale.typed_data();
  const float* mp = mean.typed_data();
  const float* rp = rstd.typed_data();
  const float* gp = g.typed_data();
  float* dxp = dx->typed_data();
  const int64_t chunks = std::min(rows, kBackwardChunks);
  std::vector<float> partial(static_cast<size_t>(chunks) * 2 * c, 0.0f);  // [chunk][dscale | dbias]
  ParallelFor(pool, chunks, [&](int64_t chunk) {
    float* ds = partial.data() + chunk * 2 * c;
    for (int64_t r = chunk * rows / chunks; r < (chunk + 1) * rows / chunks; ++r) {
      BackwardRow(xp + r * c, gp + r * c, sp, mp[r], rp[r], c, dxp + r * c, ds, ds + c);
    }
  });
  float* dsp = dscale->typed_data();
  float* dbp = dbias->typed_data();
  std::fill(dsp, dsp + c, 0.0f);  // stays zero for an empty batch
  std::fill(dbp, dbp + c, 0.0f);
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const float* ds = partial.data() + chunk * 2 * c;
    for (int64_t i = 0; i < c; ++i) {
      dsp[i] += ds[i];
      dbp[i] += ds[c + i];
    }
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LayerNormForward, LayerNormForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x (..., C)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // scale (C,)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias (C,)
                                  .Attr<float>("eps")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // y (..., C)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // mean (...)
                                  .Ret<ffi::Buffer<ffi::F32>>());  // rstd (...)

XLA_FFI_DEFINE_HANDLER_SYMBOL(LayerNormBackward, LayerNormBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x (..., C)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // scale (C,)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // mean (...)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // rstd (...)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // g (..., C)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dx (..., C)
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dscale (C,)
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dbias (C,)
