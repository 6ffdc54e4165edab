// SPDX-License-Identifier: MIT
#pragma once
// Runs a launch on the host: the launcher's own validation and launch plan (plan_launch), then the
// per-token body in a loop over (token, lane) exactly as the kernel's threads would run it.
// Norm launches sum across a head's group of lanes, which a loop cannot do: there every lane is a
// thread, and a group's lanes meet at a barrier (HostLaneGroups) where the warp shuffle would be.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include <rope/rope.cuh>

namespace rope_test {

/// Rows of tokens the host runs walk (rope::detail::walk_tokens): three when there are more
/// tokens than that, so most runs check tokens reached a walk apart with their positions read
/// ahead, as a kernel grid smaller than the token count reaches them.
inline std::int64_t host_walk_rows(std::int64_t tokens) { return tokens > 3 ? 3 : tokens; }

/// Which body a host run of a plain launch takes: the launcher's choice (the head groups of
/// detail/device/head_groups.cuh for few tokens, else the per-token body), or the per-token body always,
/// so that its few-token shapes stay tested too.
enum class HostPath { kAsLaunched, kPerTokenBody };

/// What a host run plans for (plan_launch's `occupancy`): a modelled device that holds `resident`
/// blocks of any instance at once (0: unknown, as when the runtime cannot say) and whose
/// instances consent to any dynamic shared memory.
struct ModelledDevice {
  std::int64_t resident = 0;
  std::int64_t resident_blocks(const rope::detail::Instance&, int, std::size_t) const { return resident; }
  bool consents_to_shared_bytes(const rope::detail::Instance&, std::size_t) const { return true; }
};

/// The plan the host runner last executed on this thread.
inline rope::detail::LaunchPlan& last_host_plan() {
  thread_local rope::detail::LaunchPlan plan;
  return plan;
}

/// A head group plan on the host: the plan's grid and blocks, each block's threads mapped to
/// (token, head, group rank) by the kernel's own head_group_thread; in computed mode every thread
/// of a block first takes its share of the block's rows, as the kernel does before its barrier.
template <typename T, typename Style, typename Vec>
void run_head_groups_on_host(const rope::detail::LaunchPlan& plan, const rope::RopeParams<T>& p, bool inverse, Style,
                             Vec) {
  const dim3 grid = plan.grid(), block = plan.block();
  const bool computed = p.cos_sin.kind == rope::CosSin::Kind::kComputed;
  const int row_floats = rope::detail::rotated_dim(p);
  std::vector<float> rows(static_cast<std::size_t>(block.z) * row_floats);
  const rope::device::Rotation rotation = inverse ? rope::device::Rotation::kInverse : rope::device::Rotation::kForward;
  auto each_thread = [&](uint3 block_index, auto&& f) {
    for (unsigned z = 0; z < block.z; ++z) {
      for (unsigned y = 0; y < block.y; ++y) {
        for (unsigned x = 0; x < block.x; ++x) f(rope::detail::head_group_thread(block_index, uint3{x, y, z}, block), z);
      }
    }
  };
  for (unsigned by = 0; by < grid.y; ++by) {
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      const uint3 block_index{bx, by, 0};
      if (computed) {
        each_thread(block_index, [&](const rope::detail::HeadGroupThread& at, unsigned) {
          rope::detail::compute_token_rows(p, at.first_token, static_cast<int>(block.z), at.thread, at.threads,
                                           rows.data());
        });
      }
      each_thread(block_index, [&](const rope::detail::HeadGroupThread& at, unsigned z) {
        if (at.token >= p.num_tokens || at.head >= p.q.num_heads + p.k.num_heads) return;
        rope::detail::rotate_token_head<T, Style::value, Vec::value>(
            p, rotation, at.token, at.head, at.group, computed ? rows.data() + z * row_floats : nullptr);
      });
    }
  }
}

/// Runs an already validated launch as planned (plan_launch, for `device`): the plan's instance,
/// kernel and lanes, the body for every (token, lane), or the head group body where the plan takes
/// head groups. Two deliberate departures, for coverage: every per-token run walks
/// host_walk_rows rows (so every case checks tokens reached a walk apart), and `path` may send a
/// head group plan through the per-token body (so that its few-token shapes stay tested).
/// `lanes_override` > 0 replaces the plan's lanes; `ForcedAxes` (an integral_constant of
/// rope::detail::AxisLookup) replaces its axis lookup, to reach an instance the arguments would
/// not pick; void keeps the plan's.
template <typename Policy, typename T, typename Append, typename ForcedAxes = void, typename Occupancy = ModelledDevice>
void run_body_on_host(const rope::RopeParams<T>& p, bool inverse, const Append& append, int lanes_override,
                      int* vec_out, HostPath path = HostPath::kAsLaunched, const Occupancy& device = {}) {
  using rope::detail::KernelKind;
  using rope::detail::Kernels;
  using rope::detail::LaunchPlan;
  const LaunchPlan launched = rope::detail::plan_launch<Policy>(p, append, rope::detail::NoNorm{}, device);
  const bool head_groups = launched.kernel == KernelKind::kHeadGroups && path == HostPath::kAsLaunched &&
                           lanes_override <= 0 && std::is_void<ForcedAxes>::value;
  // The per-token plan: what the launcher runs, or would run without head groups.
  const LaunchPlan per_token = launched.kernel == KernelKind::kTokens
                                   ? launched
                                   : rope::detail::plan_launch<Policy>(p, append, rope::detail::NoNorm{}, device,
                                                                       Kernels::kTokensOnly);
  if (vec_out != nullptr) *vec_out = per_token.instance.vec;
  last_host_plan() = head_groups ? launched : per_token;
  rope::detail::Instance instance = head_groups ? launched.instance : per_token.instance;
  if constexpr (!std::is_void<ForcedAxes>::value) instance.axes = ForcedAxes::value;
  rope::detail::with_instance<Policy, T, rope::detail::NoNorm>(instance, [&](auto style, auto vec, auto head_batch,
                                                                             auto axes_constant) {
    constexpr rope::detail::AxisLookup axes = decltype(axes_constant)::value;
    if (head_groups) {
      if constexpr (!Append::kEnabled && axes == rope::detail::AxisLookup::kSingleAxis &&
                    decltype(vec)::value == rope::detail::head_group_vec<T>(decltype(vec)::value)) {
        run_head_groups_on_host(launched, p, inverse, style, vec);
      }
      return;
    }
    const int lanes = lanes_override > 0 ? lanes_override : static_cast<int>(per_token.block_x);
    const std::int64_t rows = host_walk_rows(p.num_tokens);
    for (int lane = 0; lane < lanes; ++lane) {
      for (std::int64_t row = 0; row < rows; ++row) {
        rope::detail::walk_tokens<axes>(
            p, row, rows, [&](std::int64_t token, const rope::detail::AxisPositions& positions) {
              rope::detail::rotate_token<T, decltype(style)::value, decltype(vec)::value,
                                         decltype(head_batch)::value, axes, Append>(
                  p, inverse, token, positions, lane, lanes, append);
            });
      }
    }
  });
}

/// `lanes_override` > 0 replaces the launcher's lanes per token, to exercise other splits (in
/// the per-token body). Returns the vector width (pairs per access) the dispatch picked through
/// `vec_out`. `Policy` is the kernel's tuning policy (the launchers' default unless a test names
/// another).
template <typename Policy = rope::detail::DefaultPolicy, typename T, typename Occupancy = ModelledDevice>
cudaError_t run_on_host(const rope::RopeParams<T>& p, bool inverse, int lanes_override = 0,
                        int* vec_out = nullptr, HostPath path = HostPath::kAsLaunched, const Occupancy& device = {}) {
  const rope::Status status = rope::validate(p);
  if (!status.ok()) return status.error;
  run_body_on_host<Policy, T, rope::detail::NoAppend, void>(p, inverse, rope::detail::NoAppend{}, lanes_override,
                                                            vec_out, path, device);
  return cudaSuccess;
}

/// A RoPE + KV-cache append launch on the host: the launcher's validation and conversion of the
/// arguments, then the body with the append stage for every (token, lane).
template <typename T, typename C, typename Occupancy = ModelledDevice>
cudaError_t run_append_on_host(const rope::RopeParams<T>& p, const rope::KvCacheAppend<T, C>& a,
                               int lanes_override = 0, int* vec_out = nullptr, const Occupancy& device = {}) {
  const rope::Status status = rope::validate(p, a);
  if (!status.ok()) return status.error;
  if (p.num_tokens == 0) return cudaSuccess;
  const auto append = rope::detail::make_cache_append(p, a);
  run_body_on_host<rope::detail::DefaultPolicy, T, std::decay_t<decltype(append)>, void>(
      rope::detail::resolve_outputs(p, a), false, append, lanes_override, vec_out, HostPath::kAsLaunched, device);
  return cudaSuccess;
}

/// The host's stand-in for the warp shuffle of a norm launch: the lanes (threads) of one group
/// post their partial sums, wait for each other, and each adds the group's posts in lane order,
/// so every lane gets the same total, reproducibly. A group whose lanes do not all reach the sum
/// the same number of times would hang on the GPU; here it aborts after a timeout, saying so.
class HostLaneGroups {
 public:
  static constexpr int kMaxValues = 16;  ///< values per sum (the body sums kHeadBatch at once)

  HostLaneGroups(int lanes, int width) : width_(width), posts_(static_cast<std::size_t>(lanes) * kMaxValues) {
    for (int g = 0; g < lanes / width; ++g) barriers_.push_back(std::make_unique<Barrier>());
  }

  template <int N>
  void sum(int lane, float (&v)[N], int width) {
    static_assert(N <= kMaxValues, "more values than a post holds");
    if (width != width_) fail("the body's group width differs from the launch's");
    const int first = lane / width_ * width_;
    for (int i = 0; i < N; ++i) posts_[static_cast<std::size_t>(lane) * kMaxValues + i] = v[i];
    Barrier& barrier = *barriers_[static_cast<std::size_t>(lane / width_)];
    barrier.wait(width_);  // every post of the group is in
    for (int i = 0; i < N; ++i) {
      float total = 0.0f;
      for (int l = first; l < first + width_; ++l) total += posts_[static_cast<std::size_t>(l) * kMaxValues + i];
      v[i] = total;
    }
    barrier.wait(width_);  // every lane has read the posts before any posts again
  }

 private:
  struct Barrier {
    std::mutex mutex;
    std::condition_variable cv;
    int waiting = 0;
    std::uint64_t generation = 0;

    void wait(int count) {
      std::unique_lock<std::mutex> lock(mutex);
      const std::uint64_t mine = generation;
      if (++waiting == count) {
        waiting = 0;
        ++generation;
        cv.notify_all();
        return;
      }
      if (!cv.wait_for(lock, std::chrono::seconds(60), [&] { return generation != mine; })) {
        fail("a lane group's lanes did not all reach the sum (they would hang on the GPU)");
      }
    }
  };

  [[noreturn]] static void fail(const char* why) {
    std::fprintf(stderr, "rope host run: %s\n", why);
    std::fflush(stderr);
    std::abort();
  }

  int width_;
  std::vector<float> posts_;
  std::vector<std::unique_ptr<Barrier>> barriers_;
};

/// One lane's view of HostLaneGroups: the body's `Group` in host norm runs.
struct HostLaneGroup {
  HostLaneGroups* groups;
  int lane;
  template <int N>
  void sum(float (&v)[N], int width) const {
    groups->sum(lane, v, width);
  }
};

/// Runs an already validated norm launch (`Append`: NoAppend, or the attention prologue's append
/// stage) as planned: one thread per lane, each running the body for every token. `lanes_override`
/// > 0 is rounded up to a multiple of the launch's group width (the lane rule of norm launches).
template <typename T, typename W, typename Append, typename Occupancy>
void run_norm_body_on_host(const rope::RopeParams<T>& p, const Append& append, const rope::detail::RmsNorm<W>& norm,
                           int lanes_override, int* vec_out, int* lanes_out, const Occupancy& device) {
  using Policy = rope::detail::NormPolicy;  // the launchers'
  const rope::detail::LaunchPlan plan = rope::detail::plan_launch<Policy>(p, append, norm, device);
  last_host_plan() = plan;
  rope::detail::with_instance<Policy, T, rope::detail::RmsNorm<W>>(
      plan.instance,
      [&](auto style, auto vec, auto head_batch, auto axes) {
        if (vec_out != nullptr) *vec_out = decltype(vec)::value;
        const int rotary_dim = rope::detail::rotated_dim(p);
        const int width = rope::detail::norm_group_width(rotary_dim / 2 / decltype(vec)::value);
        const int lanes =
            lanes_override > 0 ? (lanes_override + width - 1) / width * width : static_cast<int>(plan.block_x);
        if (lanes_out != nullptr) *lanes_out = lanes;
        HostLaneGroups groups(lanes, width);
        constexpr auto kStyle = decltype(style)::value;
        constexpr int kVec = decltype(vec)::value, kBatch = decltype(head_batch)::value;
        constexpr auto kAxes = decltype(axes)::value;
        // Instances that stage get the kernel's staged walk: every lane's slots in one block-sized
        // buffer, laid out by the kernel's own make_shared_stage (the lanes are one row of a block).
        constexpr bool kStaged = rope::detail::kStagesTokens<T, kStyle, kVec, kAxes, Append, rope::detail::RmsNorm<W>>;
        constexpr int kLaneSlots = rope::detail::kStageLaneSlots<T, kStyle, kVec, kBatch>;
        std::vector<rope::detail::Packed<unsigned char, 16>> slots(
            kStaged ? static_cast<std::size_t>(rope::detail::stage_bytes(lanes, kLaneSlots)) / 16 : 0);
        std::vector<std::thread> threads;
        for (int lane = 0; lane < lanes; ++lane) {
          threads.emplace_back([&, lane] {
            const std::int64_t rows = host_walk_rows(p.num_tokens);
            auto work = [&](std::int64_t token, const rope::detail::AxisPositions& positions, const auto& stage) {
              rope::detail::rotate_token<T, kStyle, kVec, kBatch, kAxes, Append, rope::detail::RmsNorm<W>,
                                         HostLaneGroup, std::decay_t<decltype(stage)>>(
                  p, false, token, positions, lane, lanes, append, norm, HostLaneGroup{&groups, lane}, stage);
            };
            for (std::int64_t row = 0; row < rows; ++row) {
              if constexpr (kStaged) {
                const rope::detail::SharedStage stage = rope::detail::make_shared_stage(
                    reinterpret_cast<unsigned char*>(slots.data()), lane, lanes, kLaneSlots);
                rope::detail::walk_tokens_staged<kAxes>(p, row, rows, stage, true, work);
              } else {
                rope::detail::walk_tokens<kAxes>(p, row, rows,
                                                 [&](std::int64_t token, const rope::detail::AxisPositions& positions) {
                                                   work(token, positions, rope::detail::NoStage{});
                                                 });
              }
            }
          });
        }
        for (std::thread& t : threads) t.join();
      });
}

/// A QK-RMSNorm + RoPE launch on the host: the launcher's validation and conversion, its plan
/// (for `device`), then run_norm_body_on_host.
template <typename T, typename W, typename Occupancy = ModelledDevice>
cudaError_t run_norm_on_host(const rope::RopeParams<T>& p, const rope::QkNorm<T, W>& n, int lanes_override = 0,
                             int* vec_out = nullptr, int* lanes_out = nullptr, const Occupancy& device = {}) {
  const rope::Status status = rope::validate(p, n);
  if (!status.ok()) return status.error;
  if (p.num_tokens == 0) return cudaSuccess;
  run_norm_body_on_host(p, rope::detail::NoAppend{}, rope::detail::make_rms_norm(n, p.head_dim), lanes_override,
                        vec_out, lanes_out, device);
  return cudaSuccess;
}

/// An attention prologue launch on the host: the launcher's validation and conversion (as
/// rope_attention_prologue: the append stage for the cache and q_fp8, the norm stage), its plan,
/// then the body for every (token, lane).
template <typename T, typename C, typename W, typename Occupancy = ModelledDevice>
cudaError_t run_prologue_on_host(const rope::RopeParams<T>& p, const rope::AttentionPrologue<T, C, W>& prologue,
                                 int lanes_override = 0, int* vec_out = nullptr, const Occupancy& device = {}) {
  const rope::Status status = rope::validate(p, prologue);
  if (!status.ok()) return status.error;
  if (p.num_tokens == 0) return cudaSuccess;
  auto run = [&](const rope::RopeParams<T>& resolved, const auto& append) {
    using Append = std::decay_t<decltype(append)>;
    if (prologue.norm != nullptr) {
      run_norm_body_on_host(resolved, append, rope::detail::make_rms_norm(*prologue.norm, p.head_dim), lanes_override,
                            vec_out, nullptr, device);
    } else {
      run_body_on_host<rope::detail::DefaultPolicy, T, Append, void>(resolved, false, append, lanes_override, vec_out,
                                                                     HostPath::kAsLaunched, device);
    }
  };
  if (prologue.cache == nullptr && prologue.q_fp8.data == nullptr) {
    run(p, rope::detail::NoAppend{});
    return cudaSuccess;
  }
  const rope::KvCacheAppend<T, C> a = rope::detail::prologue_append(prologue);
  const rope::RopeParams<T> resolved = rope::detail::resolve_outputs(p, a);
  if (prologue.cache != nullptr) {
    run(resolved, rope::detail::make_prologue_append<true>(p, a));
  } else {
    run(resolved, rope::detail::make_prologue_append<false>(p, a));
  }
  return cudaSuccess;
}

}  // namespace rope_test
