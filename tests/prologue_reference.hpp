// SPDX-License-Identifier: MIT
#pragma once
// The CPU reference of the attention prologue, in double precision, composed from the references
// of its stages as the separate launches would run in sequence: qk_norm_reference.hpp's per-head
// RMSNorm over all head_dim elements, reference.hpp's rotation (with M-RoPE's per-pair axes
// written here from the model code's rules, not the library's), and kv_append_reference.hpp's
// slots and FP8 E4M3 codes. Nothing is rounded here; a value goes to T once (y, a same-type cache
// row) and from that rounded value to FP8 (`fp8_code`), as the library and the unfused engines
// store it.

#include <cmath>
#include <cstdint>
#include <vector>

#include <rope/detail/device/vector.cuh>

#include "kv_append_reference.hpp"
#include "qk_norm_reference.hpp"
#include "reference.hpp"

namespace rope_test {

/// Everything the prologue's reference needs, as plain host values.
struct PrologueReference {
  /// The rotation: reference.hpp's input, its positions those of axis 0.
  ReferenceInput rope;
  /// Multi-axis positions (M-RoPE): axes 2 or 3, each axis's positions, and which axis each
  /// frequency takes. With one axis `per_axis` is empty and `rope` alone is used.
  int axes = 1;
  bool interleaved_sections = false;
  int sections[3] = {0, 0, 0};
  std::vector<ReferenceInput> per_axis;  ///< `rope` with positions[t] of axis a (multi-axis only)
  /// The norm (optional): weights of q and of k as stored, eps, and w or 1 + w.
  bool norm = false;
  bool one_plus = false;
  double eps = 0.0;
  std::vector<double> q_weight, k_weight;

  /// Sets the multi-axis positions: `positions[a][t]` for a < axes (axis 0's become rope's).
  void set_axes(int n, bool interleaved, const int (&s)[3], const std::vector<std::vector<std::int64_t>>& positions) {
    axes = n;
    interleaved_sections = interleaved;
    for (int a = 0; a < 3; ++a) sections[a] = s[a];
    rope.positions = positions[0];
    per_axis.clear();
    if (n == 1) return;
    for (int a = 0; a < n; ++a) {
      per_axis.push_back(rope);
      per_axis.back().positions = positions[static_cast<std::size_t>(a)];
    }
  }
};

/// The axis frequency j takes (M-RoPE), from the model code: Qwen2-VL's consecutive chunks of
/// mrope_section, or Qwen3-VL's apply_interleaved_mrope (j % 3 == 1 below 3 * s1 is the height
/// axis, j % 3 == 2 below 3 * s2 the width axis, the rest temporal).
inline int reference_axis(const PrologueReference& ref, int j) {
  if (ref.interleaved_sections) {
    if (j % 3 == 1 && j < 3 * ref.sections[1]) return 1;
    if (j % 3 == 2 && j < 3 * ref.sections[2]) return 2;
    return 0;
  }
  int end = 0;
  for (int a = 0; a < ref.axes; ++a) {
    end += ref.sections[a];
    if (j < end) return a;
  }
  return ref.axes - 1;
}

/// Whether token t is written at all: every axis's position has a table row (computed: always).
inline bool prologue_position_valid(const PrologueReference& ref, std::int64_t t) {
  if (ref.axes == 1) return position_valid(ref.rope, t);
  for (const ReferenceInput& axis : ref.per_axis) {
    if (!position_valid(axis, t)) return false;
  }
  return true;
}

/// One head of token t (`is_q`: q's, else k's), head_dim values of x in double, through the
/// prologue: normalized (with the norm: over all head_dim elements, tail included), then rotated
/// (each pair at the position of its frequency's axis), into out. The tail is normalized, not
/// rotated. `rotated_in` (optional) receives what the rotation took: x, or x normalized.
inline void reference_prologue_head(const PrologueReference& ref, std::int64_t t, bool is_q, const double* x,
                                    double* out, std::vector<double>* rotated_in = nullptr) {
  const int dim = ref.rope.head_dim;
  std::vector<double> normalized(x, x + dim);
  if (ref.norm) {
    reference_rms_norm(x, dim, (is_q ? ref.q_weight : ref.k_weight).data(), ref.eps, ref.one_plus, normalized.data());
  }
  if (rotated_in != nullptr) *rotated_in = normalized;
  if (ref.axes == 1) {
    reference_head(ref.rope, t, normalized.data(), out);
    return;
  }
  // M-RoPE: the head rotated at each axis's position (reference.hpp's rotation), each pair then
  // taken from its own axis's result.
  std::vector<std::vector<double>> rotated(ref.per_axis.size(), std::vector<double>(static_cast<std::size_t>(dim)));
  for (std::size_t a = 0; a < ref.per_axis.size(); ++a) reference_head(ref.per_axis[a], t, normalized.data(), rotated[a].data());
  for (int d = 0; d < dim; ++d) out[d] = rotated[0][d];  // the tail (and axis 0's pairs)
  for (int i = 0; i < ref.rope.rotary_dim / 2; ++i) {
    int a, b;
    pair_indices(ref.rope, i, a, b);
    const std::vector<double>& from = rotated[static_cast<std::size_t>(reference_axis(ref, i))];
    out[a] = from[a];
    out[b] = from[b];
  }
}

/// A bound on the fp32 computation's error in element d of a head (`in`: what the rotation took,
/// reference_prologue_head's `rotated_in`). A rotated element mixes the two inputs of its pair
/// (times the attention factor), a few ulp of them: 1e-6 of their magnitudes, as the append tests
/// bound it. With the norm the inputs carry the error of the inverse RMS too (the fp32 sum of
/// head_dim squares in the lanes' order, typically sqrt(head_dim) ulp, half of that after the
/// square root; the hardware's rsqrt, 2 ulp; the weight products): 1e-5. The FP8 checks accept
/// any code the result can have within this bound where it straddles a rounding boundary (of T
/// or of FP8).
inline double prologue_error_bound(const PrologueReference& ref, const std::vector<double>& in, int d) {
  const int rot = ref.rope.rotary_dim;
  const double relative = ref.norm ? 1e-5 : 1e-6;
  if (d >= rot) return ref.norm ? relative * std::fabs(in[d]) : 0.0;  // the tail: normalized, or copied exactly
  int a = d, b = d;
  pair_indices(ref.rope, ref.rope.interleaved ? d / 2 : d % (rot / 2), a, b);
  const double factor = std::fabs(ref.rope.attention_scaling) > 1.0 ? std::fabs(ref.rope.attention_scaling) : 1.0;
  return relative * factor * (std::fabs(in[a]) + std::fabs(in[b]));
}

/// The FP8 E4M3 code of reference value `want` as stored: rounded to T first (what y holds), then
/// divided by `scale` in fp32 (the double quotient rounded to float is IEEE fp32 division's
/// result: double holds more than twice float's bits) and quantized (saturated, nearest even).
template <typename T>
unsigned fp8_code(double want, double scale) {
  const double rounded = rope::detail::to_float(rope::detail::from_float<T>(static_cast<float>(want)));
  return e4m3_quantize(static_cast<float>(rounded / scale));
}

/// The FP8 code of a value already of T (a stored y, or v): exact, no rounding of the reference.
template <typename T>
unsigned fp8_code_of_stored(const T& stored, double scale) {
  return e4m3_quantize(static_cast<float>(static_cast<double>(rope::detail::to_float(stored)) / scale));
}

}  // namespace rope_test
