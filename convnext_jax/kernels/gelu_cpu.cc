// Exact (erf) GELU for XLA:CPU as XLA FFI custom calls, fp32, elementwise:
//
//   GeluForward:  y  = x * Phi(x),                 Phi(x) = (1 + erf(x / sqrt(2))) / 2
//   GeluBackward: dx = g * (Phi(x) + x * phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//
// erf is the rational approximation XLA and Eigen use for fp32 (inputs clamped to
// [-4, 4], where erf is +-1 to fp32 precision); exp is a Cephes-style range reduction with a
// degree-6 polynomial. Both are accurate to a few ulp. One pass over the data, vectorised
// with 8-lane accumulators; XLA:CPU runs GELU and its gradient as several passes that
// materialise erf(x / sqrt(2)) as an extra activation-sized array.
// Built on first use by convnext_jax/kernels/build.py.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu_common.h"

namespace ffi = xla::ffi;

namespace {

using convnext_jax::kLanes;
using convnext_jax::Load8;
using convnext_jax::ParallelFor;
using convnext_jax::Splat8;
using convnext_jax::Store8;
using convnext_jax::Vec8;

typedef int32_t Vec8i __attribute__((vector_size(32), aligned(4)));

constexpr int64_t kChunks = 64;
constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

inline Vec8 Min(Vec8 a, Vec8 b) { return a < b ? a : b; }
inline Vec8 Max(Vec8 a, Vec8 b) { return a > b ? a : b; }

// erf(x), |error| < 2e-7: odd rational polynomial on [-4, 4] (XLA's / Eigen's fp32 erf).
inline Vec8 Erf(Vec8 x) {
  x = Max(Min(x, Splat8(4.0f)), Splat8(-4.0f));
  const Vec8 x2 = x * x;
  Vec8 p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = x2 * p + -2.10102402082508e-06f;
  p = x2 * p + -5.69250639462346e-05f;
  p = x2 * p + -7.34990630326855e-04f;
  p = x2 * p + -2.95459980854025e-03f;
  p = x2 * p + -1.60960333262415e-02f;
  p = x * p;
  Vec8 q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
  q = x2 * q + -1.68282697438203e-03f;
  q = x2 * q + -7.37332916720468e-03f;
  q = x2 * q + -1.42647390514189e-02f;
  return p / q;
}

// exp(x) for x <= 0 (the Gaussian density's exponent); 0 below -87.
inline Vec8 ExpNonPositive(Vec8 x) {
  const Vec8 lo = Splat8(-87.0f);
  const auto underflow = x < lo;
  x = Max(x, lo);
  // x = n ln2 + r, |r| <= ln2 / 2; ln2 split in two for an exact product with n.
  const Vec8 n = __builtin_convertvector(__builtin_convertvector(x * 1.44269504088896341f + -0.5f, Vec8i), Vec8);
  // (the conversion truncates toward zero, and x * log2(e) - 0.5 < 0: n is x * log2(e) rounded)
  const Vec8 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  Vec8 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = r * p + 8.3334519073e-3f;
  p = r * p + 4.1665795894e-2f;
  p = r * p + 1.6666665459e-1f;
  p = r * p + 5.0000001201e-1f;
  p = (r * r) * p + r + 1.0f;
  const Vec8i bits = (__builtin_convertvector(n, Vec8i) + 127) << 23;
  Vec8 scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const Vec8 result = p * scale;
  return underflow ? Splat8(0.0f) : result;
}

inline Vec8 Cdf(Vec8 x) { return 0.5f + 0.5f * Erf(x * kSqrtHalf); }

// out[i] = op(in[0][i], ..., in[N-1][i]) for i < size, 8 lanes at a time, over a fixed number
// of chunks on the pool; the tail past the last full vector goes through a zero-padded one.
template <size_t N, typename Op>
void MapVectors(ffi::ThreadPool& pool, int64_t size, const std::array<const float*, N>& in, float* out, Op op) {
  const int64_t vectors = (size + kLanes - 1) / kLanes;
  const int64_t chunks = std::min(vectors, kChunks);
  ParallelFor(pool, chunks, [&](int64_t chunk) {
    const int64_t begin = chunk * vectors / chunks * kLanes;
    const int64_t end = std::min(size, (chunk + 1) * vectors / chunks * kLanes);
    std::array<Vec8, N> v;
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes) {
      for (size_t k = 0; k < N; ++k) v[k] = Load8(in[k] + i);
      Store8(out + i, op(v));
    }
    if (i < end) {
      for (size_t k = 0; k < N; ++k) {
        float buffer[kLanes] = {};
        std::copy(in[k] + i, in[k] + end, buffer);
        v[k] = Load8(buffer);
      }
      float result[kLanes];
      Store8(result, op(v));
      std::copy(result, result + (end - i), out + i);
    }
  });
}

ffi::Error GeluForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> y) {
  MapVectors<1>(pool, x.element_count(), {x.typed_data()}, y->typed_data(),
                [](const std::array<Vec8, 1>& v) { return v[0] * Cdf(v[0]); });
  return ffi::Error::Success();
}

ffi::Error GeluBackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                            ffi::ResultBuffer<ffi::F32> dx) {
  if (g.element_count() != x.element_count()) return ffi::Error::InvalidArgument("gelu backward: g must match x");
  MapVectors<2>(pool, x.element_count(), {x.typed_data(), g.typed_data()}, dx->typed_data(),
                [](const std::array<Vec8, 2>& v) {
                  const Vec8 h = v[0];
                  return v[1] * (Cdf(h) + h * kInvSqrt2Pi * ExpNonPositive(-0.5f * h * h));
                });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GeluForward, GeluForwardImpl,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<ffi::Buffer<ffi::F32>>().Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(GeluBackward, GeluBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // x
                                  .Arg<ffi::Buffer<ffi::F32>>()   // g
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dx
