// SPDX-License-Identifier: MIT
#pragma once
// The attention prologue's configurations, one list for every backend: every fusion (norm x cache
// x q to FP8 x k write-back) over a set of shapes, each fusion with M-RoPE in both section
// layouts; the host program runs them through run_prologue_on_host, the GPU program through
// rope::rope_attention_prologue.

#include <cstdint>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include "prologue_harness.hpp"

namespace rope_test {

/// One fusion: which stages a prologue launch has around the rotation.
struct Fusion {
  PrologueNorm norm = PrologueNorm::kNone;
  bool float_weights = false;
  PrologueCache cache = PrologueCache::kNone;
  bool unit_scales = false;  // FP8 cache: k_scale = v_scale = q_scale = 1 (else not powers of two)
  PrologueQFp8 q_fp8 = PrologueQFp8::kNone;
  bool k_write_back = true;

  /// Applies the fusion to a shape. The FP8 scales: 1, or the harness's inexact ones (some
  /// values saturate); q's scale without an FP8 cache: a power of two (no cache) or inexact.
  PrologueConfig on(PrologueConfig c) const {
    c.norm = norm;
    c.float_weights = float_weights;
    c.cache = cache;
    c.q_fp8 = q_fp8;
    c.k_write_back = cache == PrologueCache::kNone || k_write_back;
    if (cache == PrologueCache::kFp8) {
      if (unit_scales) c.k_scale = c.v_scale = c.q_scale = 1.0f;
    } else if (cache == PrologueCache::kNone) {
      c.q_scale = 0x1p-7f;
    }
    if (cache != PrologueCache::kNone && c.kv_heads == 0) c.kv_heads = 1;  // a cache needs k
    if (q_fp8 != PrologueQFp8::kNone && c.q_heads == 0) c.q_heads = 1;  // q_fp8 needs q
    return c;
  }
};

/// Every fusion of the norms `norms` (each: kind and whether the weights are float) and caches
/// `caches` (an FP8 cache twice: unit and inexact scales), with each q_fp8 option and, where there
/// is a cache, k written back or not.
inline std::vector<Fusion> fusions(const std::vector<std::pair<PrologueNorm, bool>>& norms,
                                   const std::vector<PrologueCache>& caches) {
  std::vector<Fusion> v;
  for (const auto& n : norms) {
    for (PrologueCache cache : caches) {
      for (bool unit : {false, true}) {
        if (unit && cache != PrologueCache::kFp8) continue;
        for (PrologueQFp8 q : {PrologueQFp8::kNone, PrologueQFp8::kWithY, PrologueQFp8::kOnly}) {
          for (bool write_back : {true, false}) {
            if (!write_back && cache == PrologueCache::kNone) continue;
            Fusion f;
            f.norm = n.first;
            f.float_weights = n.second;
            f.cache = cache;
            f.unit_scales = unit;
            f.q_fp8 = q;
            f.k_write_back = write_back;
            v.push_back(f);
          }
        }
      }
    }
  }
  return v;
}

/// Llama-3-8B's shape (32 q heads, 8 kv heads, 128 dims), half-split, fp32 table, int64 positions.
inline PrologueConfig llama_shape(std::int64_t tokens) {
  PrologueConfig c;
  c.tokens = tokens;
  c.q_heads = 32;
  c.kv_heads = 8;
  c.head_dim = 128;
  return c;
}

/// The shapes every fusion runs: decode and prefill of Llama's shape, small and odd heads, the
/// scalar path (whose norm lanes walk columns), partial rotary, k only or q only, the double
/// width (two heads), and M-RoPE with three axes in both section layouts (column-aligned
/// sections, sections split inside columns).
inline std::vector<PrologueConfig> prologue_shapes() {
  std::vector<PrologueConfig> v;
  v.push_back(llama_shape(1));  // decode
  {
    PrologueConfig c = llama_shape(13);  // prefill: interleaved, partial, table in T, int32, HND
    c.style = rope::Style::kInterleaved;
    c.rotary_dim = 64;
    c.table_in_tensor_type = true;
    c.position_type = rope::PositionType::kInt32;
    c.slot_type = rope::SlotType::kInt32;
    c.layout = CacheLayout::kHnd;
    c.block_size = 8;
    c.negative_slots = 1;
    c.out_of_range_slots = 1;
    c.out_of_range_positions = 1;
    v.push_back(c);
  }
  {
    PrologueConfig c;  // small GQA: computed, no positions array, partial, fused QKV in place
    c.head_dim = 64;
    c.rotary_dim = 32;
    c.q_heads = 4;
    c.kv_heads = 2;
    c.tokens = 7;
    c.computed = true;
    c.position_type = rope::PositionType::kNone;
    c.fused_qkv = true;
    c.in_place = true;
    c.layout = CacheLayout::kHndKvInOne;
    c.block_size = 4;
    v.push_back(c);
  }
  {
    PrologueConfig c;  // Phi-like 80 dims (columns no power of two: spare norm lanes), padded
    c.head_dim = 80;
    c.q_heads = 3;
    c.kv_heads = 1;
    c.tokens = 5;
    c.style = rope::Style::kInterleaved;
    c.layout = CacheLayout::kPaddedNhd;
    c.head_pad = 16;
    c.attention_scaling = 0.875f;
    c.q_fp8_head_pad = 16;
    v.push_back(c);
  }
  {
    PrologueConfig c;  // misaligned: one element per access, so norm lanes walk columns; a tail
    c.head_dim = 128;
    c.rotary_dim = 96;
    c.q_heads = 2;
    c.kv_heads = 2;
    c.tokens = 4;
    c.misalign = 1;
    c.cache_misalign = 1;
    c.q_fp8_misalign = 3;
    c.block_size = 1;
    v.push_back(c);
  }
  {
    PrologueConfig c;  // k only, then q only (Fusion::on gives them q or k where a stage needs it)
    c.head_dim = 128;
    c.q_heads = 0;
    c.kv_heads = 4;
    c.tokens = 6;
    c.computed = true;
    c.style = rope::Style::kInterleaved;
    v.push_back(c);
    c.q_heads = 6;
    c.kv_heads = 0;
    c.style = rope::Style::kHalfSplit;
    c.computed = false;
    c.position_type = rope::PositionType::kInt32;
    v.push_back(c);
  }
  {
    PrologueConfig c;  // two heads: the double width where there is no norm
    c.q_heads = 1;
    c.kv_heads = 1;
    c.tokens = 3;
    c.computed = true;
    v.push_back(c);
  }
  {
    PrologueConfig c;  // M-RoPE, Qwen2-VL: contiguous sections 16/24/24, a position off the table
    c.q_heads = 4;
    c.kv_heads = 2;
    c.tokens = 11;
    c.axes = 3;
    c.sections[0] = 16, c.sections[1] = 24, c.sections[2] = 24;
    c.out_of_range_positions = 2;
    v.push_back(c);
  }
  {
    PrologueConfig c;  // M-RoPE, Qwen3-VL: interleaved sections 24/20/20, computed, int32
    c.q_heads = 4;
    c.kv_heads = 2;
    c.tokens = 9;
    c.axes = 3;
    c.sections_layout = rope::AxisSections::kInterleaved;
    c.sections[0] = 24, c.sections[1] = 20, c.sections[2] = 20;
    c.computed = true;
    c.position_type = rope::PositionType::kInt32;
    c.style = rope::Style::kInterleaved;
    v.push_back(c);
  }
  {
    PrologueConfig c;  // M-RoPE with sections inside columns (per-pair lookup), partial, table in T
    c.head_dim = 80;
    c.rotary_dim = 64;
    c.q_heads = 2;
    c.kv_heads = 2;
    c.tokens = 5;
    c.axes = 3;
    c.sections[0] = 10, c.sections[1] = 11, c.sections[2] = 11;
    c.table_in_tensor_type = true;
    v.push_back(c);
  }
  return v;
}

/// The M-RoPE shapes of prologue_shapes (three axes, both section layouts).
inline std::vector<PrologueConfig> mrope_shapes() {
  std::vector<PrologueConfig> v;
  for (const PrologueConfig& c : prologue_shapes()) {
    if (c.axes > 1) v.push_back(c);
  }
  return v;
}

/// Runs every shape with every fusion on `backend`; the fusion's M-RoPE cases are among them.
template <typename T>
void expect_fusions(const std::vector<Fusion>& fs, const std::vector<PrologueConfig>& shapes, Backend backend) {
  std::uint64_t salt = 0;
  for (const Fusion& f : fs) {
    for (const PrologueConfig& shape : shapes) {
      EXPECT_TRUE(run_prologue<T>(f.on(shape), backend, ++salt));
    }
  }
}

/// The norms of bf16 cases: none, w and 1 + w, each with weights of T and of float.
inline std::vector<std::pair<PrologueNorm, bool>> norm_kind(PrologueNorm n) {
  if (n == PrologueNorm::kNone) return {{n, false}};
  return {{n, false}, {n, true}};
}

/// The large cases (Llama's shape, table mode with positions, full rotary: rows walk tokens when
/// the launch has at least 1024 blocks, and norm launches stage the next token): `tokens` tokens
/// of the fusions that matter most.
inline std::vector<PrologueConfig> large_cases(std::int64_t tokens, std::int64_t modelled_resident) {
  std::vector<PrologueConfig> v;
  PrologueConfig c = llama_shape(tokens);
  c.modelled_resident = modelled_resident;
  c.negative_slots = 3;
  Fusion f;  // Qwen3 with an FP8 cache and FP8 q
  f.norm = PrologueNorm::kMultiply;
  f.float_weights = true;
  f.cache = PrologueCache::kFp8;
  f.q_fp8 = PrologueQFp8::kWithY;
  f.k_write_back = false;
  v.push_back(f.on(c));
  f.norm = PrologueNorm::kOnePlus;  // Gemma, bf16 cache, q to FP8 only, k written back
  f.float_weights = false;
  f.cache = PrologueCache::kSameType;
  f.q_fp8 = PrologueQFp8::kOnly;
  f.k_write_back = true;
  v.push_back(f.on(c));
  f = Fusion{};  // no norm: FP8 cache and q to FP8 only
  f.cache = PrologueCache::kFp8;
  f.q_fp8 = PrologueQFp8::kOnly;
  v.push_back(f.on(c));
  f = Fusion{};  // norm and q to FP8, no cache
  f.norm = PrologueNorm::kMultiply;
  f.q_fp8 = PrologueQFp8::kWithY;
  v.push_back(f.on(c));
  return v;
}

}  // namespace rope_test

/// Defines the fixed prologue tests of suite `Suite` on `backend`; `prelude` runs first (a skip).
/// bf16 runs every fusion (norms w and 1 + w with weights of T and float; caches none, bf16, FP8
/// with unit and inexact scales); fp16 the FP8-cache fusions; float the float-cache ones.
#define ROPE_DEFINE_PROLOGUE_TESTS(Suite, backend, prelude)                                                        \
  TEST(Suite, Bf16NoNorm) {                                                                                      \
    prelude;                                                                                                     \
    using namespace ::rope_test;                                                                                 \
    expect_fusions<__nv_bfloat16>(                                                                               \
        fusions(norm_kind(PrologueNorm::kNone), {PrologueCache::kNone, PrologueCache::kSameType, PrologueCache::kFp8}), \
        prologue_shapes(), backend);                                                                             \
  }                                                                                                              \
  TEST(Suite, Bf16NormMultiply) {                                                                                \
    prelude;                                                                                                     \
    using namespace ::rope_test;                                                                                 \
    expect_fusions<__nv_bfloat16>(                                                                               \
        fusions(norm_kind(PrologueNorm::kMultiply), {PrologueCache::kNone, PrologueCache::kSameType, PrologueCache::kFp8}), \
        prologue_shapes(), backend);                                                                             \
  }                                                                                                              \
  TEST(Suite, Bf16NormOnePlus) {                                                                                 \
    prelude;                                                                                                     \
    using namespace ::rope_test;                                                                                 \
    expect_fusions<__nv_bfloat16>(                                                                               \
        fusions(norm_kind(PrologueNorm::kOnePlus), {PrologueCache::kNone, PrologueCache::kSameType, PrologueCache::kFp8}), \
        prologue_shapes(), backend);                                                                             \
  }                                                                                                              \
  TEST(Suite, Fp16Fp8Cache) {                                                                                    \
    prelude;                                                                                                     \
    using namespace ::rope_test;                                                                                 \
    expect_fusions<__half>(fusions({{PrologueNorm::kNone, false}, {PrologueNorm::kMultiply, false},             \
                                    {PrologueNorm::kOnePlus, false}},                                            \
                                   {PrologueCache::kNone, PrologueCache::kFp8}),                                 \
                           {llama_shape(1), prologue_shapes()[1], prologue_shapes()[4], mrope_shapes()[0],       \
                            mrope_shapes()[1]},                                                                  \
                           backend);                                                                             \
  }                                                                                                              \
  TEST(Suite, Fp32FloatCache) {                                                                                  \
    prelude;                                                                                                     \
    using namespace ::rope_test;                                                                                 \
    expect_fusions<float>(fusions({{PrologueNorm::kNone, false}, {PrologueNorm::kMultiply, true},               \
                                   {PrologueNorm::kOnePlus, true}},                                              \
                                  {PrologueCache::kNone, PrologueCache::kSameType}),                             \
                          {llama_shape(1), prologue_shapes()[2], prologue_shapes()[4], mrope_shapes()[0],        \
                           mrope_shapes()[1]},                                                                   \
                          backend);                                                                              \
  }
