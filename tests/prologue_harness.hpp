// SPDX-License-Identifier: MIT
#pragma once
// One attention prologue case end to end: inputs (never zero), norm weights, paged caches, slots,
// q's FP8 output and (multi-axis) positions for a configuration; run on the host
// (run_prologue_on_host: the launcher's validation, conversion and plan, then the per-token body)
// or on the GPU (rope::rope_attention_prologue); every written element checked against the
// double-precision reference (prologue_reference.hpp), every other element -- guards, padding,
// NaN-poisoned outputs and caches of tokens that write nothing -- bit for bit unchanged.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <cuda_fp8.h>
#include <gtest/gtest.h>

#include <rope/rope.cuh>

#include "harness.hpp"
#include "host_run.hpp"
#include "kv_append_harness.hpp"
#include "prologue_reference.hpp"

namespace rope_test {

/// The norm stage of a case: none, Qwen3's x̂ * w, or Gemma's x̂ * (1 + w).
enum class PrologueNorm { kNone, kMultiply, kOnePlus };
/// The cache stage: none, caches of the tensor's type, or FP8 E4M3 caches.
enum class PrologueCache { kNone, kSameType, kFp8 };
/// q to FP8: not at all, besides q.y, or instead of q.y (q.y null).
enum class PrologueQFp8 { kNone, kWithY, kOnly };

struct PrologueConfig {
  std::int64_t tokens = 9;
  int head_dim = 128;
  int rotary_dim = 0;  // 0: the whole head
  rope::Style style = rope::Style::kHalfSplit;
  int q_heads = 4;   // 0: k only
  int kv_heads = 2;  // 0: q only (no cache then)
  // Norm.
  PrologueNorm norm = PrologueNorm::kNone;
  bool float_weights = false;  // W = float, else W = T
  float eps = 1e-6f;
  int weight_misalign = 0;  // elements of W past an aligned address
  // Cache.
  PrologueCache cache = PrologueCache::kNone;
  bool k_write_back = true;  // false (with a cache): k.y null, the rotated k goes to the cache only
  CacheLayout layout = CacheLayout::kNhd;
  int block_size = 16;
  std::int64_t spare_blocks = 2;
  rope::SlotType slot_type = rope::SlotType::kInt64;
  int negative_slots = 0;      // tokens with a negative slot: no cache row
  int out_of_range_slots = 0;  // tokens with a slot past the cache: no row, flag raised
  int cache_misalign = 0;      // elements of C added to the caches' base pointers
  float k_scale = 0.0025f, v_scale = 0.01f;  // FP8 caches only (some k values saturate)
  // q to FP8.
  PrologueQFp8 q_fp8 = PrologueQFp8::kNone;
  float q_scale = 0.003f;  // some q values saturate
  int q_fp8_misalign = 0;  // bytes added to q_fp8's (otherwise 16-byte aligned) base
  int q_fp8_head_pad = 0;  // extra bytes between q_fp8's heads
  // Tensors.
  bool in_place = false;
  bool fused_qkv = false;  // q, k and v sliced out of one [T, Hq + 2 Hkv, D] buffer
  int head_pad = 0;        // extra elements between heads (x and y alike)
  int misalign = 0;        // elements added to the q/k/v regions' base pointers
  // cos/sin and positions.
  bool computed = false;
  bool table_in_tensor_type = false;
  float attention_scaling = 1.0f;
  rope::PositionType position_type = rope::PositionType::kInt64;  // kNone: position = token index
  int out_of_range_positions = 0;  // table mode: tokens with a position (on some axis) outside the table
  int axes = 1;                    // 2 or 3: M-RoPE, each token's positions differing per axis
  rope::AxisSections sections_layout = rope::AxisSections::kContiguous;
  int sections[3] = {0, 0, 0};
  std::int64_t max_position = 0;  // table rows (0: tokens + 13, or tokens without positions); computed: 100000
  // Host runs.
  int lanes = 0;                        // lanes per token (0: the plan's)
  std::int64_t modelled_resident = 0;   // the ModelledDevice's resident blocks (0: unknown)
  std::uint64_t data_seed = 0;

  bool has_cache() const { return cache != PrologueCache::kNone; }
  bool quantizes_q() const { return q_fp8 != PrologueQFp8::kNone; }
  int rot() const { return rotary_dim == 0 ? head_dim : rotary_dim; }

  std::string describe() const {
    std::ostringstream o;
    static const char* norms[] = {"none", "w", "1+w"};
    static const char* caches[] = {"none", "T", "fp8"};
    static const char* q8[] = {"none", "with_y", "only"};
    o << "tokens=" << tokens << " head_dim=" << head_dim << " rotary_dim=" << rotary_dim
      << " style=" << (style == rope::Style::kInterleaved ? "interleaved" : "half") << " q_heads=" << q_heads
      << " kv_heads=" << kv_heads << " norm=" << norms[static_cast<int>(norm)];
    if (norm != PrologueNorm::kNone) {
      o << "{weights=" << (float_weights ? "float" : "T") << " eps=" << eps << " weight_misalign=" << weight_misalign
        << "}";
    }
    o << " cache=" << caches[static_cast<int>(cache)];
    if (has_cache()) {
      o << "{write_back=" << k_write_back << " layout=" << static_cast<int>(layout) << " block_size=" << block_size
        << " spare_blocks=" << spare_blocks << " slots=" << static_cast<int>(slot_type)
        << " negative_slots=" << negative_slots << " out_of_range_slots=" << out_of_range_slots
        << " cache_misalign=" << cache_misalign << std::hexfloat << " k_scale=" << k_scale << " v_scale=" << v_scale
        << std::defaultfloat << "}";
    }
    o << " q_fp8=" << q8[static_cast<int>(q_fp8)];
    if (quantizes_q()) {
      o << "{" << std::hexfloat << "scale=" << q_scale << std::defaultfloat << " misalign=" << q_fp8_misalign
        << " head_pad=" << q_fp8_head_pad << "}";
    }
    o << " in_place=" << in_place << " fused_qkv=" << fused_qkv << " head_pad=" << head_pad
      << " misalign=" << misalign << " computed=" << computed << " table_in_T=" << table_in_tensor_type
      << " attention_scaling=" << attention_scaling << " positions=" << static_cast<int>(position_type)
      << " out_of_range_positions=" << out_of_range_positions << " axes=" << axes;
    if (axes > 1) {
      o << "{" << (sections_layout == rope::AxisSections::kInterleaved ? "interleaved" : "contiguous") << " "
        << sections[0] << "/" << sections[1] << "/" << sections[2] << "}";
    }
    o << " max_position=" << max_position << " lanes=" << lanes << " resident=" << modelled_resident;
    if (data_seed != 0) o << " data_seed=" << data_seed;
    return o.str();
  }
};

/// A value drawn uniformly from (-1, 1) that is not zero in T.
template <typename T>
T nonzero_value(std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (;;) {
    const T v = rope::detail::from_float<T>(u(rng));
    if (rope::detail::to_float(v) != 0.0f) return v;
  }
}

/// One attention prologue case of tensor type T, cache type C (used with a cache: T or FP8) and
/// norm weight type W (used with a norm: T or float).
template <typename T, typename C, typename W>
class PrologueCase {
 public:
  static constexpr bool kFp8Cache = std::is_same<C, __nv_fp8_e4m3>::value;
  using Fp8 = __nv_fp8_e4m3;

  explicit PrologueCase(const PrologueConfig& cfg, std::uint64_t salt = 0)
      : cfg_(cfg), rng_(cfg.data_seed != 0 ? cfg.data_seed : base_seed() ^ (salt * 0x9E3779B97F4A7C15ull)) {
    build();
  }

  ::testing::AssertionResult run(Backend backend) {
    if (!runs_cases_on(backend)) return fail() << "this test program runs no cases on this backend (tests/CMakeLists.txt)";
    if (cfg_.cache == PrologueCache::kFp8 && !kFp8Cache) return fail() << "an FP8 cache configuration needs C = FP8";
    if (cfg_.cache == PrologueCache::kSameType && !std::is_same<C, T>::value) {
      return fail() << "a same-type cache configuration needs C = T";
    }
    if (cfg_.norm != PrologueNorm::kNone && cfg_.float_weights != std::is_same<W, float>::value &&
        !std::is_same<T, float>::value) {
      return fail() << "the configuration's weight type is not W";
    }
    const std::vector<T> tensors_before = tensors_.host;
    const std::vector<C> caches_before = caches_.host;
    const std::vector<Fp8> q8_before = q8_.host;
    if (backend == Backend::kGpu) {
      for (auto* m : {&table_, &inv_freq_, &weights_}) m->upload();
      tensors_.upload();
      caches_.upload();
      q8_.upload();
      positions64_.upload();
      positions32_.upload();
      slots32_.upload();
      slots64_.upload();
      flags_.upload();
    }
    const rope::RopeParams<T> p = params(backend);
    const rope::QkNorm<T, W> norm = norm_args(backend);
    const rope::KvCacheAppend<T, C> cache = cache_args(backend);
    rope::AttentionPrologue<T, C, W> prologue;
    if (cfg_.norm != PrologueNorm::kNone) prologue.norm = &norm;
    if (cfg_.has_cache()) prologue.cache = &cache;
    if (cfg_.quantizes_q()) {
      prologue.q_fp8.data = q8_.base(backend) + q8_at_;
      prologue.q_fp8.token_stride = q8_token_stride_;
      prologue.q_fp8.head_stride = q8_head_stride_;
      prologue.q_fp8.scale = cfg_.q_scale;
    }
    cudaError_t err;
    if (backend == Backend::kGpu) {
#if defined(ROPE_TEST_HOST_ONLY)
      err = cudaErrorNotSupported;  // refused above
#else
      err = rope::rope_attention_prologue(p, prologue);
      if (err == cudaSuccess) err = cudaDeviceSynchronize();
      tensors_.download();
      caches_.download();
      q8_.download();
      flags_.download();
#endif
    } else {
#if defined(ROPE_TEST_GPU_ONLY)
      err = cudaErrorNotSupported;  // refused above
#else
      err = run_prologue_on_host(p, prologue, cfg_.lanes, &vec_used_, ModelledDevice{cfg_.modelled_resident});
#endif
    }
    if (err != cudaSuccess) {
      return fail() << "launch failed: " << cudaGetErrorString(err) << " / " << rope::last_error_message();
    }
    return check(tensors_before, caches_before, q8_before);
  }

  int vec_used() const { return vec_used_; }
  /// FP8 elements accepted by the bound rather than as the exact code (the reference within its
  /// error of a rounding boundary).
  std::int64_t fp8_ambiguous() const { return ambiguous_; }
  double rel_l2() const { return rel_l2_; }

 private:
  ::testing::AssertionResult fail() const {
    ::testing::AssertionResult r = ::testing::AssertionFailure();
    if (cfg_.data_seed == 0) r << "[ROPE_TEST_SEED=" << base_seed() << "] ";
    return r << type_names() << " " << cfg_.describe() << "\n  ";
  }

  static const char* name_of(const float*) { return "float"; }
  static const char* name_of(const __half*) { return "half"; }
  static const char* name_of(const __nv_bfloat16*) { return "bf16"; }
  static const char* name_of(const Fp8*) { return "fp8"; }
  static std::string type_names() {
    return std::string("T=") + name_of(static_cast<const T*>(nullptr)) + " C=" + name_of(static_cast<const C*>(nullptr)) +
           " W=" + name_of(static_cast<const W*>(nullptr));
  }

  bool q_to_y() const { return cfg_.q_fp8 != PrologueQFp8::kOnly; }
  bool k_to_y() const { return !cfg_.has_cache() || cfg_.k_write_back; }
  std::int64_t num_blocks() const { return (cfg_.tokens + cfg_.block_size - 1) / cfg_.block_size + cfg_.spare_blocks; }

  /// One [tokens, heads, dim] view inside tensors_: offsets in elements.
  struct View {
    int heads = 0;
    std::int64_t offset = 0, token_stride = 0, head_stride = 0;
    std::int64_t at(std::int64_t t, int h) const { return offset + t * token_stride + h * head_stride; }
  };

  void build() {
    build_tensors();
    build_caches();
    build_q_fp8();
    build_positions();
    build_cos_sin();
    build_weights();
    build_slots();
    flags_.host.assign(2, 0);
  }

  void build_tensors() {
    const int D = cfg_.head_dim, hq = cfg_.q_heads, hkv = cfg_.kv_heads, hs = D + cfg_.head_pad;
    const std::int64_t T_ = cfg_.tokens;
    // Every tensor lives in one buffer, each region with guards around it.
    std::int64_t used = kGuard + cfg_.misalign;
    auto region = [&](int heads) {
      View v;
      v.heads = heads;
      v.offset = used;
      v.token_stride = std::int64_t{heads} * hs;
      v.head_stride = hs;
      used += T_ * v.token_stride + kGuard + 16;
      used += (16 - used % 16) % 16 + cfg_.misalign;  // the next region aligned as this one
      return v;
    };
    if (cfg_.fused_qkv) {
      const View x = region(hq + 2 * hkv);
      const View y = cfg_.in_place ? x : region(hq + 2 * hkv);
      qx_ = x, qy_ = y, kx_ = x, ky_ = y, v_ = x;
      qx_.heads = qy_.heads = hq;
      kx_.heads = ky_.heads = v_.heads = hkv;
      kx_.offset += std::int64_t{hq} * hs, ky_.offset += std::int64_t{hq} * hs;
      v_.offset += std::int64_t{hq + hkv} * hs;
    } else {
      if (hq > 0) {
        qx_ = region(hq);
        qy_ = cfg_.in_place ? qx_ : region(hq);
      }
      if (hkv > 0) {
        kx_ = region(hkv);
        ky_ = cfg_.in_place ? kx_ : region(hkv);
        if (cfg_.has_cache()) v_ = region(hkv);
      }
    }
    tensors_.host.resize(static_cast<std::size_t>(used + kGuard));
    for (auto& e : tensors_.host) e = nonzero_value<T>(rng_);
    // Outputs written out of place start as NaN, so an unwritten element shows.
    auto poison = [&](const View& y, const View& x) {
      if (y.offset == x.offset || y.heads == 0) return;
      for (std::int64_t t = 0; t < T_; ++t)
        for (int h = 0; h < y.heads; ++h)
          for (int d = 0; d < D; ++d) tensors_.host[y.at(t, h) + d] = rope::detail::from_float<T>(NAN);
    };
    if (q_to_y()) poison(qy_, qx_);
    if (k_to_y()) poison(ky_, kx_);
  }

  /// NaN in C: the T NaN, or FP8's 0x7F.
  static C nan_cache() {
    if constexpr (kFp8Cache) {
      C e;
      e.__x = 0x7F;
      return e;
    } else {
      return rope::detail::from_float<T>(NAN);
    }
  }

  void build_caches() {
    if (!cfg_.has_cache()) {
      caches_.host.assign(1, nan_cache());
      return;
    }
    const int D = cfg_.head_dim, hkv = cfg_.kv_heads, bs = cfg_.block_size;
    const std::int64_t nb = num_blocks();
    const std::int64_t at = kGuard + cfg_.cache_misalign;
    std::int64_t per_cache = 0;
    switch (cfg_.layout) {
      case CacheLayout::kNhd:
        k_cache_ = rope::nhd_paged_cache<C>(nullptr, bs, hkv, D);
        break;
      case CacheLayout::kHnd:
        k_cache_ = rope::hnd_paged_cache<C>(nullptr, bs, hkv, D);
        break;
      case CacheLayout::kHndKvInOne:
        k_cache_ = rope::hnd_paged_cache<C>(nullptr, bs, hkv, D);
        k_cache_.block_stride *= 2;  // [pages, 2, heads, page, dim]
        break;
      case CacheLayout::kPaddedNhd:
        k_cache_.head_stride = D + 16;
        k_cache_.row_stride = hkv * k_cache_.head_stride + 32;
        k_cache_.block_stride = bs * k_cache_.row_stride + 48;
        break;
    }
    v_cache_ = k_cache_;
    per_cache = nb * k_cache_.block_stride;
    k_at_ = at;
    v_at_ = cfg_.layout == CacheLayout::kHndKvInOne ? at + k_cache_.block_stride / 2 : at + per_cache + 64;
    const std::int64_t total = (cfg_.layout == CacheLayout::kHndKvInOne ? at + per_cache : v_at_ + per_cache) + kGuard;
    // NaN everywhere (rows written show as numbers), recognisable guards around.
    caches_.host.assign(static_cast<std::size_t>(total), nan_cache());
    C guard;
    unsigned char sentinel[sizeof(C)];
    std::memset(sentinel, 0x3C, sizeof(C));
    std::memcpy(&guard, sentinel, sizeof(C));
    for (std::int64_t i = 0; i < at; ++i) caches_.host[i] = guard;
    for (std::int64_t i = total - kGuard; i < total; ++i) caches_.host[i] = guard;
  }

  void build_q_fp8() {
    if (!cfg_.quantizes_q()) {
      q8_.host.assign(16, Fp8{});
      return;
    }
    const int D = cfg_.head_dim;
    q8_head_stride_ = D + cfg_.q_fp8_head_pad;
    q8_token_stride_ = std::int64_t{cfg_.q_heads} * q8_head_stride_ + 32;
    q8_at_ = 64 + cfg_.q_fp8_misalign;
    const std::int64_t total = q8_at_ + cfg_.tokens * q8_token_stride_ + kGuard;
    Fp8 nan, guard;
    nan.__x = 0x7F;
    guard.__x = 0x3C;
    q8_.host.assign(static_cast<std::size_t>(total), guard);
    for (std::int64_t t = 0; t < cfg_.tokens; ++t)
      for (int h = 0; h < cfg_.q_heads; ++h)
        for (int d = 0; d < D; ++d) q8_.host[q8_at_ + t * q8_token_stride_ + h * q8_head_stride_ + d] = nan;
  }

  void build_positions() {
    const std::int64_t T_ = cfg_.tokens;
    const bool has_positions = cfg_.position_type != rope::PositionType::kNone;
    rows_ = cfg_.max_position != 0 ? cfg_.max_position : (has_positions ? T_ + 13 : T_);
    const std::int64_t limit = cfg_.computed ? (cfg_.max_position != 0 ? cfg_.max_position : 100000) : rows_;
    std::uniform_int_distribution<std::int64_t> pick(0, limit > 0 ? limit - 1 : 0);
    const int axes = cfg_.axes;
    axis_stride_ = T_ + 3;
    std::vector<std::vector<std::int64_t>> pos(static_cast<std::size_t>(axes), std::vector<std::int64_t>(T_));
    for (std::int64_t t = 0; t < T_; ++t) {
      for (int a = 0; a < axes; ++a) {
        std::int64_t v = has_positions ? pick(rng_) : t;
        // Multi-axis: every token's axes differ (a kernel that read one axis for all would show).
        for (int tries = 0; a > 0 && tries < 1000; ++tries) {
          bool distinct = true;
          for (int b = 0; b < a; ++b) distinct = distinct && pos[b][t] != v;
          if (distinct) break;
          v = pick(rng_);
        }
        pos[a][t] = v;
      }
    }
    // A few positions outside the table (negative or past it), each on a random axis.
    std::uniform_int_distribution<std::int64_t> token(0, T_ > 0 ? T_ - 1 : 0);
    std::uniform_int_distribution<int> axis(0, axes - 1);
    for (int i = 0; i < cfg_.out_of_range_positions && T_ > 0; ++i) {
      pos[axis(rng_)][token(rng_)] = i % 2 == 0 ? -1 - i : rows_ + i;
    }
    positions64_.host.assign(static_cast<std::size_t>(axes * axis_stride_), -7);
    for (int a = 0; a < axes; ++a)
      for (std::int64_t t = 0; t < T_; ++t) positions64_.host[a * axis_stride_ + t] = pos[a][t];
    for (std::int64_t v : positions64_.host) positions32_.host.push_back(static_cast<std::int32_t>(v));
    ref_.rope.tokens = T_;
    ref_.rope.head_dim = cfg_.head_dim;
    ref_.rope.rotary_dim = cfg_.rot();
    ref_.rope.interleaved = cfg_.style == rope::Style::kInterleaved;
    ref_.rope.computed = cfg_.computed;
    positions_ = pos;
  }

  void build_cos_sin() {
    const int half = cfg_.rot() / 2;
    inv_freq_.host.resize(static_cast<std::size_t>(half) + 4);
    for (int i = 0; i < half; ++i) {
      inv_freq_.host[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / cfg_.rot()));
      ref_.rope.inv_freq.push_back(inv_freq_.host[i]);
    }
    ref_.rope.attention_scaling = cfg_.attention_scaling;
    if (!cfg_.computed) {
      // Separate cos and sin tables of random angles, rows padded (16-byte aligned), in float or
      // T; the reference reads the stored values back.
      stride_ = (half + 7) / 8 * 8 + 8;
      const std::int64_t per_table = rows_ * stride_ + 8;
      sin_at_ = per_table;
      table_.host.assign(static_cast<std::size_t>(2 * per_table + 8), 0.0f);  // bytes in float units
      ref_.rope.table_rows = rows_;
      ref_.rope.table_row_stride = stride_;
      ref_.rope.cos_table.assign(static_cast<std::size_t>(rows_ * stride_), 0.0);
      ref_.rope.sin_table.assign(static_cast<std::size_t>(rows_ * stride_), 0.0);
      std::uniform_real_distribution<double> angle(-3.2, 3.2);
      auto store = [&](std::int64_t index, double v) -> double {
        if (cfg_.table_in_tensor_type) {
          const T e = rope::detail::from_float<T>(static_cast<float>(v));
          std::memcpy(reinterpret_cast<unsigned char*>(table_.host.data()) + index * sizeof(T), &e, sizeof(T));
          return rope::detail::to_float(e);
        }
        table_.host[index] = static_cast<float>(v);
        return table_.host[index];
      };
      for (std::int64_t r = 0; r < rows_; ++r) {
        for (int i = 0; i < half; ++i) {
          const double a = angle(rng_);
          ref_.rope.cos_table[r * stride_ + i] = store(r * stride_ + i, std::cos(a));
          ref_.rope.sin_table[r * stride_ + i] = store(sin_at_ + r * stride_ + i, std::sin(a));
        }
      }
    }
    ref_.set_axes(cfg_.axes, cfg_.sections_layout == rope::AxisSections::kInterleaved, cfg_.sections, positions_);
  }

  void build_weights() {
    const int D = cfg_.head_dim;
    weight_k_at_ = D + 16;
    weights_.host.assign(static_cast<std::size_t>(2 * weight_k_at_ + cfg_.weight_misalign + 4), 0.0f);
    if (cfg_.norm == PrologueNorm::kNone) return;
    ref_.norm = true;
    ref_.one_plus = cfg_.norm == PrologueNorm::kOnePlus;
    ref_.eps = cfg_.eps;
    // Qwen3-like weights around 1 (w), Gemma-like ones around 0 (1 + w), never zero.
    std::uniform_real_distribution<double> u(ref_.one_plus ? -0.5 : 0.5, ref_.one_plus ? 0.5 : 1.25);
    for (int which = 0; which < 2; ++which) {
      std::vector<double>& ref = which == 0 ? ref_.q_weight : ref_.k_weight;
      ref.resize(static_cast<std::size_t>(D));
      for (int d = 0; d < D; ++d) {
        const std::int64_t at = (which == 0 ? 0 : weight_k_at_) + cfg_.weight_misalign + d;
        float v = 0.0f;
        while (v == 0.0f) v = rope::detail::to_float(rope::detail::from_float<W>(static_cast<float>(u(rng_))));
        const W e = rope::detail::from_float<W>(v);
        std::memcpy(reinterpret_cast<unsigned char*>(weights_.host.data()) + at * sizeof(W), &e, sizeof(W));
        ref[d] = v;
      }
    }
  }

  void build_slots() {
    if (!cfg_.has_cache()) {
      slots32_.host.assign(1, 0);
      slots64_.host.assign(1, 0);
      return;
    }
    // Distinct slots in random order (no two tokens share a row), then padding and overflow.
    const std::int64_t num_slots = num_blocks() * cfg_.block_size;
    std::vector<std::int64_t> all(static_cast<std::size_t>(num_slots));
    for (std::int64_t s = 0; s < num_slots; ++s) all[s] = s;
    std::shuffle(all.begin(), all.end(), rng_);
    slots_.assign(all.begin(), all.begin() + cfg_.tokens);
    std::uniform_int_distribution<std::int64_t> token(0, cfg_.tokens > 0 ? cfg_.tokens - 1 : 0);
    for (int i = 0; i < cfg_.negative_slots && cfg_.tokens > 0; ++i) slots_[token(rng_)] = -1 - i;
    for (int i = 0; i < cfg_.out_of_range_slots && cfg_.tokens > 0; ++i) slots_[token(rng_)] = num_slots + i;
    for (std::int64_t s : slots_) {
      slots32_.host.push_back(static_cast<std::int32_t>(s));
      slots64_.host.push_back(s);
    }
    if (slots_.empty()) slots32_.host.push_back(0), slots64_.host.push_back(0);
  }

  rope::RopeParams<T> params(Backend b) {
    T* base = tensors_.base(b);
    rope::RopeParams<T> p;
    p.num_tokens = cfg_.tokens;
    p.head_dim = cfg_.head_dim;
    p.rotary_dim = cfg_.rotary_dim;
    p.style = cfg_.style;
    auto view = [&](const View& x, const View& y, bool writes) {
      rope::HeadsTensor<T> v = rope::strided_heads<T>(base + x.offset, writes ? base + y.offset : nullptr, x.heads,
                                                      x.token_stride, x.head_stride);
      return v;
    };
    if (cfg_.q_heads > 0) p.q = view(qx_, qy_, q_to_y());
    if (cfg_.kv_heads > 0) p.k = view(kx_, ky_, k_to_y());
    if (cfg_.computed) {
      p.cos_sin = rope::computed_cos_sin(inv_freq_.base(b), cfg_.attention_scaling);
    } else if (cfg_.table_in_tensor_type) {
      const T* t = reinterpret_cast<const T*>(table_.base(b));
      p.cos_sin = rope::cos_sin_table<T>(t, t + sin_at_, rows_, stride_, cfg_.attention_scaling);
    } else {
      const float* t = table_.base(b);
      p.cos_sin = rope::cos_sin_table<float>(t, t + sin_at_, rows_, stride_, cfg_.attention_scaling);
    }
    const bool i32 = cfg_.position_type == rope::PositionType::kInt32;
    if (cfg_.axes > 1) {
      const int* s = cfg_.sections;
      p.positions = i32 ? rope::multi_axis_positions(positions32_.base(b), cfg_.axes, axis_stride_, cfg_.sections_layout,
                                                     s[0], s[1], s[2])
                        : rope::multi_axis_positions(positions64_.base(b), cfg_.axes, axis_stride_,
                                                     cfg_.sections_layout, s[0], s[1], s[2]);
    } else if (cfg_.position_type != rope::PositionType::kNone) {
      p.positions = i32 ? rope::positions(positions32_.base(b)) : rope::positions(positions64_.base(b));
    }
    p.out_of_range_flag = flags_.base(b);
    return p;
  }

  rope::QkNorm<T, W> norm_args(Backend b) {
    rope::QkNorm<T, W> n;
    if (cfg_.norm == PrologueNorm::kNone) return n;
    const W* base = reinterpret_cast<const W*>(weights_.base(b));
    if (cfg_.q_heads > 0) n.q_weight = base + cfg_.weight_misalign;
    if (cfg_.kv_heads > 0) n.k_weight = base + weight_k_at_ + cfg_.weight_misalign;
    n.eps = cfg_.eps;
    n.weighting = cfg_.norm == PrologueNorm::kOnePlus ? rope::NormWeighting::kOnePlus : rope::NormWeighting::kMultiply;
    return n;
  }

  rope::KvCacheAppend<T, C> cache_args(Backend b) {
    rope::KvCacheAppend<T, C> a;
    if (!cfg_.has_cache()) return a;
    a.v = tensors_.base(b) + v_.offset;
    a.v_token_stride = v_.token_stride;
    a.v_head_stride = v_.head_stride;
    a.k_cache = k_cache_;
    a.k_cache.data = caches_.base(b) + k_at_;
    a.v_cache = v_cache_;
    a.v_cache.data = caches_.base(b) + v_at_;
    a.num_blocks = num_blocks();
    a.block_size = cfg_.block_size;
    a.slots = cfg_.slot_type == rope::SlotType::kInt32 ? rope::slot_mapping(slots32_.base(b))
                                                       : rope::slot_mapping(slots64_.base(b));
    if (kFp8Cache) a.k_scale = cfg_.k_scale, a.v_scale = cfg_.v_scale;
    a.slot_out_of_range_flag = flags_.base(b) + 1;
    return a;
  }

  /// An FP8 element against reference `want` (bound `error`): the exact code, or, where `error`
  /// leaves the reference on either side of a rounding boundary (of T or of FP8), any code whose
  /// value lies between those of want - error and want + error (the conversion is monotonic:
  /// those are the codes the fp32 result can have; several when `want` is small beside the
  /// inputs a rotation cancelled).
  bool fp8_matches(unsigned got, double want, double error, double scale) {
    if (got == fp8_code<T>(want, scale)) return true;
    const double low = e4m3_value(fp8_code<T>(want - error, scale)), high = e4m3_value(fp8_code<T>(want + error, scale));
    const double value = e4m3_value(got);  // NaN for 0x7F / 0xFF: never accepted
    if (low <= value && value <= high) {
      ++ambiguous_;
      return true;
    }
    return false;
  }

  /// Max-abs bound of a T element: relative beyond 1 with the norm (normalized values reach past
  /// 1, where T's rounding step grows), as harness.hpp's norm cases bound it.
  double bound_of(double want) const {
    return Tolerance<T>::kMaxAbs * (cfg_.norm != PrologueNorm::kNone ? std::max(1.0, std::fabs(want)) : 1.0);
  }

  ::testing::AssertionResult check(const std::vector<T>& before, const std::vector<C>& caches_before,
                                   const std::vector<Fp8>& q8_before) {
    const int D = cfg_.head_dim;
    std::vector<char> tensor_written(tensors_.host.size(), 0), cache_written(caches_.host.size(), 0),
        q8_written(q8_.host.size(), 0);
    std::vector<double> x(D), want(D), in;
    bool any_position_out = false, any_slot_out = false;
    double err2 = 0, ref2 = 0;
    const std::int64_t nb = num_blocks();
    for (std::int64_t t = 0; t < cfg_.tokens; ++t) {
      const bool valid = prologue_position_valid(ref_, t);
      any_position_out |= !valid;
      std::int64_t block = 0, row = 0;
      const bool has_row = cfg_.has_cache() && slot_row(slots_[t], nb, cfg_.block_size, block, row);
      any_slot_out |= cfg_.has_cache() && slots_[t] >= nb * cfg_.block_size;
      if (!valid) {
        // A plain launch (no norm, cache or q_fp8) passes the token through unrotated (y = x);
        // fused ones write nothing of it.
        const bool plain = cfg_.norm == PrologueNorm::kNone && !cfg_.has_cache() && !cfg_.quantizes_q();
        for (int which = 0; plain && which < 2; ++which) {
          const View& xv = which == 0 ? qx_ : kx_;
          const View& yv = which == 0 ? qy_ : ky_;
          if (!(which == 0 ? q_to_y() : k_to_y())) continue;
          for (int h = 0; h < xv.heads; ++h) {
            for (int d = 0; d < D; ++d) {
              const std::int64_t i = yv.at(t, h) + d;
              tensor_written[i] = 1;
              if (std::memcmp(&tensors_.host[i], &before[xv.at(t, h) + d], sizeof(T)) != 0) {
                return fail() << "out-of-table token " << t << " not passed through at head " << h << " dim " << d;
              }
            }
          }
        }
        continue;
      }
      for (int which = 0; which < 2; ++which) {
        const View& xv = which == 0 ? qx_ : kx_;
        const View& yv = which == 0 ? qy_ : ky_;
        const char* name = which == 0 ? "q" : "k";
        for (int h = 0; h < xv.heads; ++h) {
          for (int d = 0; d < D; ++d) x[d] = rope::detail::to_float(before[xv.at(t, h) + d]);
          reference_prologue_head(ref_, t, which == 0, x.data(), want.data(), &in);
          const bool writes_y = which == 0 ? q_to_y() : k_to_y();
          if (writes_y) {
            for (int d = 0; d < D; ++d) {
              const std::int64_t i = yv.at(t, h) + d;
              tensor_written[i] = 1;
              const double got = rope::detail::to_float(tensors_.host[i]);
              if (std::isnan(got)) return fail() << "NaN (unwritten?) in " << name << ".y at token " << t << " head " << h << " dim " << d;
              err2 += (got - want[d]) * (got - want[d]);
              ref2 += want[d] * want[d];
              if (!(std::fabs(got - want[d]) <= bound_of(want[d]))) {
                return fail() << name << ".y " << got << " want " << want[d] << " at token " << t << " head " << h
                              << " dim " << d;
              }
            }
          }
          if (which == 0 && cfg_.quantizes_q()) {
            const std::int64_t base = q8_at_ + t * q8_token_stride_ + std::int64_t{h} * q8_head_stride_;
            for (int d = 0; d < D; ++d) {
              q8_written[base + d] = 1;
              const unsigned got = bits_of(q8_.host[base + d]);
              // With q.y written, q_fp8 is that y quantized, exactly (the separate launches'
              // result); without it, the reference's code.
              const bool ok = q_to_y() ? got == fp8_code_of_stored(tensors_.host[qy_.at(t, h) + d], cfg_.q_scale)
                                       : fp8_matches(got, want[d], prologue_error_bound(ref_, in, d), cfg_.q_scale);
              if (!ok) {
                return fail() << "q_fp8 code " << got << " want " << fp8_code<T>(want[d], cfg_.q_scale) << " ("
                              << want[d] / cfg_.q_scale << " +- " << prologue_error_bound(ref_, in, d) / cfg_.q_scale
                              << " scaled) at token " << t << " head " << h << " dim " << d;
              }
            }
          }
          if (which == 1 && has_row) {
            const std::int64_t base = k_at_ + block * k_cache_.block_stride + row * k_cache_.row_stride + h * k_cache_.head_stride;
            for (int d = 0; d < D; ++d) {
              cache_written[base + d] = 1;
              const C& got = caches_.host[base + d];
              const T* y = k_to_y() ? &tensors_.host[ky_.at(t, h) + d] : nullptr;
              if constexpr (kFp8Cache) {
                const unsigned code = bits_of(got);
                const bool ok = y != nullptr ? code == fp8_code_of_stored(*y, cfg_.k_scale)
                                             : fp8_matches(code, want[d], prologue_error_bound(ref_, in, d), cfg_.k_scale);
                if (!ok) {
                  return fail() << "k cache code " << code << " want " << fp8_code<T>(want[d], cfg_.k_scale) << " ("
                                << want[d] / cfg_.k_scale << " +- " << prologue_error_bound(ref_, in, d) / cfg_.k_scale
                                << " scaled) at token " << t << " head " << h << " dim " << d;
                }
              } else {
                const double g = rope::detail::to_float(got);
                if (!(std::fabs(g - want[d]) <= bound_of(want[d]))) {
                  return fail() << "k cache " << g << " want " << want[d] << " at token " << t << " head " << h << " dim " << d;
                }
                // With write-back the cache holds exactly the bits of k.y.
                if (y != nullptr && std::memcmp(&got, y, sizeof(T)) != 0) {
                  return fail() << "k cache bits differ from k.y at token " << t << " head " << h << " dim " << d;
                }
              }
            }
          }
        }
      }
      if (has_row) {
        for (int h = 0; h < cfg_.kv_heads; ++h) {
          const std::int64_t base = v_at_ + block * v_cache_.block_stride + row * v_cache_.row_stride + h * v_cache_.head_stride;
          for (int d = 0; d < D; ++d) {
            cache_written[base + d] = 1;
            const T& v = before[v_.at(t, h) + d];
            const C& got = caches_.host[base + d];
            bool ok;
            if constexpr (kFp8Cache) {
              ok = bits_of(got) == fp8_code_of_stored(v, cfg_.v_scale);
            } else {
              ok = std::memcmp(&got, &v, sizeof(T)) == 0;  // v passes untouched
            }
            if (!ok) return fail() << "v cache element wrong at token " << t << " head " << h << " dim " << d;
          }
        }
      }
    }
    for (std::size_t i = 0; i < tensors_.host.size(); ++i) {
      if (!tensor_written[i] && std::memcmp(&before[i], &tensors_.host[i], sizeof(T)) != 0) {
        return fail() << "tensor element " << i << " should be untouched but was written";
      }
    }
    for (std::size_t i = 0; i < caches_.host.size(); ++i) {
      if (!cache_written[i] && std::memcmp(&caches_before[i], &caches_.host[i], sizeof(C)) != 0) {
        return fail() << "cache element " << i << " should be untouched but was written";
      }
    }
    for (std::size_t i = 0; i < q8_.host.size(); ++i) {
      if (!q8_written[i] && bits_of(q8_before[i]) != bits_of(q8_.host[i])) {
        return fail() << "q_fp8 element " << i << " should be untouched but was written";
      }
    }
    if (flags_.host[0] != (any_position_out ? 1 : 0)) return fail() << "out_of_range_flag is " << flags_.host[0];
    if (flags_.host[1] != (any_slot_out ? 1 : 0)) return fail() << "slot_out_of_range_flag is " << flags_.host[1];
    const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
    rel_l2_ = rel;
    if (!(rel <= Tolerance<T>::kRelL2)) {
      return fail() << "relative L2 error of q.y/k.y " << rel << " (limit " << Tolerance<T>::kRelL2 << ")";
    }
    return ::testing::AssertionSuccess();
  }

  PrologueConfig cfg_;
  std::mt19937_64 rng_;
  Mirror<T> tensors_;
  Mirror<C> caches_;
  Mirror<Fp8> q8_;
  Mirror<float> table_, inv_freq_, weights_;  // table_ and weights_: float or T/W, as bytes
  Mirror<std::int64_t> positions64_;
  Mirror<std::int32_t> positions32_, slots32_;
  Mirror<std::int64_t> slots64_;
  Mirror<int> flags_;  // [0]: positions out of range, [1]: slots out of range
  View qx_, qy_, kx_, ky_, v_;
  rope::PagedCache<C> k_cache_, v_cache_;
  std::int64_t k_at_ = 0, v_at_ = 0;
  std::int64_t q8_at_ = 0, q8_token_stride_ = 0, q8_head_stride_ = 0;
  std::int64_t rows_ = 0, stride_ = 0, sin_at_ = 0, axis_stride_ = 0, weight_k_at_ = 0;
  std::vector<std::vector<std::int64_t>> positions_;
  std::vector<std::int64_t> slots_;
  PrologueReference ref_;
  int vec_used_ = 0;
  std::int64_t ambiguous_ = 0;
  double rel_l2_ = 0;
};

/// Runs configuration `cfg` with tensor type T on `backend`, picking the cache and weight types
/// from it among those this test program compiles (the launcher's instances per (T, C, W) are
/// many): bf16 with C in {bf16, FP8} and W in {bf16, float}; fp16 with an FP8 cache (C = FP8,
/// also without a cache) and W = fp16; float with C = W = float.
template <typename T>
::testing::AssertionResult run_prologue(const PrologueConfig& cfg, Backend backend, std::uint64_t salt = 0) {
  using Fp8 = __nv_fp8_e4m3;
  const bool fp8 = cfg.cache == PrologueCache::kFp8;
  const bool float_weights = cfg.norm != PrologueNorm::kNone && cfg.float_weights;
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    if (fp8) {
      return float_weights ? PrologueCase<T, Fp8, float>(cfg, salt).run(backend) : PrologueCase<T, Fp8, T>(cfg, salt).run(backend);
    }
    return float_weights ? PrologueCase<T, T, float>(cfg, salt).run(backend) : PrologueCase<T, T, T>(cfg, salt).run(backend);
  } else if constexpr (std::is_same<T, __half>::value) {
    if (cfg.cache == PrologueCache::kSameType || float_weights) {
      return ::testing::AssertionFailure() << "fp16 cases run with an FP8 cache (or none) and fp16 weights here: "
                                           << cfg.describe();
    }
    return PrologueCase<T, Fp8, T>(cfg, salt).run(backend);
  } else {
    static_assert(std::is_same<T, float>::value, "float, __half or __nv_bfloat16");
    if (fp8) return ::testing::AssertionFailure() << "float cases run without FP8 caches here: " << cfg.describe();
    return PrologueCase<float, float, float>(cfg, salt).run(backend);
  }
}

}  // namespace rope_test
