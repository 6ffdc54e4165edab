// SPDX-License-Identifier: MIT
// One launch plan: for a table of argument sets (plain, append and norm launches; head groups,
// one block per row and walking grids; every axis lookup), the launcher and the host runner are
// handed the identical plan. With a GPU the launcher runs on device buffers and both plan with the
// GPU's occupancy; without one the launcher plans and its launch fails, and both plan with an
// occupancy the runtime cannot give.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"
#include "host_run.hpp"

namespace {

using bf16 = __nv_bfloat16;
using rope::detail::LaunchPlan;

/// One allocation per argument, in device memory with a GPU and host memory always, filled alike.
class Arena {
 public:
  explicit Arena(bool gpu) : gpu_(gpu) {}
  ~Arena() {
    for (void* p : device_) cudaFree(p);
    for (void* p : host_) std::free(p);
  }
  /// `bytes` zeroed bytes (or `fill`'s contents), as a (host, device-or-host) pair.
  template <typename E>
  std::pair<E*, E*> take(std::size_t count, const std::vector<E>& fill = {}) {
    const std::size_t bytes = (count * sizeof(E) + 255) / 256 * 256;
    void* h = std::aligned_alloc(256, bytes);
    std::memset(h, 0, bytes);
    if (!fill.empty()) std::memcpy(h, fill.data(), fill.size() * sizeof(E));
    host_.push_back(h);
    void* d = h;
    if (gpu_) {
      EXPECT_EQ(cudaMalloc(&d, bytes), cudaSuccess);
      EXPECT_EQ(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice), cudaSuccess);
      device_.push_back(d);
    }
    return {static_cast<E*>(h), static_cast<E*>(d)};
  }

 private:
  bool gpu_;
  std::vector<void*> host_, device_;
};

struct PlanCase {
  const char* name;
  std::int64_t tokens;
  int q_heads, k_heads, head_dim, rotary_dim;
  rope::Style style;
  bool computed;
  int axes;        // 1: one position per token; 3: M-RoPE sections {16, 24, 24}
  enum Kind { kPlain, kAppendBf16, kAppendFp8, kNorm } kind;
};

const PlanCase kCases[] = {
    {"decode_head_groups", 1, 32, 8, 128, 0, rope::Style::kHalfSplit, false, 1, PlanCase::kPlain},
    {"decode_computed", 64, 32, 8, 128, 0, rope::Style::kHalfSplit, true, 1, PlanCase::kPlain},
    {"two_batches_table", 4096, 32, 8, 128, 0, rope::Style::kHalfSplit, false, 1, PlanCase::kPlain},
    {"walking_table", 16384, 32, 8, 128, 0, rope::Style::kHalfSplit, false, 1, PlanCase::kPlain},
    {"computed_prefill", 16384, 32, 8, 128, 0, rope::Style::kHalfSplit, true, 1, PlanCase::kPlain},
    {"partial_interleaved", 3000, 16, 4, 64, 32, rope::Style::kInterleaved, false, 1, PlanCase::kPlain},
    {"single_head_double_width", 20000, 1, 0, 128, 0, rope::Style::kHalfSplit, false, 1, PlanCase::kPlain},
    {"mrope_per_column", 8192, 28, 4, 128, 0, rope::Style::kHalfSplit, false, 3, PlanCase::kPlain},
    {"mrope_few_tokens", 16, 28, 4, 128, 0, rope::Style::kHalfSplit, true, 3, PlanCase::kPlain},
    {"append_bf16_decode", 1, 32, 8, 128, 0, rope::Style::kHalfSplit, false, 1, PlanCase::kAppendBf16},
    {"append_bf16_walking", 16384, 32, 8, 128, 0, rope::Style::kHalfSplit, false, 1, PlanCase::kAppendBf16},
    {"append_fp8", 4096, 32, 8, 128, 0, rope::Style::kHalfSplit, false, 1, PlanCase::kAppendFp8},
    {"norm_decode", 8, 32, 8, 128, 0, rope::Style::kHalfSplit, false, 1, PlanCase::kNorm},
    {"norm_walking_staged", 16384, 32, 8, 128, 0, rope::Style::kHalfSplit, false, 1, PlanCase::kNorm},
};

std::string describe(const LaunchPlan& p) {
  return "kernel " + std::to_string(static_cast<int>(p.kernel)) + ", vec " + std::to_string(p.instance.vec) +
         ", style " + std::to_string(static_cast<int>(p.instance.style)) + ", axes " +
         std::to_string(static_cast<int>(p.instance.axes)) + ", grid " + std::to_string(p.grid_x) + "x" +
         std::to_string(p.grid_y) + ", block " + std::to_string(p.block_x) + "x" + std::to_string(p.block_y) + "x" +
         std::to_string(p.block_z) + ", shared " + std::to_string(p.shared_bytes) + ", walks " +
         std::to_string(p.walks);
}

class LaunchPlanTest : public ::testing::TestWithParam<PlanCase> {};

TEST_P(LaunchPlanTest, LauncherAndHostRunnerAreHandedTheSamePlan) {
  const PlanCase& c = GetParam();
  const bool gpu = rope_test::gpu_available();
  Arena arena(gpu);
  const int heads = c.q_heads + c.k_heads, rot = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;
  const std::int64_t rows = 4096, row_elems = static_cast<std::int64_t>(heads + c.k_heads) * c.head_dim;
  auto qkv = arena.take<bf16>(static_cast<std::size_t>(c.tokens * row_elems));
  auto table = arena.take<float>(static_cast<std::size_t>(rows * rot));
  auto freq = arena.take<float>(static_cast<std::size_t>(rot / 2), std::vector<float>(rot / 2, 1e-3f));
  std::vector<std::int64_t> ids(static_cast<std::size_t>(c.axes * c.tokens));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int64_t>(i * 7919 % rows);
  auto positions = arena.take<std::int64_t>(ids.size(), ids);
  auto weights = arena.take<bf16>(static_cast<std::size_t>(c.head_dim));

  // The same arguments on either side of the pair.
  auto params = [&](bool device_side) {
    auto pick = [&](auto pair) { return device_side ? pair.second : pair.first; };
    bf16* base = pick(qkv);
    rope::RopeParams<bf16> p;
    p.num_tokens = c.tokens;
    p.head_dim = c.head_dim;
    p.rotary_dim = c.rotary_dim;
    p.style = c.style;
    p.q = rope::strided_heads(base, base, c.q_heads, row_elems, c.head_dim);
    if (c.k_heads > 0) {
      bf16* k = base + static_cast<std::int64_t>(c.q_heads) * c.head_dim;
      p.k = rope::strided_heads(k, k, c.k_heads, row_elems, c.head_dim);
    }
    p.cos_sin = c.computed ? rope::computed_cos_sin(pick(freq))
                           : rope::cos_sin_table<float>(pick(table), pick(table) + rot / 2, rows, rot);
    const std::int64_t* ps = pick(positions);
    p.positions = c.axes == 1 ? rope::positions(ps)
                              : rope::multi_axis_positions(ps, 3, c.tokens, rope::AxisSections::kContiguous,
                                                           16, 24, 24);
    return p;
  };
  const rope::detail::GpuOccupancy<rope::detail::DefaultPolicy, bf16, rope::detail::NoAppend, rope::detail::NoNorm>
      plain_occupancy;
  rope::detail::observed_launch_plan() = LaunchPlan{};
  rope_test::last_host_plan() = LaunchPlan{};
  cudaError_t launched = cudaSuccess, hosted = cudaSuccess;
  if (c.kind == PlanCase::kPlain) {
    launched = rope::rope_forward(params(true));
    hosted = rope_test::run_on_host(params(false), false, 0, nullptr, rope_test::HostPath::kAsLaunched, plain_occupancy);
  } else if (c.kind == PlanCase::kNorm) {
    auto norm = [&](bool device_side) {
      rope::QkNorm<bf16> n;
      n.q_weight = device_side ? weights.second : weights.first;
      n.k_weight = n.q_weight;
      return n;
    };
    const rope::detail::GpuOccupancy<rope::detail::NormPolicy, bf16, rope::detail::NoAppend,
                                     rope::detail::RmsNorm<bf16>>
        occupancy;
    launched = rope::rope_forward_qk_norm(params(true), norm(true));
    hosted = rope_test::run_norm_on_host(params(false), norm(false), 0, nullptr, nullptr, occupancy);
  } else {
    auto run_append = [&](auto cache_type) {
      using C = decltype(cache_type);
      const int block_size = 16;
      const std::int64_t blocks = (c.tokens + block_size - 1) / block_size;
      const std::size_t cache_elems = static_cast<std::size_t>(blocks * block_size * c.k_heads * c.head_dim);
      auto k_cache = arena.take<C>(cache_elems), v_cache = arena.take<C>(cache_elems);
      std::vector<std::int64_t> slot_ids(static_cast<std::size_t>(c.tokens));
      for (std::size_t t = 0; t < slot_ids.size(); ++t) slot_ids[t] = static_cast<std::int64_t>(t);
      auto slots = arena.take<std::int64_t>(slot_ids.size(), slot_ids);
      auto append = [&](bool device_side) {
        auto pick = [&](auto pair) { return device_side ? pair.second : pair.first; };
        rope::KvCacheAppend<bf16, C> a;
        a.v = pick(qkv) + static_cast<std::int64_t>(heads) * c.head_dim;
        a.v_token_stride = row_elems;
        a.v_head_stride = c.head_dim;
        a.k_cache = rope::nhd_paged_cache(pick(k_cache), block_size, c.k_heads, c.head_dim);
        a.v_cache = rope::nhd_paged_cache(pick(v_cache), block_size, c.k_heads, c.head_dim);
        a.num_blocks = blocks;
        a.block_size = block_size;
        a.slots = rope::slot_mapping(static_cast<const std::int64_t*>(pick(slots)));
        return a;
      };
      const rope::detail::GpuOccupancy<rope::detail::DefaultPolicy, bf16,
                                       decltype(rope::detail::make_cache_append(params(true), append(true))),
                                       rope::detail::NoNorm>
          occupancy;
      launched = rope::rope_forward_append(params(true), append(true));
      hosted = rope_test::run_append_on_host(params(false), append(false), 0, nullptr, occupancy);
    };
    if (c.kind == PlanCase::kAppendBf16) {
      run_append(bf16{});
    } else {
      run_append(__nv_fp8_e4m3{});
    }
  }
  EXPECT_EQ(hosted, cudaSuccess) << rope::last_error_message();
  if (gpu) {
    EXPECT_EQ(launched, cudaSuccess) << rope::last_error_message();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  const LaunchPlan& from_launcher = rope::detail::observed_launch_plan();
  const LaunchPlan& from_host = rope_test::last_host_plan();
  EXPECT_GT(from_launcher.block_x, 0u) << "the launcher executed no plan";
  EXPECT_TRUE(from_launcher == from_host) << "launcher: " << describe(from_launcher)
                                          << "\nhost runner: " << describe(from_host);
  // Where the library is tuned (sm_90), the large table launches walk and the norm one stages.
  int major = 0;
  if (gpu && cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess && major == 9) {
    const std::string name = c.name;
    if (name.find("walking") != std::string::npos) EXPECT_TRUE(from_launcher.walks) << describe(from_launcher);
    if (name == "norm_walking_staged") EXPECT_GT(from_launcher.shared_bytes, 0u) << describe(from_launcher);
    if (name.find("head_groups") != std::string::npos) {
      EXPECT_EQ(from_launcher.kernel, rope::detail::KernelKind::kHeadGroups);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Table, LaunchPlanTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<PlanCase>& info) { return std::string(info.param.name); });

}  // namespace
