// Shared pieces of the XLA:CPU kernels: a deterministic parallel-for over XLA's intra-op
// thread pool and an 8-lane fp32 vector type (GCC/Clang vector extension).
#ifndef CONVNEXT_JAX_KERNELS_CPU_COMMON_H_
#define CONVNEXT_JAX_KERNELS_CPU_COMMON_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace convnext_jax {

namespace ffi = xla::ffi;

constexpr int64_t kLanes = 8;  // fp32 lanes per vector (one AVX2 register)

// Runs fn(chunk) for every chunk in [0, num_chunks) on the calling thread and XLA's
// intra-op pool. Workers claim chunks from an atomic counter; the caller only ever waits
// for chunks that some thread is already running, so a busy pool cannot deadlock it, and
// tasks that start after the call returned find no chunk left and touch nothing but the
// shared state they own.
template <typename Fn>
void ParallelFor(ffi::ThreadPool& pool, int64_t num_chunks, const Fn& fn) {
  int64_t helpers = std::min<int64_t>(pool.num_threads(), num_chunks) - 1;
  if (helpers <= 0) {
    for (int64_t i = 0; i < num_chunks; ++i) fn(i);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  const Fn* body = &fn;
  auto run = [state, body, num_chunks]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < num_chunks;) {
      (*body)(i);
      if (state->done.fetch_add(1) + 1 == num_chunks) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    }
  };
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([run] { run(); });
  run();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == num_chunks; });
}

// Eight fp32 lanes as a GCC/Clang vector (AVX/AVX2 register on x86, two NEON registers on
// ARM); aligned(4) permits unaligned loads and stores.
typedef float Vec8 __attribute__((vector_size(32), aligned(4)));

inline Vec8 Load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void Store8(float* p, Vec8 v) { std::memcpy(p, &v, sizeof(v)); }

// Vec8 with every lane equal to s.
inline Vec8 Splat8(float s) { return s - Vec8{}; }

inline float Sum8(Vec8 v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// Rows and channels of x (channels = last dimension; rows = everything else).
inline void RowsAndChannels(const ffi::Buffer<ffi::F32>& x, int64_t* rows, int64_t* channels) {
  auto dims = x.dimensions();
  *channels = dims.size() == 0 ? 1 : dims.back();
  *rows = *channels == 0 ? 0 : x.element_count() / *channels;
}

}  // namespace convnext_jax

#endif  // CONVNEXT_JAX_KERNELS_CPU_COMMON_H_
