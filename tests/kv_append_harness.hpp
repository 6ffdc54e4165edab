// SPDX-License-Identifier: MIT
#pragma once
// One RoPE + KV-cache append case end to end: inputs, paged caches and slots for a configuration,
// run on the host (the per-token body through the launcher's validation and dispatch) or on the
// GPU (rope_forward_append), every output element and cache row checked against the double-
// precision reference, every element that must stay unwritten checked bit for bit.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <memory>
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
#include "kv_append_reference.hpp"
#include "reference.hpp"

namespace rope_test {

enum class CacheLayout {
  kNhd,          // vLLM: [blocks, block_size, heads, dim], k and v separate
  kHnd,          // FlashInfer: [blocks, heads, block_size, dim], k and v separate
  kHndKvInOne,   // FlashInfer's [pages, 2, heads, page_size, dim]: k and v alternate per block
  kPaddedNhd,    // NHD with padded heads and rows (strides that are not the dense ones)
};

struct AppendConfig {
  std::int64_t tokens = 9;
  int head_dim = 128;
  int rotary_dim = 0;  // 0: the whole head
  rope::Style style = rope::Style::kHalfSplit;
  int q_heads = 4;  // 0: k only
  int kv_heads = 2;
  bool in_place = false;
  bool k_write_back = true;  // false: k.y null, the rotated k goes to the cache only
  bool fused_qkv = false;    // q, k, v sliced out of one [T, Hq + 2 Hkv, D] buffer
  int misalign = 0;          // elements added to the q/k/v buffers' base pointers
  int cache_misalign = 0;    // elements added to the caches' base pointers
  CacheLayout layout = CacheLayout::kNhd;
  int block_size = 16;
  std::int64_t spare_blocks = 2;  // blocks beyond what the tokens need
  rope::SlotType slot_type = rope::SlotType::kInt64;
  int negative_slots = 0;      // tokens with slot -1 (padding): no cache write
  int out_of_range_slots = 0;  // tokens with a slot past the cache: no write, flag raised
  int out_of_range_positions = 0;  // table mode: tokens whose position is outside the table
  bool computed = false;
  float k_scale = 0.0025f, v_scale = 0.01f;  // FP8 caches only: some k values saturate at 448
  bool q_fp8 = false;      // FP8 cache only: q quantized into an FP8 buffer too (q_scale)
  bool q_to_y = true;      // with q_fp8: false leaves q.y null (q goes to the FP8 buffer only)
  float q_scale = 0.003f;  // some q values saturate
  int q_fp8_misalign = 0;  // bytes added to q_fp8's (otherwise 16-byte aligned) base
  int lanes = 0;     // host only: lanes per token (0: the launcher's choice)
  std::uint64_t data_seed = 0;

  std::string describe() const {
    std::ostringstream o;
    o << "tokens=" << tokens << " head_dim=" << head_dim << " rotary_dim=" << rotary_dim
      << " style=" << (style == rope::Style::kInterleaved ? "interleaved" : "half") << " q_heads=" << q_heads
      << " kv_heads=" << kv_heads << " in_place=" << in_place << " k_write_back=" << k_write_back
      << " fused_qkv=" << fused_qkv << " misalign=" << misalign << " cache_misalign=" << cache_misalign
      << " layout=" << static_cast<int>(layout) << " block_size=" << block_size << " spare_blocks=" << spare_blocks
      << " slot_type=" << static_cast<int>(slot_type) << " negative_slots=" << negative_slots
      << " out_of_range_slots=" << out_of_range_slots << " out_of_range_positions=" << out_of_range_positions
      << " computed=" << computed << " q_fp8=" << q_fp8 << " q_to_y=" << q_to_y
      << " q_fp8_misalign=" << q_fp8_misalign << " lanes=" << lanes;
    // FP8 scales (unused with a same-type cache) in hexadecimal: exact, 2^-64 included.
    o << std::hexfloat << " k_scale=" << k_scale << " v_scale=" << v_scale << " q_scale=" << q_scale
      << std::defaultfloat;
    if (data_seed != 0) o << " data_seed=" << data_seed;
    return o.str();
  }
};

/// Raw bits of a cache element (for "untouched" and FP8 checks).
template <typename E>
unsigned bits_of(const E& e) {
  unsigned b = 0;
  std::memcpy(&b, &e, sizeof(E));
  return b;
}

template <typename T, typename C>
class AppendCase {
 public:
  static constexpr bool kFp8 = std::is_same<C, __nv_fp8_e4m3>::value;

  explicit AppendCase(const AppendConfig& cfg, std::uint64_t salt = 0)
      : cfg_(cfg), rng_(cfg.data_seed != 0 ? cfg.data_seed : base_seed() ^ (salt * 0x9E3779B97F4A7C15ull)) {
    build();
  }

  ::testing::AssertionResult run(Backend backend) {
    if (!runs_cases_on(backend)) return fail() << "this test program runs no cases on this backend (tests/CMakeLists.txt)";
    const std::vector<T> tensors_before = tensors_.host;
    const std::vector<C> caches_before = caches_.host;
    if (backend == Backend::kGpu) {
      tensors_.upload();
      caches_.upload();
      table_.upload();
      inv_freq_.upload();
      positions_.upload();
      slots32_.upload();
      slots64_.upload();
      flags_.upload();
    }
    const rope::RopeParams<T> p = params(backend);
    const rope::KvCacheAppend<T, C> a = append(backend);
    cudaError_t err;
    if (backend == Backend::kGpu) {
#if defined(ROPE_TEST_HOST_ONLY)
      err = cudaErrorNotSupported;  // refused above
#else
      err = rope::rope_forward_append(p, a);
      if (err == cudaSuccess) err = cudaDeviceSynchronize();
#endif
      tensors_.download();
      caches_.download();
      flags_.download();
    } else {
#if defined(ROPE_TEST_GPU_ONLY)
      err = cudaErrorNotSupported;  // refused above
#else
      err = run_append_on_host(p, a, cfg_.lanes, &vec_used_);
#endif
    }
    if (err != cudaSuccess) {
      return fail() << "launch failed: " << cudaGetErrorString(err) << " / " << rope::last_error_message();
    }
    return check(tensors_before, caches_before);
  }

  int vec_used() const { return vec_used_; }
  std::int64_t fp8_ambiguous() const { return ambiguous_; }

 private:
  ::testing::AssertionResult fail() const {
    ::testing::AssertionResult r = ::testing::AssertionFailure();
    if (cfg_.data_seed == 0) r << "[ROPE_TEST_SEED=" << base_seed() << "] ";
    return r << (kFp8 ? "fp8 cache " : "") << cfg_.describe() << "\n  ";
  }

  int rotary_dim() const { return cfg_.rotary_dim == 0 ? cfg_.head_dim : cfg_.rotary_dim; }
  bool quantizes_q() const { return kFp8 && cfg_.q_fp8 && cfg_.q_heads > 0; }
  bool q_to_y() const { return !quantizes_q() || cfg_.q_to_y; }
  std::int64_t num_blocks() const {
    return (cfg_.tokens + cfg_.block_size - 1) / cfg_.block_size + cfg_.spare_blocks;
  }

  /// One [tokens, heads, dim] view inside tensors_: offsets in elements.
  struct View {
    int heads = 0;
    std::int64_t offset = 0, token_stride = 0, head_stride = 0;
    std::int64_t at(std::int64_t t, int h) const { return offset + t * token_stride + h * head_stride; }
  };

  void build() {
    const int D = cfg_.head_dim, hq = cfg_.q_heads, hkv = cfg_.kv_heads;
    const std::int64_t T_ = cfg_.tokens;
    // All tensors live in one host buffer (one device allocation), each region with guards around.
    std::int64_t used = kGuard + cfg_.misalign;
    auto region = [&](int heads, std::int64_t token_stride) {
      View v;
      v.heads = heads;
      v.offset = used;
      v.token_stride = token_stride;
      v.head_stride = D;
      used += T_ * token_stride + kGuard + 16;  // 16: keep the next region's alignment
      used += (16 - used % 16) % 16 + cfg_.misalign;
      return v;
    };
    if (cfg_.fused_qkv) {
      const std::int64_t ts = std::int64_t{hq + 2 * hkv} * D;
      const View x = region(hq + 2 * hkv, ts);
      const View y = cfg_.in_place ? x : region(hq + 2 * hkv, ts);
      qx_ = x, qy_ = y, kx_ = x, ky_ = y, v_ = x;
      qx_.heads = qy_.heads = hq;
      kx_.heads = ky_.heads = v_.heads = hkv;
      kx_.offset += std::int64_t{hq} * D, ky_.offset += std::int64_t{hq} * D;
      v_.offset += std::int64_t{hq + hkv} * D;
    } else {
      if (hq > 0) {
        qx_ = region(hq, std::int64_t{hq} * D);
        qy_ = cfg_.in_place ? qx_ : region(hq, std::int64_t{hq} * D);
      }
      kx_ = region(hkv, std::int64_t{hkv} * D);
      ky_ = cfg_.in_place ? kx_ : region(hkv, std::int64_t{hkv} * D);
      v_ = region(hkv, std::int64_t{hkv} * D);
    }
    tensors_.host.resize(static_cast<std::size_t>(used + kGuard));
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& e : tensors_.host) e = rope::detail::from_float<T>(u(rng_));
    // Outputs written out of place start as NaN, so an unwritten element shows.
    auto poison = [&](const View& y, const View& x) {
      if (y.offset == x.offset || y.heads == 0) return;
      for (std::int64_t t = 0; t < T_; ++t)
        for (int h = 0; h < y.heads; ++h)
          for (int d = 0; d < D; ++d) tensors_.host[y.at(t, h) + d] = rope::detail::from_float<T>(NAN);
    };
    poison(qy_, qx_);
    if (cfg_.k_write_back) poison(ky_, kx_);
    build_caches();
    build_positions();
    build_slots();
    flags_.host.assign(2, 0);
  }

  void build_caches() {
    const int D = cfg_.head_dim, hkv = cfg_.kv_heads, bs = cfg_.block_size;
    const std::int64_t nb = num_blocks();
    const std::int64_t at = kGuard + cfg_.cache_misalign;
    std::int64_t per_cache = 0;
    switch (cfg_.layout) {
      case CacheLayout::kNhd:
        k_cache_ = rope::nhd_paged_cache<C>(nullptr, bs, hkv, D);
        v_cache_ = k_cache_;
        per_cache = nb * k_cache_.block_stride;
        break;
      case CacheLayout::kHnd:
        k_cache_ = rope::hnd_paged_cache<C>(nullptr, bs, hkv, D);
        v_cache_ = k_cache_;
        per_cache = nb * k_cache_.block_stride;
        break;
      case CacheLayout::kHndKvInOne:
        k_cache_ = rope::hnd_paged_cache<C>(nullptr, bs, hkv, D);
        k_cache_.block_stride *= 2;  // [pages, 2, heads, page, dim]
        v_cache_ = k_cache_;
        per_cache = nb * k_cache_.block_stride;
        break;
      case CacheLayout::kPaddedNhd:
        k_cache_.head_stride = D + 16;
        k_cache_.row_stride = hkv * k_cache_.head_stride + 32;
        k_cache_.block_stride = bs * k_cache_.row_stride + 48;
        v_cache_ = k_cache_;
        per_cache = nb * k_cache_.block_stride;
        break;
    }
    k_at_ = at;
    v_at_ = cfg_.layout == CacheLayout::kHndKvInOne ? at + k_cache_.block_stride / 2 : at + per_cache + 64;
    std::int64_t total = (cfg_.layout == CacheLayout::kHndKvInOne ? at + per_cache : v_at_ + per_cache) + kGuard;
    if (quantizes_q()) {
      // q's FP8 output: [tokens, q_heads, D] with a padded token stride, after the caches.
      q8_token_stride_ = std::int64_t{cfg_.q_heads} * D + 32;
      q8_at_ = (total + 15) / 16 * 16 + cfg_.q_fp8_misalign;
      total = q8_at_ + cfg_.tokens * q8_token_stride_ + kGuard;
    }
    caches_.host.resize(static_cast<std::size_t>(total));
    // A recognisable, non-NaN sentinel in every element: any write shows.
    unsigned char sentinel[sizeof(C)];
    std::memset(sentinel, 0x3C, sizeof(C));
    for (auto& e : caches_.host) std::memcpy(&e, sentinel, sizeof(C));
  }

  void build_positions() {
    const int half = rotary_dim() / 2;
    ref_.tokens = cfg_.tokens;
    ref_.head_dim = cfg_.head_dim;
    ref_.rotary_dim = rotary_dim();
    ref_.interleaved = cfg_.style == rope::Style::kInterleaved;
    ref_.computed = cfg_.computed;
    ref_.attention_scaling = 1.0;
    rows_ = cfg_.tokens + 13;
    std::uniform_int_distribution<std::int64_t> pick(0, cfg_.computed ? 100000 : rows_ - 1);
    for (std::int64_t t = 0; t < cfg_.tokens; ++t) ref_.positions.push_back(pick(rng_));
    for (int i = 0; i < cfg_.out_of_range_positions && cfg_.tokens > 0; ++i) {
      const std::int64_t t = std::uniform_int_distribution<std::int64_t>(0, cfg_.tokens - 1)(rng_);
      ref_.positions[t] = i % 2 == 0 ? -1 - i : rows_ + i;
    }
    positions_.host = ref_.positions;
    if (positions_.host.empty()) positions_.host.push_back(0);
    inv_freq_.host.resize(static_cast<std::size_t>(half) + 4);
    for (int i = 0; i < half; ++i) {
      inv_freq_.host[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / rotary_dim()));
      ref_.inv_freq.push_back(inv_freq_.host[i]);
    }
    if (cfg_.computed) return;
    table_.host.assign(static_cast<std::size_t>(2 * rows_ * half + 8), 0.0f);
    ref_.table_rows = rows_;
    ref_.table_row_stride = half;
    std::uniform_real_distribution<double> angle(-3.2, 3.2);
    for (std::int64_t r = 0; r < rows_ * half; ++r) {
      const double a = angle(rng_);
      table_.host[r] = static_cast<float>(std::cos(a));
      table_.host[rows_ * half + r] = static_cast<float>(std::sin(a));
      ref_.cos_table.push_back(table_.host[r]);
      ref_.sin_table.push_back(table_.host[rows_ * half + r]);
    }
  }

  void build_slots() {
    // Distinct slots in random order (so no two tokens share a row), then padding and overflow.
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
    if (cfg_.q_heads > 0) {
      p.q = rope::strided_heads<T>(base + qx_.offset, q_to_y() ? base + qy_.offset : nullptr, qx_.heads,
                                   qx_.token_stride, qx_.head_stride);
    }
    p.k = rope::strided_heads<T>(base + kx_.offset, cfg_.k_write_back ? base + ky_.offset : nullptr, kx_.heads,
                                 kx_.token_stride, kx_.head_stride);
    p.cos_sin = cfg_.computed ? rope::computed_cos_sin(inv_freq_.base(b))
                              : rope::cos_sin_table<float>(table_.base(b), table_.base(b) + rows_ * (rotary_dim() / 2),
                                                           rows_, rotary_dim() / 2);
    p.positions = rope::positions(positions_.base(b));
    p.out_of_range_flag = flags_.base(b);
    return p;
  }

  rope::KvCacheAppend<T, C> append(Backend b) {
    rope::KvCacheAppend<T, C> a;
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
    if (kFp8) a.k_scale = cfg_.k_scale, a.v_scale = cfg_.v_scale;
    if constexpr (kFp8) {
      if (quantizes_q()) {
        a.q_fp8 = caches_.base(b) + q8_at_;
        a.q_fp8_token_stride = q8_token_stride_;
        a.q_fp8_head_stride = cfg_.head_dim;
        a.q_scale = cfg_.q_scale;
      }
    }
    a.slot_out_of_range_flag = flags_.base(b) + 1;
    return a;
  }

  /// The reference value of a cache element from the reference value `want` of k or v (exact for
  /// v and the pass-through tail, rotated otherwise; `error` bounds the fp32 computation's error).
  /// Same-type caches: a tolerance check. FP8: the code of the value rounded to T, as the library
  /// and the unfused engines store it; where `error` leaves the reference on either side of a
  /// rounding boundary (of T or of FP8), either code is accepted and counted.
  ::testing::AssertionResult check_cache(const C& got, double want, double error, double scale, const char* what,
                                         std::int64_t t, int h, int d) {
    if constexpr (kFp8) {
      auto code = [&](double v) {
        const double rounded = rope::detail::to_float(rope::detail::from_float<T>(static_cast<float>(v)));
        // x / scale is an fp32 division: its correctly rounded result is the double quotient
        // rounded to float (double holds more than twice float's bits).
        return e4m3_quantize(static_cast<float>(rounded / scale));
      };
      const unsigned exact = code(want), g = bits_of(got);
      if (g == exact) return ::testing::AssertionSuccess();
      const unsigned low = code(want - error), high = code(want + error);
      if (low != high && (g == low || g == high)) {
        ++ambiguous_;
        return ::testing::AssertionSuccess();
      }
      return fail() << what << " cache code " << g << " want " << exact << " ("
                    << want / scale << " scaled) at token " << t << " head " << h << " dim " << d;
    } else {
      (void)error;
      (void)scale;
      const double g = rope::detail::to_float(got);
      if (!(std::fabs(g - want) <= Tolerance<T>::kMaxAbs)) {
        return fail() << what << " cache " << g << " want " << want << " at token " << t << " head " << h << " dim " << d;
      }
      return ::testing::AssertionSuccess();
    }
  }

  ::testing::AssertionResult check(const std::vector<T>& before, const std::vector<C>& caches_before) {
    const int D = cfg_.head_dim;
    std::vector<char> tensor_written(tensors_.host.size(), 0), cache_written(caches_.host.size(), 0);
    std::vector<double> x(D), want(D), bound(D);
    bool any_position_out = false, any_slot_out = false;
    double err2 = 0, ref2 = 0;
    const std::int64_t nb = num_blocks();
    for (std::int64_t t = 0; t < cfg_.tokens; ++t) {
      const bool valid = position_valid(ref_, t);
      any_position_out |= !valid;
      std::int64_t block = 0, row = 0;
      const bool has_row = slot_row(slots_[t], nb, cfg_.block_size, block, row);
      any_slot_out |= slots_[t] >= nb * cfg_.block_size;
      if (!valid) continue;  // nothing of this token may be written
      // q and k: the rotation to y (where y is written).
      for (int which = 0; which < 2; ++which) {
        const View& xv = which == 0 ? qx_ : kx_;
        const View& yv = which == 0 ? qy_ : ky_;
        for (int h = 0; h < xv.heads; ++h) {
          for (int d = 0; d < D; ++d) x[d] = rope::detail::to_float(before[xv.at(t, h) + d]);
          reference_head(ref_, t, x.data(), want.data());
          for (int d = 0; d < D; ++d) {
            // fp32 error of the kernel's rotation of this element (pairs mix two inputs).
            int a = d, b = d;
            if (d < rotary_dim()) {
              const int i = ref_.interleaved ? d / 2 : d % (rotary_dim() / 2);
              pair_indices(ref_, i, a, b);
            }
            bound[d] = d < rotary_dim() ? 1e-6 * (std::fabs(x[a]) + std::fabs(x[b])) : 0.0;
          }
          const bool writes_y = which == 0 ? q_to_y() : cfg_.k_write_back;
          if (writes_y) {
            for (int d = 0; d < D; ++d) {
              const std::int64_t i = yv.at(t, h) + d;
              tensor_written[i] = 1;
              const double got = rope::detail::to_float(tensors_.host[i]);
              if (std::isnan(got)) return fail() << "NaN (unwritten?) in " << (which ? "k" : "q") << " at token " << t;
              err2 += (got - want[d]) * (got - want[d]);
              ref2 += want[d] * want[d];
              if (!(std::fabs(got - want[d]) <= Tolerance<T>::kMaxAbs)) {
                return fail() << (which ? "k" : "q") << " " << got << " want " << want[d] << " at token " << t
                              << " head " << h << " dim " << d;
              }
            }
          }
          if (which == 0 && quantizes_q()) {
            const std::int64_t base = q8_at_ + t * q8_token_stride_ + std::int64_t{h} * D;
            for (int d = 0; d < D; ++d) {
              cache_written[base + d] = 1;
              ::testing::AssertionResult r = check_cache(caches_.host[base + d], want[d], bound[d], cfg_.q_scale, "q fp8", t, h, d);
              if (!r) return r;
            }
          }
          if (which == 1 && has_row) {
            const std::int64_t base = k_at_ + block * k_cache_.block_stride + row * k_cache_.row_stride + h * k_cache_.head_stride;
            for (int d = 0; d < D; ++d) {
              cache_written[base + d] = 1;
              ::testing::AssertionResult r = check_cache(caches_.host[base + d], want[d], bound[d], cfg_.k_scale, "k", t, h, d);
              if (!r) return r;
              // Same type with write-back: the cache holds exactly the bits of y.
              if (!kFp8 && cfg_.k_write_back &&
                  std::memcmp(&caches_.host[base + d], &tensors_.host[ky_.at(t, h) + d], sizeof(T)) != 0) {
                return fail() << "k cache bits differ from k.y at token " << t << " head " << h << " dim " << d;
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
            const double v = rope::detail::to_float(before[v_.at(t, h) + d]);
            ::testing::AssertionResult r = check_cache(caches_.host[base + d], v, 0.0, cfg_.v_scale, "v", t, h, d);
            if (!r) return r;
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
    if (flags_.host[0] != (any_position_out ? 1 : 0)) return fail() << "out_of_range_flag is " << flags_.host[0];
    if (flags_.host[1] != (any_slot_out ? 1 : 0)) return fail() << "slot_out_of_range_flag is " << flags_.host[1];
    const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
    if (!(rel <= Tolerance<T>::kRelL2)) return fail() << "relative L2 error of q/k " << rel;
    return ::testing::AssertionSuccess();
  }

  AppendConfig cfg_;
  std::mt19937_64 rng_;
  Mirror<T> tensors_;
  Mirror<C> caches_;
  Mirror<float> table_, inv_freq_;
  Mirror<std::int64_t> positions_;
  Mirror<std::int32_t> slots32_;
  Mirror<std::int64_t> slots64_;
  Mirror<int> flags_;  // [0]: positions out of range, [1]: slots out of range
  std::int64_t q8_at_ = 0, q8_token_stride_ = 0;  // q's FP8 output in caches_ (quantizes_q())
  View qx_, qy_, kx_, ky_, v_;
  rope::PagedCache<C> k_cache_, v_cache_;
  std::int64_t k_at_ = 0, v_at_ = 0, rows_ = 0;
  std::vector<std::int64_t> slots_;
  ReferenceInput ref_;
  int vec_used_ = 0;
  std::int64_t ambiguous_ = 0;
};

}  // namespace rope_test
