// SPDX-License-Identifier: MIT
#pragma once
// The configurations every backend is checked on. Host tests (CI) and GPU tests run the same
// lists, so what CI proves about the per-token body the GPU suite proves about the kernel.

#include <cstdint>
#include <vector>

#include "harness.hpp"

namespace rope_test {

/// Runs every configuration on `backend`; each failure reports the seed and the configuration.
template <typename T>
void expect_all(const std::vector<CaseConfig>& configs, Backend backend) {
  std::uint64_t salt = 0;
  for (const CaseConfig& cfg : configs) {
    Case<T> c(cfg, ++salt);
    EXPECT_TRUE(c.run(backend));
    // On the host, plain launches of few tokens run a second time through the per-token body:
    // the launcher gives them head groups, and the per-token body's few-token shapes stay tested.
    if (backend == Backend::kHost && !cfg.qk_norm && cfg.lanes == 0 &&
        cfg.tokens <= rope::detail::kHeadGroupMaxTokens) {
      CaseConfig body = cfg;
      body.host_path = HostPath::kPerTokenBody;
      Case<T> again(body, salt);
      EXPECT_TRUE(again.run(backend));
    }
  }
}

/// Token counts for a backend: the host loops in software, so it gets the smaller ones.
inline std::vector<std::int64_t> token_counts(Backend b) {
  if (b == Backend::kHost) return {1, 3, 17, 130};
  return {1, 3, 17, 130, 1000, 4099, 100000};
}

inline std::vector<CaseConfig> head_dim_cases() {
  // Powers of two and the sizes real models use, plus sizes whose halves defeat 16-byte vectors.
  std::vector<CaseConfig> v;
  for (int d : {2, 6, 64, 72, 80, 96, 112, 128, 136, 160, 192, 256}) {
    CaseConfig c;
    c.head_dim = d;
    c.q_heads = 3;
    c.tokens = 9;
    v.push_back(c);
  }
  return v;
}

inline std::vector<CaseConfig> head_count_cases() {
  std::vector<CaseConfig> v;
  for (int h : {1, 2, 5, 8, 17, 32, 40}) {
    CaseConfig c;
    c.q_heads = h;
    c.tokens = 5;
    v.push_back(c);
  }
  return v;
}

inline std::vector<CaseConfig> token_count_cases(Backend b) {
  std::vector<CaseConfig> v;
  for (std::int64_t t : token_counts(b)) {
    for (int d : {64, 128}) {
      CaseConfig c;
      c.tokens = t;
      c.head_dim = d;
      c.q_heads = d == 64 ? 1 : 2;
      v.push_back(c);
    }
  }
  return v;
}

inline std::vector<CaseConfig> padded_stride_cases() {
  std::vector<CaseConfig> v;
  for (int hp : {0, 1, 8, 24}) {
    for (int tp : {1, 8, 40}) {
      CaseConfig c;
      c.q_heads = 4;
      c.tokens = 11;
      c.head_pad = hp;
      c.token_pad = tp;
      c.y_token_pad = 16 - hp;
      v.push_back(c);
    }
  }
  return v;
}

inline std::vector<CaseConfig> misaligned_cases() {
  std::vector<CaseConfig> v;
  for (int m : {1, 2, 3, 4}) {
    for (int tm : {0, 1, 2}) {
      CaseConfig c;
      c.q_heads = 3;
      c.tokens = 7;
      c.misalign = m;
      c.table_misalign = tm;
      v.push_back(c);
    }
  }
  return v;
}

inline std::vector<CaseConfig> in_place_cases() {
  std::vector<CaseConfig> v;
  for (int d : {64, 128, 72}) {
    for (int pad : {0, 5}) {
      CaseConfig c;
      c.head_dim = d;
      c.q_heads = 6;
      c.tokens = 13;
      c.in_place = true;
      c.head_pad = pad;
      c.token_pad = pad;
      v.push_back(c);
    }
  }
  return v;
}

inline std::vector<CaseConfig> position_cases(rope::PositionType type) {
  // Random positions: repeated and out of order; tables with fewer and more rows than tokens.
  std::vector<CaseConfig> v;
  for (std::int64_t rows : {std::int64_t{3}, std::int64_t{50}, std::int64_t{5000}}) {
    for (bool in_place : {false, true}) {
      CaseConfig c;
      c.position_type = type;
      c.table_rows = rows;
      c.tokens = 37;
      c.q_heads = 2;
      c.in_place = in_place;
      v.push_back(c);
    }
  }
  return v;
}

/// Vector-width edge cases: every head_dim from 2 to 40 with heads and padding that vary.
inline std::vector<CaseConfig> small_head_dim_sweep() {
  std::vector<CaseConfig> v;
  for (int d = 2; d <= 40; d += 2) {
    CaseConfig c;
    c.head_dim = d;
    c.q_heads = 1 + d % 5;
    c.head_pad = d % 3;
    c.tokens = 6;
    v.push_back(c);
  }
  return v;
}

inline std::vector<CaseConfig> gqa_cases() {
  // q and k in one launch with the head counts of real models (MHA, GQA, MQA).
  std::vector<CaseConfig> v;
  const int pairs[][2] = {{32, 8}, {28, 4}, {64, 8}, {8, 1}, {4, 4}};
  for (auto& qk : pairs) {
    for (bool fused : {false, true}) {
      CaseConfig c;
      c.q_heads = qk[0];
      c.k_heads = qk[1];
      c.tokens = 5;
      c.fused_qkv = fused;
      c.in_place = fused;
      c.position_type = rope::PositionType::kInt64;
      c.table_rows = 64;
      v.push_back(c);
    }
  }
  return v;
}

/// Launches that rotate only q or only k (the other tensor absent), as layers that rotate one of
/// them do: every layout option the lone tensor can have.
inline std::vector<CaseConfig> q_or_k_only_cases() {
  std::vector<CaseConfig> v;
  for (bool k_only : {false, true}) {
    for (int variant = 0; variant < 6; ++variant) {
      CaseConfig c;
      c.q_heads = k_only ? 0 : 4;
      c.k_heads = k_only ? 2 : 0;
      c.tokens = 7;
      c.in_place = variant % 2 == 1;
      c.fused_qkv = variant == 2 || variant == 3;  // a slice of fused QKV (v and the other tensor untouched)
      if (variant == 4) c.rotary_dim = 32, c.style = rope::Style::kInterleaved;
      if (variant == 5) c.misalign = 1, c.position_type = rope::PositionType::kInt32, c.table_rows = 50;
      if (variant == 2) c.computed = true;
      v.push_back(c);
    }
    CaseConfig one_head;  // a single head: the double-width access
    one_head.q_heads = k_only ? 0 : 1;
    one_head.k_heads = k_only ? 1 : 0;
    one_head.tokens = 5;
    v.push_back(one_head);
  }
  return v;
}

inline std::vector<CaseConfig> interleaved_cases() {
  std::vector<CaseConfig> v;
  for (int d : {2, 6, 64, 80, 128, 136, 256}) {
    for (int m : {0, 1}) {
      CaseConfig c;
      c.style = rope::Style::kInterleaved;
      c.head_dim = d;
      c.q_heads = 3;
      c.k_heads = 1;
      c.tokens = 7;
      c.misalign = m;
      v.push_back(c);
    }
  }
  return v;
}

inline std::vector<CaseConfig> partial_rotary_cases() {
  // GPT-NeoX (rotary_pct 0.25 of 128 -> 32), Phi-2 (32 of 80), ChatGLM (64 of 128), odd tails.
  std::vector<CaseConfig> v;
  const int dims[][2] = {{128, 32}, {80, 32}, {128, 64}, {64, 2}, {72, 16}, {96, 94}, {10, 4}};
  for (auto& dr : dims) {
    for (int style = 0; style < 2; ++style) {
      for (bool in_place : {false, true}) {
        CaseConfig c;
        c.head_dim = dr[0];
        c.rotary_dim = dr[1];
        c.style = static_cast<rope::Style>(style);
        c.q_heads = 4;
        c.k_heads = 2;
        c.tokens = 5;
        c.in_place = in_place;
        v.push_back(c);
      }
    }
  }
  return v;
}

inline std::vector<CaseConfig> table_layout_cases() {
  // Separate, fused [cos | sin] rows (vLLM, FlashInfer) and HF duplicated halves; fp32 or T.
  std::vector<CaseConfig> v;
  for (auto layout : {TableLayout::kSeparate, TableLayout::kFused, TableLayout::kHfDuplicated}) {
    for (bool in_t : {false, true}) {
      for (int rot : {0, 32}) {
        CaseConfig c;
        c.table_layout = layout;
        c.table_in_tensor_type = in_t;
        c.rotary_dim = rot;
        c.q_heads = 4;
        c.k_heads = 2;
        c.tokens = 9;
        c.position_type = rope::PositionType::kInt32;
        c.table_rows = 100;
        // An attention factor on a plain table (YaRN's 1.2079 at factor 8) is applied, not ignored.
        c.attention_scaling = rot == 0 ? 1.0f : 1.2079f;
        v.push_back(c);
      }
    }
  }
  return v;
}

inline std::vector<CaseConfig> computed_cases() {
  // cos/sin computed in the kernel, positions up to 2^20 and past 10^6, scaled and not.
  std::vector<CaseConfig> v;
  for (std::int64_t max_pos : {std::int64_t{64}, std::int64_t{1} << 20, std::int64_t{1100000}}) {
    for (int style = 0; style < 2; ++style) {
      for (int d : {64, 128, 80}) {
        CaseConfig c;
        c.computed = true;
        c.position_type = rope::PositionType::kInt64;
        c.max_position = max_pos;
        c.style = static_cast<rope::Style>(style);
        c.head_dim = d;
        c.rotary_dim = d == 80 ? 32 : 0;
        c.q_heads = 4;
        c.k_heads = 1;
        c.tokens = 11;
        c.attention_scaling = max_pos == 64 ? 1.0f : 1.2079f;
        v.push_back(c);
      }
    }
  }
  CaseConfig no_positions;  // position = token index
  no_positions.computed = true;
  no_positions.tokens = 300;
  v.push_back(no_positions);
  return v;
}

inline std::vector<CaseConfig> backward_cases() {
  std::vector<CaseConfig> v;
  for (CaseConfig c : gqa_cases()) v.push_back(c);
  for (CaseConfig c : partial_rotary_cases()) v.push_back(c);
  for (CaseConfig c : computed_cases()) v.push_back(c);
  for (CaseConfig& c : v) c.backward = true;
  return v;
}

inline std::vector<CaseConfig> out_of_range_cases() {
  std::vector<CaseConfig> v;
  for (auto type : {rope::PositionType::kInt32, rope::PositionType::kInt64}) {
    for (bool in_place : {false, true}) {
      CaseConfig c;
      c.position_type = type;
      c.table_rows = 20;
      c.tokens = 40;
      c.q_heads = 2;
      c.k_heads = 1;
      c.out_of_range = 5;
      c.in_place = in_place;
      v.push_back(c);
    }
  }
  return v;
}

}  // namespace rope_test
