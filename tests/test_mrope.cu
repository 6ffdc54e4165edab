// SPDX-License-Identifier: MIT
// Multi-axis positions (M-RoPE): Qwen2-VL's contiguous sections, Qwen3-VL's interleaved
// sections, and 2D vision RoPE as the two-axis case, in table and computed mode, both pair
// styles, GQA, padded strides, partial rotary, in place and not, backward. Each configuration runs
// on the host (CI) and on the GPU against a double-precision reference written from the section
// rules; text-only tokens (all axes equal) must give exactly the one-axis result.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"
#include "host_run.hpp"

namespace {

using rope_test::Backend;
using rope_test::Mirror;

struct MropeConfig {
  std::int64_t tokens = 7;
  int q_heads = 4, k_heads = 2, head_dim = 128, rotary_dim = 0, head_pad = 0;
  rope::Style style = rope::Style::kHalfSplit;
  bool computed = false;
  bool in_place = false;
  bool backward = false;
  bool int32_positions = false;
  bool text_only = false;  // every axis carries the same position
  int axes = 3;
  rope::AxisSections layout = rope::AxisSections::kContiguous;
  int sections[3] = {16, 24, 24};
  std::int64_t max_position = 4096;  // positions in [0, max_position); table rows = max_position
  int grid_side = 0;  // > 0: two axes from a square patch grid, row t / side and column t % side
  // Host only: run the per-pair instance (AxisLookup::kPerPair) whatever the dispatch picks.
  bool per_pair_instance = false;

  int rot() const { return rotary_dim == 0 ? head_dim : rotary_dim; }
  std::string describe() const {
    std::ostringstream o;
    o << "tokens=" << tokens << " q=" << q_heads << " k=" << k_heads << " dim=" << head_dim << " rot=" << rot()
      << " pad=" << head_pad << " style=" << static_cast<int>(style) << " computed=" << computed
      << " in_place=" << in_place << " backward=" << backward << " int32=" << int32_positions
      << " text_only=" << text_only << " axes=" << axes << " layout=" << static_cast<int>(layout) << " sections=["
      << sections[0] << "," << sections[1] << "," << sections[2] << "] max_pos=" << max_position
      << " grid=" << grid_side;
    return o.str();
  }
};

/// The axis frequency j takes, written from the model code's rules (not the library's).
int reference_axis(const MropeConfig& c, int j) {
  if (c.layout == rope::AxisSections::kInterleaved) {  // Qwen3-VL apply_interleaved_mrope
    if (j % 3 == 1 && j < 3 * c.sections[1]) return 1;
    if (j % 3 == 2 && j < 3 * c.sections[2]) return 2;
    return 0;
  }
  int end = 0;  // Qwen2-VL: consecutive chunks of mrope_section
  for (int a = 0; a < c.axes; ++a) {
    end += c.sections[a];
    if (j < end) return a;
  }
  return c.axes - 1;
}

template <typename T>
double tolerance_rel() { return rope_test::Tolerance<T>::kRelL2; }

/// The host run with the per-pair multi-axis instance forced, whatever sections the dispatch sees:
/// the instance that column-aligned sections would otherwise never reach.
template <typename T>
cudaError_t run_per_pair_on_host(const rope::RopeParams<T>& p, bool inverse) {
  const rope::Status status = rope::validate(p);
  if (!status.ok()) return status.error;
  using PerPair = std::integral_constant<rope::detail::AxisLookup, rope::detail::AxisLookup::kPerPair>;
  rope_test::run_body_on_host<rope::detail::DefaultPolicy, T, rope::detail::NoAppend, PerPair>(
      p, inverse, rope::detail::NoAppend{}, 0, nullptr);
  return cudaSuccess;
}

/// One M-RoPE launch on host or GPU, checked against the reference. Returns the outputs (q then
/// k, as floats) so that tests can compare two launches bit for bit.
template <typename T>
::testing::AssertionResult run_mrope(const MropeConfig& c, Backend backend, std::uint64_t seed,
                                     std::vector<float>* outputs = nullptr, bool as_one_axis = false) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int half = c.rot() / 2;
  const int heads = c.q_heads + c.k_heads;
  const std::int64_t head_stride = c.head_dim + c.head_pad, token_stride = heads * head_stride;
  const std::int64_t axis_stride = c.tokens + 3;

  Mirror<T> x, y;
  x.host.resize(static_cast<std::size_t>(c.tokens * token_stride));
  for (T& v : x.host) v = rope::detail::from_float<T>(u(rng));
  y.host.assign(x.host.size(), rope::detail::from_float<T>(NAN));
  if (c.in_place) y.host = x.host;

  std::uniform_int_distribution<std::int64_t> pick(0, c.max_position - 1);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(3 * axis_stride), -1);
  for (std::int64_t t = 0; t < c.tokens; ++t) {
    const std::int64_t first = pick(rng);
    for (int a = 0; a < 3; ++a) pos[a * axis_stride + t] = c.text_only || a >= c.axes ? first : pick(rng);
    if (c.grid_side > 0) {
      pos[t] = t / c.grid_side;
      pos[axis_stride + t] = t % c.grid_side;
    }
  }
  Mirror<std::int64_t> pos64;
  Mirror<std::int32_t> pos32;
  pos64.host = pos;
  for (std::int64_t v : pos) pos32.host.push_back(static_cast<std::int32_t>(v));

  Mirror<float> freq, cos_t, sin_t;
  for (int i = 0; i < half; ++i) freq.host.push_back(static_cast<float>(std::pow(1e6, -2.0 * i / c.rot())));
  const float scaling = c.computed ? 1.0f : 0.875f;
  if (!c.computed) {
    for (std::int64_t r = 0; r < c.max_position; ++r) {
      for (int i = 0; i < half; ++i) {
        cos_t.host.push_back(static_cast<float>(std::cos(static_cast<double>(r) * freq.host[i])));
        sin_t.host.push_back(static_cast<float>(std::sin(static_cast<double>(r) * freq.host[i])));
      }
    }
  }
  if (backend == Backend::kGpu) {
    for (auto* m : {&freq, &cos_t, &sin_t}) m->upload();
    x.upload();
    y.upload();
    pos64.upload();
    pos32.upload();
  }

  rope::RopeParams<T> p;
  p.num_tokens = c.tokens;
  p.head_dim = c.head_dim;
  p.rotary_dim = c.rotary_dim;
  p.style = c.style;
  const T* xb = x.base(backend);
  T* yb = c.in_place ? const_cast<T*>(xb) : y.base(backend);
  if (c.in_place && backend == Backend::kHost) yb = x.host.data();
  if (c.q_heads > 0) p.q = rope::strided_heads<T>(xb, yb, c.q_heads, token_stride, head_stride);
  if (c.k_heads > 0) {
    p.k = rope::strided_heads<T>(xb + c.q_heads * head_stride, yb + c.q_heads * head_stride, c.k_heads, token_stride,
                                 head_stride);
  }
  p.cos_sin = c.computed ? rope::computed_cos_sin(freq.base(backend), scaling)
                         : rope::cos_sin_table<float>(cos_t.base(backend), sin_t.base(backend), c.max_position, half,
                                                      scaling);
  if (as_one_axis) {
    p.positions = c.int32_positions ? rope::positions(pos32.base(backend)) : rope::positions(pos64.base(backend));
  } else if (c.int32_positions) {
    p.positions = rope::multi_axis_positions(pos32.base(backend), c.axes, axis_stride, c.layout, c.sections[0],
                                             c.sections[1], c.sections[2]);
  } else {
    p.positions = rope::multi_axis_positions(pos64.base(backend), c.axes, axis_stride, c.layout, c.sections[0],
                                             c.sections[1], c.sections[2]);
  }
  const rope::Status st = rope::validate(p);
  if (!st.ok()) return ::testing::AssertionFailure() << "rejected: " << st.message << " | " << c.describe();
  cudaError_t e = cudaSuccess;
  if (backend == Backend::kHost && c.per_pair_instance) {
    e = run_per_pair_on_host(p, c.backward);
  } else if (backend == Backend::kHost) {
    e = rope_test::run_on_host(p, c.backward);
  } else {
    e = c.backward ? rope::rope_backward(p) : rope::rope_forward(p);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    (c.in_place ? x : y).download();
  }
  if (e != cudaSuccess) return ::testing::AssertionFailure() << "launch: " << cudaGetErrorString(e) << " | " << c.describe();

  // Reference in double; x is the original input (regenerated for in place).
  std::mt19937_64 rng2(seed);
  std::vector<double> x_ref(x.host.size());
  for (double& v : x_ref) v = rope::detail::to_float(rope::detail::from_float<T>(u(rng2)));
  const std::vector<T>& out = c.in_place ? x.host : y.host;
  double err2 = 0, ref2 = 0, max_abs = 0;
  if (outputs != nullptr) outputs->clear();
  for (std::int64_t t = 0; t < c.tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const std::int64_t base = t * token_stride + h * head_stride;
      std::vector<double> want(static_cast<std::size_t>(c.head_dim));
      for (int d = c.rot(); d < c.head_dim; ++d) want[d] = x_ref[base + d];
      for (int i = 0; i < half; ++i) {
        const int a = as_one_axis ? 0 : reference_axis(c, i);
        const std::int64_t position = pos[a * axis_stride + t];
        double cv, sv;
        if (c.computed) {
          cv = std::cos(static_cast<double>(position) * freq.host[i]) * scaling;
          sv = std::sin(static_cast<double>(position) * freq.host[i]) * scaling;
        } else {
          cv = static_cast<double>(cos_t.host[position * half + i]) * scaling;
          sv = static_cast<double>(sin_t.host[position * half + i]) * scaling;
        }
        if (c.backward) sv = -sv;
        const int i1 = c.style == rope::Style::kHalfSplit ? i : 2 * i;
        const int i2 = c.style == rope::Style::kHalfSplit ? i + half : 2 * i + 1;
        want[i1] = x_ref[base + i1] * cv - x_ref[base + i2] * sv;
        want[i2] = x_ref[base + i1] * sv + x_ref[base + i2] * cv;
      }
      for (int d = 0; d < c.head_dim; ++d) {
        const double got = rope::detail::to_float(out[base + d]);
        if (std::isnan(got)) return ::testing::AssertionFailure() << "unwritten element t=" << t << " h=" << h << " d=" << d << " | " << c.describe();
        err2 += (got - want[d]) * (got - want[d]);
        ref2 += want[d] * want[d];
        max_abs = std::fmax(max_abs, std::fabs(got - want[d]));
        if (outputs != nullptr) outputs->push_back(static_cast<float>(got));
      }
    }
  }
  const double rel = std::sqrt(err2 / ref2);
  if (!(rel < tolerance_rel<T>()) || !(max_abs < rope_test::Tolerance<T>::kMaxAbs)) {
    return ::testing::AssertionFailure() << "rel L2 " << rel << " max abs " << max_abs << " | " << c.describe();
  }
  return ::testing::AssertionSuccess();
}

/// The named configurations: the models' sections and every option once.
std::vector<MropeConfig> named_configs() {
  std::vector<MropeConfig> v;
  MropeConfig qwen2vl;  // Qwen2-VL-7B: 28 q / 4 kv heads scaled down, sections [16, 24, 24]
  v.push_back(qwen2vl);
  MropeConfig qwen3vl = qwen2vl;  // Qwen3-VL: interleaved [24, 20, 20]
  qwen3vl.layout = rope::AxisSections::kInterleaved;
  qwen3vl.sections[0] = 24;
  qwen3vl.sections[1] = 20;
  qwen3vl.sections[2] = 20;
  v.push_back(qwen3vl);
  for (MropeConfig base : {qwen2vl, qwen3vl}) {
    MropeConfig c = base;
    c.computed = true;
    c.max_position = 1 << 20;
    v.push_back(c);
    c = base;
    c.style = rope::Style::kInterleaved;
    c.in_place = true;
    v.push_back(c);
    c = base;
    c.backward = true;
    c.int32_positions = true;
    c.head_pad = 8;
    v.push_back(c);
    c = base;
    c.head_dim = 160;  // partial rotary: 128 of 160 rotate, the rest passes through
    c.rotary_dim = 128;
    c.k_heads = 1;
    v.push_back(c);
  }
  MropeConfig vision;  // a ViT-like 2D grid: row and column axes, half the frequencies each
  vision.axes = 2;
  vision.head_dim = 64;
  vision.sections[0] = 16;
  vision.sections[1] = 16;
  vision.sections[2] = 0;
  vision.k_heads = 0;
  v.push_back(vision);
  // Qwen2-VL-7B's heads over enough tokens that table mode gives each lane two batches of heads
  // sharing its column's cos/sin (choose_launch_shape).
  MropeConfig qwen2vl_heads;
  qwen2vl_heads.tokens = 1100;
  qwen2vl_heads.q_heads = 28;
  qwen2vl_heads.k_heads = 4;
  v.push_back(qwen2vl_heads);
  return v;
}

template <typename T>
void expect_named(Backend backend) {
  std::uint64_t salt = 0;
  for (const MropeConfig& c : named_configs()) EXPECT_TRUE(run_mrope<T>(c, backend, rope_test::base_seed() + ++salt));
}

TEST(Mrope, NamedConfigsOnTheHostF32) { expect_named<float>(Backend::kHost); }
TEST(Mrope, NamedConfigsOnTheHostBf16) { expect_named<__nv_bfloat16>(Backend::kHost); }
TEST(Mrope, NamedConfigsOnTheGpuF32) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_named<float>(Backend::kGpu);
}
TEST(Mrope, NamedConfigsOnTheGpuBf16) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_named<__nv_bfloat16>(Backend::kGpu);
}

/// Text-only tokens (every axis the same position) give exactly the one-axis result.
void expect_text_only_matches_one_axis(Backend backend) {
  for (MropeConfig c : named_configs()) {
    c.text_only = true;
    std::vector<float> multi, single;
    ASSERT_TRUE(run_mrope<float>(c, backend, rope_test::base_seed() + 99, &multi));
    ASSERT_TRUE(run_mrope<float>(c, backend, rope_test::base_seed() + 99, &single, /*as_one_axis=*/true));
    ASSERT_EQ(multi.size(), single.size());
    EXPECT_EQ(std::memcmp(multi.data(), single.data(), multi.size() * sizeof(float)), 0) << c.describe();
  }
}

TEST(Mrope, TextOnlyTokensMatchOneAxisOnTheHost) { expect_text_only_matches_one_axis(Backend::kHost); }
TEST(Mrope, TextOnlyTokensMatchOneAxisOnTheGpu) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_text_only_matches_one_axis(Backend::kGpu);
}

/// Which lookup the dispatch picks: contiguous sections on column boundaries (multiples of the
/// pairs per access) read cos/sin by columns, anything else per pair; one axis neither.
TEST(Mrope, SectionsOnColumnBoundariesTakeTheColumnLookup) {
  using rope::detail::AxisLookup;
  using rope::detail::axis_lookup;
  const std::int64_t* none = nullptr;
  const auto contiguous = rope::AxisSections::kContiguous;
  EXPECT_EQ(axis_lookup(rope::positions(none), 8), AxisLookup::kSingleAxis);
  EXPECT_EQ(axis_lookup(rope::multi_axis_positions(none, 3, 1, contiguous, 16, 24, 24), 8), AxisLookup::kPerColumn);
  EXPECT_EQ(axis_lookup(rope::multi_axis_positions(none, 3, 1, contiguous, 16, 24, 24), 4), AxisLookup::kPerColumn);
  EXPECT_EQ(axis_lookup(rope::multi_axis_positions(none, 3, 1, contiguous, 16, 20, 28), 8), AxisLookup::kPerPair);
  EXPECT_EQ(axis_lookup(rope::multi_axis_positions(none, 3, 1, contiguous, 16, 20, 28), 4), AxisLookup::kPerColumn);
  EXPECT_EQ(axis_lookup(rope::multi_axis_positions(none, 3, 1, contiguous, 10, 27, 27), 1), AxisLookup::kPerColumn);
  EXPECT_EQ(axis_lookup(rope::multi_axis_positions(none, 2, 1, contiguous, 16, 16, 0), 8), AxisLookup::kPerColumn);
  EXPECT_EQ(axis_lookup(rope::multi_axis_positions(none, 3, 1, rope::AxisSections::kInterleaved, 24, 20, 20), 8),
            AxisLookup::kPerPair);
}

/// The column lookup gives the per-pair lookup's bits: same cos/sin values, same rotation.
template <typename T>
void expect_column_lookup_matches_per_pair() {
  for (MropeConfig c : named_configs()) {
    if (c.layout != rope::AxisSections::kContiguous) continue;
    for (const bool computed : {false, true}) {
      c.computed = computed;
      std::vector<float> by_column, by_pair;
      ASSERT_TRUE(run_mrope<T>(c, Backend::kHost, rope_test::base_seed() + 7, &by_column));
      c.per_pair_instance = true;
      ASSERT_TRUE(run_mrope<T>(c, Backend::kHost, rope_test::base_seed() + 7, &by_pair));
      c.per_pair_instance = false;
      ASSERT_EQ(by_column.size(), by_pair.size());
      EXPECT_EQ(std::memcmp(by_column.data(), by_pair.data(), by_column.size() * sizeof(float)), 0) << c.describe();
    }
  }
}

TEST(Mrope, ColumnLookupMatchesPerPairLookupF32) { expect_column_lookup_matches_per_pair<float>(); }
TEST(Mrope, ColumnLookupMatchesPerPairLookupBf16) { expect_column_lookup_matches_per_pair<__nv_bfloat16>(); }

/// A ViT patch grid (16 x 16 patches): row = t / 16, column = t % 16, as 2D vision RoPE.
TEST(Mrope, VisionPatchGrid) {
  for (const Backend backend : {Backend::kHost, Backend::kGpu}) {
    if (backend == Backend::kGpu && !rope_test::gpu_available()) continue;
    MropeConfig c;
    c.axes = 2;
    c.tokens = 256;
    c.q_heads = 3;
    c.k_heads = 3;
    c.head_dim = 64;
    c.sections[0] = 16;
    c.sections[1] = 16;
    c.sections[2] = 0;
    c.computed = true;
    c.max_position = 16;
    c.grid_side = 16;
    EXPECT_TRUE(run_mrope<float>(c, backend, rope_test::base_seed() + 5));
  }
}

/// Random configurations over every option (fresh seed per run, printed on failure).
void expect_random(Backend backend, int count) {
  std::mt19937_64 rng(rope_test::base_seed() + 1234);
  auto range = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int n = 0; n < count; ++n) {
    MropeConfig c;
    c.axes = range(2, 3);
    c.head_dim = 2 * range(1, 80);
    c.rotary_dim = range(0, 1) ? 0 : 2 * range(1, c.head_dim / 2);
    const int half = c.rot() / 2;
    c.layout = static_cast<rope::AxisSections>(range(0, 1));
    // One case in three puts the section boundaries on multiples of 8 pairs (the column lookup
    // of every vector width); the rest fall anywhere (mostly the per-pair lookup).
    const int step = range(0, 2) == 0 ? 8 : 1;
    c.sections[0] = step * range(0, half / step);
    c.sections[1] = c.axes == 3 ? step * range(0, (half - c.sections[0]) / step) : half - c.sections[0];
    c.sections[2] = c.axes == 3 ? half - c.sections[0] - c.sections[1] : 0;
    c.q_heads = range(0, 6);
    c.k_heads = c.q_heads == 0 ? range(1, 3) : range(0, 3);
    c.head_pad = range(0, 1) ? 0 : range(1, 9);
    c.tokens = range(1, 40);
    c.style = static_cast<rope::Style>(range(0, 1));
    c.computed = range(0, 1) == 1;
    c.in_place = range(0, 1) == 1;
    c.backward = range(0, 3) == 0;
    c.int32_positions = range(0, 1) == 1;
    c.text_only = range(0, 4) == 0;
    c.max_position = c.computed ? range(1, 1 << 20) : range(1, 300);
    const std::uint64_t seed = rng();
    const auto r = range(0, 1) ? run_mrope<float>(c, backend, seed) : run_mrope<__nv_bfloat16>(c, backend, seed);
    EXPECT_TRUE(r) << "random case " << n << " (ROPE_TEST_SEED=" << rope_test::base_seed() << ")";
  }
}

TEST(Mrope, RandomConfigurationsOnTheHost) { expect_random(Backend::kHost, 300); }
TEST(Mrope, RandomConfigurationsOnTheGpu) {
  ROPE_SKIP_WITHOUT_GPU();
  expect_random(Backend::kGpu, 1000);
}

}  // namespace
