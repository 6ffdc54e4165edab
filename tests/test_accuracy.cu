// SPDX-License-Identifier: MIT
// The precision contract of docs/accuracy.md: for every tensor type (fp32, fp16, bf16) and every
// source of cos/sin (an fp32 table, a table in the tensor's own type, computed in the kernel),
// the error of a whole launch against a float64 reference of the exact angle, at positions up to
// 2^20 and beyond. Each row prints one `[ ACCURACY ]` line (tests/tools/accuracy_table.py turns
// them into the table of docs/accuracy.md) and fails when its error passes the row's bound.
//
// Unlike the other suites (harness.hpp), the reference here takes nothing from the library: not
// the table's stored values (a table in fp16/bf16 is rounded, and that rounding is part of what
// a user gets) and not a double product position * inv_freq (no longer exact past 2^29): cos
// and sin come from the exact angle position * inv_freq[i] of the fp32 frequencies the kernel
// reads, reduced modulo 2 pi in float64 without losing its low bits.
//
// Accuracy.* run the real launcher on a GPU (skipped without one); AccuracyHost.* run the same
// rows through the per-token body on the host (what CI runs), with fewer tokens. The host's sin
// and cos of the reduced angle are the C library's in fp64 rounded once; the GPU's are
// `sincospif`, within an ulp: the bounds below hold for both.

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"

namespace {

using rope_test::Backend;

// ---- the shape: Llama-3.1-8B's attention (q 32 heads, k 8 heads, 128 dims, all rotated) ----

constexpr int kQHeads = 32;
constexpr int kKHeads = 8;
constexpr int kHeadDim = 128;
constexpr int kHalf = kHeadDim / 2;
constexpr std::int64_t kGpuTokens = 4096;  // 21M values per row
constexpr std::int64_t kHostTokens = 2048;  // 10M values per row: under a second each in software

/// Llama-3.1's frequencies (rope_theta 500000, llama3 scaling, factor 8), as the library
/// computes them: pair 0 has inv_freq 1, the fastest angle and so the largest at any position.
const std::vector<float>& llama31_inv_freq() {
  static const std::vector<float> f = [] {
    std::vector<float> v(kHalf);
    float attention = 0.0f;
    const rope::Status s = rope::compute_inv_freq(rope::RopeScaling::llama3(500000.0), kHeadDim, v.data(), &attention);
    if (!s.ok()) {
      std::fprintf(stderr, "compute_inv_freq: %s\n", s.message);
      std::abort();
    }
    return v;
  }();
  return f;
}

// ---- the reference ----

/// cos and sin of the exact angle position * f, in float64. The product of a 24-bit frequency
/// and a position below 2^53 is hi + lo exactly (fma); it is reduced by a two-part 2 pi with fma,
/// each step one rounding of a value below 8, so the reduced angle is within ~1e-15 rad of the
/// exact one for every position this suite draws (the kernel's own error is ~1e-7).
void reference_sincos(std::int64_t position, float f, double& s, double& c) {
  constexpr double kTwoPiHi = 6.283185307179586232;    // 2 pi rounded to double
  constexpr double kTwoPiLo = 2.4492935982947064e-16;  // 2 pi - kTwoPiHi
  const double p = static_cast<double>(position), q = static_cast<double>(f);
  const double hi = p * q;
  const double lo = std::fma(p, q, -hi);
  const double k = std::nearbyint(hi / kTwoPiHi);
  const double r = std::fma(-k, kTwoPiLo, std::fma(-k, kTwoPiHi, hi)) + lo;
  s = std::sin(r);
  c = std::cos(r);
}

// ---- what each row measures ----

enum class Mode { kFloatTable, kTensorTypeTable, kComputed };

template <typename T> const char* type_name();
template <> const char* type_name<float>() { return "fp32"; }
template <> const char* type_name<__half>() { return "fp16"; }
template <> const char* type_name<__nv_bfloat16>() { return "bf16"; }

template <typename T>
std::string mode_name(Mode m) {
  if (m == Mode::kComputed) return "computed";
  return std::string("table_") + (m == Mode::kFloatTable ? "fp32" : type_name<T>());
}

/// Positions are drawn from [lo, hi); a table has hi rows.
struct Range {
  const char* label;
  std::int64_t lo, hi;
};

constexpr Range kUpTo4096{"[0,4096)", 0, 4096};
constexpr Range kUpTo2p20{"[0,2^20)", 0, std::int64_t{1} << 20};
constexpr Range kUpTo2p24{"[0,2^24)", 0, std::int64_t{1} << 24};
constexpr Range kUpTo2p29{"[0,2^29)", 0, std::int64_t{1} << 29};
constexpr Range kPast2p29{"[2^29,2^31)", std::int64_t{1} << 29, std::int64_t{1} << 31};

/// Largest relative L2 error and largest absolute error a row accepts.
struct Bound {
  double rel_l2, max_abs;
};

struct Row {
  Range range;
  Bound bound;
};

/// The rows of one (type, mode) and their bounds: a regression bound, 1.5-2x above what was
/// measured (docs/accuracy.md has the measurements). Tables stop at 2^20 rows (cos and sin 512 MiB
/// as fp32 at 128 dims); computed mode is claimed exact-angle below 2^29 and measured past it too.
///
/// fp32: every row but the last is the angle's error (fp32 cos/sin of the reduced angle, a few
/// 1e-8 rad plus their own rounding) and the rotation's roundings: ~5e-8 rel. L2, ~2e-7 max abs,
/// whatever the position. Past 2^29 the fp64 product itself rounds, by up to 2^-53 of the angle
/// (2.4e-7 rad at 2^31), and the 1/pi multiply as much again.
/// fp16/bf16: the output's rounding to T (half an ulp at |y| < 1.42: 4.9e-4 and 3.9e-3), the
/// math below it; a table in T adds the table's rounding (|x| * half an ulp of cos and sin).
template <typename T>
std::vector<Row> rows(Mode mode) {
  if (std::is_same<T, float>::value) {
    const Bound b{1.0e-7, 4.0e-7};
    if (mode != Mode::kComputed) return {{kUpTo4096, b}, {kUpTo2p20, b}};
    return {{kUpTo4096, b}, {kUpTo2p20, b}, {kUpTo2p24, b}, {kUpTo2p29, b}, {kPast2p29, Bound{1.2e-7, 1.0e-6}}};
  }
  const bool half = std::is_same<T, __half>::value;
  // Output rounding only (an fp32 table or computed cos/sin), or with the table's rounding.
  const Bound b = half ? Bound{3.2e-4, 7.5e-4} : Bound{2.5e-3, 6.0e-3};
  const Bound table_in_t = half ? Bound{4.5e-4, 1.2e-3} : Bound{3.6e-3, 9.0e-3};
  if (mode == Mode::kFloatTable) return {{kUpTo4096, b}, {kUpTo2p20, b}};
  if (mode == Mode::kTensorTypeTable) return {{kUpTo4096, table_in_t}, {kUpTo2p20, table_in_t}};
  return {{kUpTo4096, b}, {kUpTo2p20, b}, {kUpTo2p24, b}, {kUpTo2p29, b}, {kPast2p29, b}};
}

// ---- memory on either backend ----

/// A device allocation (GPU runs) that frees itself.
struct DeviceBytes {
  void* ptr = nullptr;
  explicit DeviceBytes(std::size_t bytes) {
    if (cudaMalloc(&ptr, bytes) != cudaSuccess) ptr = nullptr;
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  ~DeviceBytes() {
    if (ptr != nullptr) cudaFree(ptr);
  }
};

/// A host table of `elements` E that is filled only at the rows a run reads: allocated, not
/// initialised, so the pages of rows nobody reads are never touched (2^20 rows cost no memory).
struct SparseHostTable {
  void* ptr = nullptr;
  explicit SparseHostTable(std::size_t bytes) : ptr(std::malloc(bytes)) {}
  SparseHostTable(const SparseHostTable&) = delete;
  SparseHostTable& operator=(const SparseHostTable&) = delete;
  ~SparseHostTable() { std::free(ptr); }
};

/// What one row measured.
struct Measured {
  double rel_l2 = 0, max_abs = 0;
  std::int64_t values = 0;
};

/// Runs one row: Llama-shaped q and k (out of place, outputs NaN before the run), int64 positions
/// from the row's range (its largest and smallest among them), cos/sin from `mode`, on `backend`.
/// Errors of every rotated value against reference_sincos, through the stored inputs.
template <typename T>
::testing::AssertionResult measure(Backend backend, Mode mode, const Range& range, std::uint64_t salt,
                                   Measured& out) {
  const std::uint64_t seed = rope_test::base_seed() ^ (salt * 0x9E3779B97F4A7C15ull);
  auto fail = [&]() {
    return ::testing::AssertionFailure() << "[ROPE_TEST_SEED=" << rope_test::base_seed() << "] " << type_name<T>()
                                         << " " << mode_name<T>(mode) << " positions " << range.label << ": ";
  };
  std::mt19937_64 rng(seed);
  const bool gpu = backend == Backend::kGpu;
  const std::int64_t tokens = gpu ? kGpuTokens : kHostTokens;
  const std::int64_t q_elems = tokens * kQHeads * kHeadDim, k_elems = tokens * kKHeads * kHeadDim;

  // Inputs in [-1, 1] as stored in T; outputs NaN, so an unwritten value fails.
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<T> qx(static_cast<std::size_t>(q_elems)), kx(static_cast<std::size_t>(k_elems));
  for (T& v : qx) v = rope::detail::from_float<T>(u(rng));
  for (T& v : kx) v = rope::detail::from_float<T>(u(rng));
  std::vector<T> qy(qx.size(), rope::detail::from_float<T>(NAN)), ky(kx.size(), rope::detail::from_float<T>(NAN));

  std::vector<std::int64_t> pos(static_cast<std::size_t>(tokens));
  std::uniform_int_distribution<std::int64_t> pick(range.lo, range.hi - 1);
  for (std::int64_t t = 0; t < tokens; ++t) pos[t] = pick(rng);
  pos[0] = range.hi - 1;
  pos[1] = range.lo;

  const std::vector<float>& inv_freq = llama31_inv_freq();
  const bool table = mode != Mode::kComputed;
  const bool table_in_t = mode == Mode::kTensorTypeTable;
  const std::size_t elem = table_in_t ? sizeof(T) : sizeof(float);
  const std::int64_t rows = range.hi;
  const std::size_t table_bytes = table ? static_cast<std::size_t>(rows) * kHalf * elem : 0;

  rope::RopeParams<T> p;
  p.num_tokens = tokens;
  p.head_dim = kHeadDim;
  cudaError_t err = cudaSuccess;
  if (gpu) {
    DeviceBytes d_qx(qx.size() * sizeof(T)), d_kx(kx.size() * sizeof(T)), d_qy(qy.size() * sizeof(T)),
        d_ky(ky.size() * sizeof(T)), d_pos(pos.size() * sizeof(std::int64_t)), d_freq(kHalf * sizeof(float)),
        d_cos(table_bytes), d_sin(table_bytes);
    if (d_qx.ptr == nullptr || d_kx.ptr == nullptr || d_qy.ptr == nullptr || d_ky.ptr == nullptr ||
        d_pos.ptr == nullptr || d_freq.ptr == nullptr || (table && (d_cos.ptr == nullptr || d_sin.ptr == nullptr))) {
      return fail() << "cudaMalloc failed";
    }
    auto up = [&](void* dst, const void* src, std::size_t bytes) {
      if (err == cudaSuccess) err = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    };
    up(d_qx.ptr, qx.data(), qx.size() * sizeof(T));
    up(d_kx.ptr, kx.data(), kx.size() * sizeof(T));
    up(d_qy.ptr, qy.data(), qy.size() * sizeof(T));
    up(d_ky.ptr, ky.data(), ky.size() * sizeof(T));
    up(d_pos.ptr, pos.data(), pos.size() * sizeof(std::int64_t));
    up(d_freq.ptr, inv_freq.data(), kHalf * sizeof(float));
    if (err != cudaSuccess) return fail() << "upload: " << cudaGetErrorString(err);
    const float* freq = static_cast<const float*>(d_freq.ptr);
    // Tables as a user makes them: rope::fill_cos_sin_table from the same frequencies.
    if (table_in_t) {
      T* c = static_cast<T*>(d_cos.ptr);
      T* s = static_cast<T*>(d_sin.ptr);
      err = rope::fill_cos_sin_table(freq, kHeadDim, 1.0f, rows, c, s, kHalf);
      p.cos_sin = rope::cos_sin_table(static_cast<const T*>(c), static_cast<const T*>(s), rows, kHalf);
    } else if (table) {
      float* c = static_cast<float*>(d_cos.ptr);
      float* s = static_cast<float*>(d_sin.ptr);
      err = rope::fill_cos_sin_table(freq, kHeadDim, 1.0f, rows, c, s, kHalf);
      p.cos_sin = rope::cos_sin_table(static_cast<const float*>(c), static_cast<const float*>(s), rows, kHalf);
    } else {
      p.cos_sin = rope::computed_cos_sin(freq);
    }
    if (err != cudaSuccess) return fail() << "fill_cos_sin_table: " << rope::last_error_message();
    p.q = rope::packed_heads(static_cast<const T*>(d_qx.ptr), static_cast<T*>(d_qy.ptr), kQHeads, kHeadDim);
    p.k = rope::packed_heads(static_cast<const T*>(d_kx.ptr), static_cast<T*>(d_ky.ptr), kKHeads, kHeadDim);
    p.positions = rope::positions(static_cast<const std::int64_t*>(d_pos.ptr));
    err = rope::rope_forward(p);
    if (err != cudaSuccess) return fail() << "rope_forward: " << cudaGetErrorString(err) << " / " << rope::last_error_message();
    err = cudaDeviceSynchronize();
    if (err == cudaSuccess) err = cudaMemcpy(qy.data(), d_qy.ptr, qy.size() * sizeof(T), cudaMemcpyDeviceToHost);
    if (err == cudaSuccess) err = cudaMemcpy(ky.data(), d_ky.ptr, ky.size() * sizeof(T), cudaMemcpyDeviceToHost);
    if (err != cudaSuccess) return fail() << "run or download: " << cudaGetErrorString(err);
  } else {
    SparseHostTable cos_table(table_bytes), sin_table(table_bytes);
    if (table && (cos_table.ptr == nullptr || sin_table.ptr == nullptr)) return fail() << "malloc failed";
    // The rows the run reads, each by the code of fill_cos_sin_table_host (cos_sin_table_entry).
    auto fill = [&](auto* c, auto* s) {
      for (std::int64_t position : pos) {
        for (int i = 0; i < kHalf; ++i) {
          rope::detail::cos_sin_table_entry(position, i, inv_freq.data(), 1.0f, c, s, kHalf);
        }
      }
      p.cos_sin = rope::cos_sin_table(static_cast<const std::remove_pointer_t<decltype(c)>*>(c),
                                      static_cast<const std::remove_pointer_t<decltype(s)>*>(s), rows, kHalf);
    };
    if (table_in_t) {
      fill(static_cast<T*>(cos_table.ptr), static_cast<T*>(sin_table.ptr));
    } else if (table) {
      fill(static_cast<float*>(cos_table.ptr), static_cast<float*>(sin_table.ptr));
    } else {
      p.cos_sin = rope::computed_cos_sin(inv_freq.data());
    }
    p.q = rope::packed_heads(qx.data(), qy.data(), kQHeads, kHeadDim);
    p.k = rope::packed_heads(kx.data(), ky.data(), kKHeads, kHeadDim);
    p.positions = rope::positions(pos.data());
    err = rope_test::run_on_host(p, false);
    if (err != cudaSuccess) return fail() << "host run: " << cudaGetErrorString(err) << " / " << rope::last_error_message();
  }

  // Every rotated value against the exact rotation of the stored input.
  double err2 = 0, ref2 = 0, max_abs = 0;
  std::vector<double> c(kHalf), s(kHalf);
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < kHalf; ++i) reference_sincos(pos[t], inv_freq[i], s[i], c[i]);
    for (int which = 0; which < 2; ++which) {
      const int heads = which == 0 ? kQHeads : kKHeads;
      const T* x = (which == 0 ? qx.data() : kx.data()) + t * heads * kHeadDim;
      const T* y = (which == 0 ? qy.data() : ky.data()) + t * heads * kHeadDim;
      for (int h = 0; h < heads; ++h, x += kHeadDim, y += kHeadDim) {
        for (int i = 0; i < kHalf; ++i) {
          const double x1 = rope::detail::to_float(x[i]), x2 = rope::detail::to_float(x[i + kHalf]);
          const double want[2] = {x1 * c[i] - x2 * s[i], x1 * s[i] + x2 * c[i]};
          const double got[2] = {rope::detail::to_float(y[i]), rope::detail::to_float(y[i + kHalf])};
          for (int e = 0; e < 2; ++e) {
            if (std::isnan(got[e])) {
              return fail() << "NaN (unwritten?) at token " << t << " (position " << pos[t] << ") head " << h
                            << (which == 0 ? " of q" : " of k") << " pair " << i;
            }
            const double d = got[e] - want[e];
            err2 += d * d;
            ref2 += want[e] * want[e];
            max_abs = std::max(max_abs, std::fabs(d));
          }
        }
      }
    }
  }
  out.rel_l2 = std::sqrt(err2 / ref2);
  out.max_abs = max_abs;
  out.values = q_elems + k_elems;
  return ::testing::AssertionSuccess();
}

/// Every row of (T, mode) on `backend`: one `[ ACCURACY ]` line each, then its bounds checked.
template <typename T>
void check_rows(Backend backend, Mode mode) {
  const bool gpu = backend == Backend::kGpu;
  if (gpu) {
    int device = 0;
    cudaDeviceProp prop{};
    if (cudaGetDevice(&device) == cudaSuccess && cudaGetDeviceProperties(&prop, device) == cudaSuccess) {
      std::printf("[ DEVICE     ] %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    }
  }
  std::uint64_t salt = 1000 * (static_cast<int>(mode) + 1) + sizeof(T);
  for (const Row& row : rows<T>(mode)) {
    Measured m;
    const ::testing::AssertionResult ran = measure<T>(backend, mode, row.range, ++salt, m);
    EXPECT_TRUE(ran);
    if (!ran) continue;
    std::printf("[ ACCURACY ] backend=%s dtype=%s mode=%s positions=%s tokens=%lld values=%lld rel_l2=%.2e "
                "max_abs=%.2e bound_rel_l2=%.1e bound_max_abs=%.1e\n",
                gpu ? "gpu" : "host", type_name<T>(), mode_name<T>(mode).c_str(), row.range.label,
                static_cast<long long>(gpu ? kGpuTokens : kHostTokens), static_cast<long long>(m.values), m.rel_l2,
                m.max_abs, row.bound.rel_l2, row.bound.max_abs);
    std::fflush(stdout);
    EXPECT_LE(m.rel_l2, row.bound.rel_l2) << "[ROPE_TEST_SEED=" << rope_test::base_seed() << "] " << type_name<T>()
                                          << " " << mode_name<T>(mode) << " positions " << row.range.label;
    EXPECT_LE(m.max_abs, row.bound.max_abs) << "[ROPE_TEST_SEED=" << rope_test::base_seed() << "] " << type_name<T>()
                                            << " " << mode_name<T>(mode) << " positions " << row.range.label;
  }
}

// The reference itself: its reduction agrees with x87 long double (64-bit significand, where the
// product of a 24-bit frequency and a 31-bit position is exact), to far below the kernel's error.
TEST(AccuracyReference, ExactAngleAgreesWithLongDouble) {
  if (LDBL_MANT_DIG < 64) GTEST_SKIP() << "long double has no 64-bit significand here";
  std::mt19937_64 rng(rope_test::base_seed());
  std::uniform_int_distribution<std::int64_t> pick(0, (std::int64_t{1} << 31) - 1);
  const std::vector<float>& f = llama31_inv_freq();
  double worst = 0;
  for (int n = 0; n < 20000; ++n) {
    const std::int64_t position = n < 4 ? (std::int64_t{1} << 31) - 1 - n : pick(rng);
    const float freq = f[static_cast<std::size_t>(n) % f.size()];
    double s, c;
    reference_sincos(position, freq, s, c);
    const long double angle = static_cast<long double>(position) * static_cast<long double>(freq);
    worst = std::max({worst, std::fabs(s - static_cast<double>(std::sin(angle))),
                      std::fabs(c - static_cast<double>(std::cos(angle)))});
  }
  EXPECT_LT(worst, 1e-12);
}

}  // namespace

// One test per (tensor type, cos/sin source); each covers its position ranges.
#define ROPE_ACCURACY_TESTS(Suite, backend, skip)                                                              \
  TEST(Suite, Fp32TableFp32) { skip; check_rows<float>(backend, Mode::kFloatTable); }                          \
  TEST(Suite, Fp32Computed) { skip; check_rows<float>(backend, Mode::kComputed); }                             \
  TEST(Suite, Fp16TableFp32) { skip; check_rows<__half>(backend, Mode::kFloatTable); }                         \
  TEST(Suite, Fp16TableFp16) { skip; check_rows<__half>(backend, Mode::kTensorTypeTable); }                    \
  TEST(Suite, Fp16Computed) { skip; check_rows<__half>(backend, Mode::kComputed); }                            \
  TEST(Suite, Bf16TableFp32) { skip; check_rows<__nv_bfloat16>(backend, Mode::kFloatTable); }                  \
  TEST(Suite, Bf16TableBf16) { skip; check_rows<__nv_bfloat16>(backend, Mode::kTensorTypeTable); }             \
  TEST(Suite, Bf16Computed) { skip; check_rows<__nv_bfloat16>(backend, Mode::kComputed); }

ROPE_ACCURACY_TESTS(Accuracy, Backend::kGpu, ROPE_SKIP_WITHOUT_GPU())
ROPE_ACCURACY_TESTS(AccuracyHost, Backend::kHost, (void)0)
