// Pillow-exact resampling of packed RGB uint8 images for the input pipeline (plain C ABI, ctypes).
//
// The same arithmetic as Pillow's libImaging (Resample.c: two-pass convolution with 22-bit
// fixed-point coefficients; Geometry.c: affine transform with per-pixel bicubic interpolation in
// double precision), so every output byte equals Pillow's: RandomResizedCrop, the evaluation
// resize and RandAugment's rotate/shear/translate draw exactly the same pixels as with PIL,
// only faster: three packed channels instead of four (Pillow stores RGB as RGBX), SIMD over the
// channels and along rows, and no Python object per call. Must be compiled with
// -ffp-contract=off (a fused multiply-add rounds differently from Pillow's separate operations).
// ctypes releases the GIL around every call, so decoding threads run these in parallel.

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Resample.c: PRECISION_BITS

typedef double v4d __attribute__((vector_size(32)));

double BilinearFilter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

double BicubicFilter(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct Filter {
  double (*fn)(double);
  double support;
};

// Resample.c: precompute_coeffs + normalize_coeffs_8bpc. Box edges arrive as float (Pillow parses
// the box tuple as C floats).
struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;   // (first input index, count) per output index
  std::vector<int32_t> k;    // ksize fixed-point weights per output index, zero padded
  int kpairs = 0;             // ceil(ksize / 2)
  std::vector<int32_t> k4;   // per output index kpairs * 2 weights (zero padded), each repeated 4 times
};

bool Precompute(int in_size, float in0, float in1, int out_size, const Filter& filter, Coefficients* c) {
  double scale = (double)(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = filter.support * filterscale;
  int ksize = (int)std::ceil(support) * 2 + 1;
  if (out_size > INT_MAX / (ksize * (int)sizeof(double))) return false;
  std::vector<double> kk((size_t)out_size * ksize, 0.0);
  c->ksize = ksize;
  c->bounds.assign((size_t)out_size * 2, 0);
  double inv_filterscale = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; xx++) {
    double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &kk[(size_t)xx * ksize];
    for (int x = 0; x < xmax; x++) {
      double w = filter.fn((x + xmin - center + 0.5) * inv_filterscale);
      k[x] = w;
      ww += w;
    }
    if (ww != 0.0) {
      for (int x = 0; x < xmax; x++) k[x] /= ww;
    }
    c->bounds[xx * 2] = xmin;
    c->bounds[xx * 2 + 1] = xmax;
  }
  c->k.resize(kk.size());
  for (size_t i = 0; i < kk.size(); i++) {
    c->k[i] = kk[i] < 0 ? (int)(-0.5 + kk[i] * (1 << kPrecisionBits)) : (int)(0.5 + kk[i] * (1 << kPrecisionBits));
  }
  c->kpairs = (ksize + 1) / 2;
  c->k4.assign((size_t)out_size * c->kpairs * 8, 0);
  for (int xx = 0; xx < out_size; xx++) {
    for (int x = 0; x < ksize; x++) {
      for (int lane = 0; lane < 4; lane++) c->k4[((size_t)xx * c->kpairs * 2 + x) * 4 + lane] = c->k[(size_t)xx * ksize + x];
    }
  }
  return true;
}

inline uint8_t Clip8(int32_t v) {  // Resample.c: clip8 (its lookup table is this clamp)
  v >>= kPrecisionBits;
  return v < 0 ? 0 : (v > 255 ? 255 : (uint8_t)v);
}

#if defined(__AVX2__)
// Two taps of one row: 8 bytes (two RGB pixels and two bytes more, weighted 0) as 8 int32 lanes.
inline __m256i TapPair(const uint8_t* p) {
  const __m128i spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
  uint64_t bytes;
  std::memcpy(&bytes, p, 8);
  return _mm256_cvtepu8_epi32(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)bytes), spread));
}

// The fixed-point sum of both halves, rounded and clipped (Clip8 per lane), stored as 3 bytes.
inline void StoreSum(__m256i acc, uint8_t* dst) {
  __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  sum = _mm_srai_epi32(_mm_add_epi32(sum, _mm_set1_epi32(1 << (kPrecisionBits - 1))), kPrecisionBits);
  __m128i clipped = _mm_packus_epi16(_mm_packs_epi32(sum, sum), _mm_setzero_si128());
  uint32_t rgbx = (uint32_t)_mm_cvtsi128_si32(clipped);
  std::memcpy(dst, &rgbx, 3);
}
#endif

// One output pixel of one row, byte by byte (any position).
inline void HorizontalPixel(const uint8_t* p, const int32_t* k, int taps, uint8_t* dst) {
  const int32_t half = 1 << (kPrecisionBits - 1);
  int32_t s0 = half, s1 = half, s2 = half;
  for (int x = 0; x < taps; x++) {
    s0 += p[3 * x] * k[x];
    s1 += p[3 * x + 1] * k[x];
    s2 += p[3 * x + 2] * k[x];
  }
  dst[0] = Clip8(s0);
  dst[1] = Clip8(s1);
  dst[2] = Clip8(s2);
}

// Horizontal pass over rows [offset, offset + rows) of `in` (stride in bytes) into `out`
// (packed, out_w pixels per row). With AVX2 two rows at a time (they share the weights), two
// taps per step over a fixed tap count (zero weights pad: no data-dependent loop exits); near the
// end of the readable input (`in_end`) byte by byte.
void Horizontal(const uint8_t* in, int64_t stride, const uint8_t* in_end, int offset, int rows, uint8_t* out,
                int out_w, const Coefficients& c) {
  const int64_t out_stride = (int64_t)out_w * 3;
  int yy = 0;
#if defined(__AVX2__)
  const int pairs = c.kpairs;
  for (; yy + 2 <= rows; yy += 2) {
    const uint8_t* line = in + (int64_t)(yy + offset) * stride;
    uint8_t* dst = out + (int64_t)yy * out_stride;
    for (int xx = 0; xx < out_w; xx++) {
      const uint8_t* p = line + c.bounds[xx * 2] * 3;
      if (p + stride + 6 * pairs + 2 > in_end) {
        for (int r = 0; r < 2; r++) {
          HorizontalPixel(p + r * stride, &c.k[(size_t)xx * c.ksize], c.bounds[xx * 2 + 1],
                          dst + r * out_stride + xx * 3);
        }
        continue;
      }
      const int32_t* k4 = &c.k4[(size_t)xx * pairs * 8];
      __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
      for (int i = 0; i < pairs; i++) {
        __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k4 + 8 * i));
        acc0 = _mm256_add_epi32(acc0, _mm256_mullo_epi32(TapPair(p + 6 * i), w));
        acc1 = _mm256_add_epi32(acc1, _mm256_mullo_epi32(TapPair(p + stride + 6 * i), w));
      }
      StoreSum(acc0, dst + xx * 3);
      StoreSum(acc1, dst + out_stride + xx * 3);
    }
  }
#endif
  for (; yy < rows; yy++) {
    const uint8_t* line = in + (int64_t)(yy + offset) * stride;
    uint8_t* dst = out + (int64_t)yy * out_stride;
    for (int xx = 0; xx < out_w; xx++) {
      HorizontalPixel(line + c.bounds[xx * 2] * 3, &c.k[(size_t)xx * c.ksize], c.bounds[xx * 2 + 1], dst + xx * 3);
    }
  }
}

// Vertical pass: every output row a weighted sum of input rows (vectorised along the row).
void Vertical(const uint8_t* in, int64_t stride, int width, uint8_t* out, int out_h, const Coefficients& c,
              int64_t out_stride = -1) {
  if (out_stride < 0) out_stride = (int64_t)width * 3;
  const int n = width * 3;
  std::vector<int32_t> acc(n);
  for (int yy = 0; yy < out_h; yy++) {
    int ymin = c.bounds[yy * 2], ymax = c.bounds[yy * 2 + 1];
    const int32_t* k = &c.k[(size_t)yy * c.ksize];
    int32_t* a = acc.data();
    for (int j = 0; j < n; j++) a[j] = 1 << (kPrecisionBits - 1);
    for (int y = 0; y < ymax; y++) {
      const uint8_t* row = in + (int64_t)(y + ymin) * stride;
      const int32_t w = k[y];
      for (int j = 0; j < n; j++) a[j] += row[j] * w;
    }
    uint8_t* dst = out + (int64_t)yy * out_stride;
    for (int j = 0; j < n; j++) dst[j] = Clip8(a[j]);
  }
}

// Geometry.c: BICUBIC(v, v1, v2, v3, v4, d), lane by lane (same operations in the same order).
template <typename V>
inline V Bicubic(V v1, V v2, V v3, V v4, V d) {
  V p1 = v2;
  V p2 = -v1 + v3;
  V p3 = 2 * (v1 - v2) + v3 - v4;
  V p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

inline int Floor(double v) { return v < 0.0 ? (int)std::floor(v) : (int)v; }  // Geometry.c: FLOOR

// Where one output pixel samples the input: Geometry.c's BICUBIC_HEAD (false: outside, keep fill).
struct Sample {
  int xs[4];    // byte offsets of the four columns (clipped)
  int rows[4];  // the four rows: YCLIP for the first, then a repeat of the previous when outside
  double dx, dy;
};

inline bool Locate(const double* m, int x, int y, int w, int h, Sample* s) {
  double xo = x + 0.5, yo = y + 0.5;
  double xin = m[0] * xo + m[1] * yo + m[2];
  double yin = m[3] * xo + m[4] * yo + m[5];
  if (xin < 0.0 || xin >= w || yin < 0.0 || yin >= h) return false;
  xin -= 0.5;
  yin -= 0.5;
  int ix = Floor(xin), iy = Floor(yin);
  s->dx = xin - ix;
  s->dy = yin - iy;
  ix--;
  iy--;
  for (int i = 0; i < 4; i++) {
    int xi = ix + i;
    s->xs[i] = (xi < 0 ? 0 : (xi < w ? xi : w - 1)) * 3;
  }
  s->rows[0] = iy < 0 ? 0 : (iy < h ? iy : h - 1);
  for (int i = 1; i < 4; i++) s->rows[i] = (iy + i >= 0 && iy + i < h) ? iy + i : s->rows[i - 1];
  return true;
}

inline void Store(uint8_t* dst, const double* v) {
  for (int b = 0; b < 3; b++) dst[b] = v[b] <= 0.0 ? 0 : (v[b] >= 255.0 ? 255 : (uint8_t)v[b]);
}

typedef int32_t v4i __attribute__((vector_size(16)));

inline v4i LoadTap(const uint8_t* q, bool wide) {
#if defined(__SSE4_1__)
  if (wide) {
    uint32_t word;
    std::memcpy(&word, q, 4);
    return (v4i)_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)word));
  }
#endif
  return v4i{q[0], q[1], q[2], 0};
}

inline v4d ToDouble(v4i v) {
#if defined(__AVX__)
  return (v4d)_mm256_cvtepi32_pd((__m128i)v);
#else
  return v4d{(double)v[0], (double)v[1], (double)v[2], (double)v[3]};
#endif
}

// The first BICUBIC of a row, from four taps of uint8: Pillow forms p1..p4 in int arithmetic
// (exact), converts them to double, then evaluates the polynomial in double.
inline v4d BicubicRow(const uint8_t* line, const int xs[4], double d, bool wide) {
  v4i v1 = LoadTap(line + xs[0], wide), v2 = LoadTap(line + xs[1], wide);
  v4i v3 = LoadTap(line + xs[2], wide), v4 = LoadTap(line + xs[3], wide);
  v4d p1 = ToDouble(v2), p2 = ToDouble(-v1 + v3), p3 = ToDouble(2 * (v1 - v2) + v3 - v4);
  v4d p4 = ToDouble(-v1 + v2 - v3 + v4);
  v4d dv = {d, d, d, d};
  return p1 + dv * (p2 + dv * (p3 + dv * p4));
}

// One output pixel, channels in lanes 0-2 (`wide`: 4 readable bytes at every tap). Where the
// sample point falls exactly on a pixel row (dy == 0: shear X, translations) Pillow's outer
// interpolation returns its second argument unchanged (p1 + 0 * (...) == p1), and on a pixel column
// (dx == 0) its inner one returns the tap itself, so those are skipped: the same bytes, less work.
inline void AffinePixel(const uint8_t* in, int64_t stride, const Sample& s, uint8_t* dst, bool wide) {
  v4d v;
  if (s.dy == 0.0) {
    const uint8_t* line = in + s.rows[1] * stride;
    v = s.dx == 0.0 ? ToDouble(LoadTap(line + s.xs[1], wide)) : BicubicRow(line, s.xs, s.dx, wide);
  } else {
    v4d rows[4];
    for (int r = 0; r < 4; r++) {
      const uint8_t* line = in + s.rows[r] * stride;
      rows[r] = s.dx == 0.0 ? ToDouble(LoadTap(line + s.xs[1], wide)) : BicubicRow(line, s.xs, s.dx, wide);
    }
    v = Bicubic<v4d>(rows[0], rows[1], rows[2], rows[3], v4d{s.dy, s.dy, s.dy, s.dy});
  }
  double out[4] = {v[0], v[1], v[2], v[3]};
  Store(dst, out);
}

bool MakeFilter(int filter_id, Filter* filter) {
  if (filter_id == 2) {
    *filter = {BilinearFilter, 1.0};
  } else if (filter_id == 3) {
    *filter = {BicubicFilter, 2.0};
  } else {
    return false;
  }
  return true;
}

}  // namespace

extern "C" {

// Pillow's Image.resize(size, BICUBIC or BILINEAR, box) of a packed RGB image of in_h x in_w
// pixels (rows `stride` bytes apart) into `out` (out_h x out_w x 3, packed). filter: 2 = bilinear,
// 3 = bicubic (Pillow's Resampling numbers). Only the pixels of convnext_resize_support are read,
// so `in` may point at the origin of a virtual image of which only that region is in memory;
// `in_end` is the end of the readable bytes. `scratch` holds the intermediate pass
// (convnext_resize_scratch_bytes). Returns 0, or -1 for an unsupported filter / size.
int convnext_resize_rgb(const uint8_t* in, const uint8_t* in_end, int in_h, int in_w, int64_t stride, uint8_t* out,
                        int out_h, int out_w, float x0, float y0, float x1, float y1, int filter_id,
                        uint8_t* scratch) {
  Filter filter;
  if (!MakeFilter(filter_id, &filter)) return -1;
  bool need_horizontal = out_w != in_w || x0 || x1 != out_w;
  bool need_vertical = out_h != in_h || y0 || y1 != out_h;
  bool horizontal_first = !((in_h - out_h) > 0 && (in_h - out_h) > (in_w - out_w) * 2);
  Coefficients horiz, vert;
  if ((need_horizontal && horizontal_first) || need_vertical) {
    if (!Precompute(in_h, y0, y1, out_h, filter, &vert)) return -1;
  }
  if (need_horizontal && !Precompute(in_w, x0, x1, out_w, filter, &horiz)) return -1;
  if (horizontal_first) {
    if (need_horizontal) {
      int first = vert.bounds[0];
      int last = vert.bounds[out_h * 2 - 2] + vert.bounds[out_h * 2 - 1];
      if (!need_vertical) {
        Horizontal(in, stride, in_end, first, last - first, out, out_w, horiz);
        return 0;
      }
      for (int i = 0; i < out_h; i++) vert.bounds[i * 2] -= first;
      Horizontal(in, stride, in_end, first, last - first, scratch, out_w, horiz);
      Vertical(scratch, (int64_t)out_w * 3, out_w, out, out_h, vert);
      return 0;
    }
    if (need_vertical) {
      Vertical(in, stride, in_w, out, out_h, vert);
      return 0;
    }
  } else {
    if (need_vertical && need_horizontal) {
      // Pillow runs the vertical pass over every column; only those the horizontal pass reads matter.
      int first = horiz.bounds[0], last = horiz.bounds[out_w * 2 - 2] + horiz.bounds[out_w * 2 - 1];
      const int64_t scratch_stride = (int64_t)in_w * 3;
      Vertical(in + first * 3, stride, last - first, scratch + first * 3, out_h, vert, scratch_stride);
      Horizontal(scratch, scratch_stride, scratch + (int64_t)out_h * scratch_stride, 0, out_h, out, out_w, horiz);
      return 0;
    }
    if (need_vertical) {
      Vertical(in, stride, in_w, out, out_h, vert);
      return 0;
    }
    if (need_horizontal) {
      Horizontal(in, stride, in_end, 0, out_h, out, out_w, horiz);
      return 0;
    }
  }
  for (int y = 0; y < out_h; y++) std::memcpy(out + (int64_t)y * out_w * 3, in + (int64_t)y * stride, (size_t)out_w * 3);
  return 0;
}

// The input pixels convnext_resize_rgb reads for these arguments: columns [region[0], region[2]),
// rows [region[1], region[3]). Returns 0, or -1 as convnext_resize_rgb.
int convnext_resize_support(int in_h, int in_w, int out_h, int out_w, float x0, float y0, float x1, float y1,
                            int filter_id, int* region) {
  Filter filter;
  if (!MakeFilter(filter_id, &filter)) return -1;
  Coefficients horiz, vert;
  if (!Precompute(in_w, x0, x1, out_w, filter, &horiz) || !Precompute(in_h, y0, y1, out_h, filter, &vert)) return -1;
  bool need_horizontal = out_w != in_w || x0 || x1 != out_w;
  bool need_vertical = out_h != in_h || y0 || y1 != out_h;
  region[0] = need_horizontal ? horiz.bounds[0] : 0;
  region[2] = need_horizontal ? horiz.bounds[out_w * 2 - 2] + horiz.bounds[out_w * 2 - 1] : in_w;
  region[1] = need_vertical || need_horizontal ? vert.bounds[0] : 0;
  region[3] = need_vertical || need_horizontal ? vert.bounds[out_h * 2 - 2] + vert.bounds[out_h * 2 - 1] : in_h;
  if (!need_vertical && !need_horizontal) region[0] = 0, region[2] = in_w, region[1] = 0, region[3] = in_h;
  return 0;
}

// Bytes `scratch` needs for convnext_resize_rgb (the larger of the two pass orders).
int64_t convnext_resize_scratch_bytes(int in_h, int in_w, int out_h, int out_w) {
  int64_t a = (int64_t)out_w * (in_h + 1) * 3, b = (int64_t)in_w * out_h * 3;
  return a > b ? a : b;
}

// Pillow's Image.transform(size, AFFINE, matrix, BICUBIC, fillcolor=fill) of a packed RGB image
// to an output of the same size: each output pixel centre (x + .5, y + .5) maps to the input
// point matrix * (x + .5, y + .5, 1); points outside the input keep the fill colour.
void convnext_affine_bicubic_rgb(const uint8_t* in, int h, int w, uint8_t* out, const double* m,
                                 const uint8_t* fill) {
  const int64_t stride = (int64_t)w * 3;
  for (int y = 0; y < h; y++) {
    uint8_t* line = out + (int64_t)y * stride;
    for (int x = 0; x < w; x++) {
      Sample s;
      if (!Locate(m, x, y, w, h, &s)) {
        std::memcpy(line + x * 3, fill, 3);
        continue;
      }
      AffinePixel(in, stride, s, line + x * 3, s.rows[3] < h - 1);  // the last row's last pixel ends the buffer
    }
  }
}

// Pillow's ImageEnhance Brightness (kind 0), Color (1) or Contrast (2) of a packed RGB image:
// Image.blend(degenerate, image, factor) with the degenerate image black, the image's grey
// (convert("L"): ITU-R 601-2 in 16-bit fixed point), or its mean grey
// (int(ImageStat.Stat(grey).mean + 0.5)); Blend.c's float arithmetic, clipped when extrapolating.
void convnext_enhance_rgb(const uint8_t* in, int64_t pixels, uint8_t* out, int kind, float alpha) {
  const int64_t n = pixels * 3;
  std::vector<uint8_t> degenerate((size_t)n, 0);  // per byte, so the blend below is one contiguous loop
  if (kind == 1 || kind == 2) {
    int64_t total = 0;
    for (int64_t i = 0; i < pixels; i++) {
      const uint8_t* p = in + 3 * i;
      const uint8_t grey = (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
      degenerate[3 * i] = degenerate[3 * i + 1] = degenerate[3 * i + 2] = grey;
      total += grey;
    }
    if (kind == 2) {
      const uint8_t mean = (uint8_t)(pixels > 0 ? (int)((double)total / (double)pixels + 0.5) : 0);
      std::memset(degenerate.data(), mean, (size_t)n);
    }
  }
  // Blend.c: (UINT8)(in1 + alpha * (in2 - in1)) in float; extrapolation clips to 0..255, which
  // interpolation never leaves, so one clamp-then-truncate serves both.
  const uint8_t* d = degenerate.data();
  for (int64_t j = 0; j < n; j++) {
    float value = (float)d[j] + alpha * (float)((int)in[j] - (int)d[j]);
    value = value < 0.0f ? 0.0f : value;
    value = value > 255.0f ? 255.0f : value;
    out[j] = (uint8_t)(int)value;
  }
}

}  // extern "C"
