// SPDX-License-Identifier: MIT
// The torch.library schemas of rope_cuda's ops and their CUDA (and argument-checking CPU) kernels.
// Fake (meta) kernels and autograd are registered from Python (rope_cuda/_registrations.py).

#include <cstdint>
#include <optional>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/OptionalArrayRef.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include "apply.h"

namespace rope_cuda {
namespace {

using OptTensor = std::optional<at::Tensor>;
using OptIntList = at::OptionalIntArrayRef;

// Every op takes the schema's arguments in this order (see TORCH_LIBRARY below).
#define ROPE_OP_PARAMS                                                                                  \
  const at::Tensor &q, const OptTensor &k, const OptTensor &positions, const OptTensor &cos,            \
      const OptTensor &sin, const OptTensor &cos_sin_cache, const OptTensor &inv_freq,                  \
      double attention_scaling, bool interleaved, bool inverse, OptIntList mrope_section,               \
      c10::string_view mrope_layout, bool enable_pdl, const OptTensor &cu_seqlens,                     \
      const OptTensor &seqlen_offsets, std::int64_t cp_size, std::int64_t cp_rank, c10::string_view cp_layout
#define ROPE_OP_INPUTS                                                                                  \
  RopeInputs {                                                                                          \
    q, k, positions, cos, sin, cos_sin_cache, inv_freq, attention_scaling, interleaved, inverse,        \
        mrope_section, mrope_layout, enable_pdl, cu_seqlens, seqlen_offsets, cp_size, cp_rank, cp_layout  \
  }

// In place: q (and k) are overwritten with their rotation. Returns nothing, as torch.library
// asks of ops that mutate their inputs.
void rope_inplace_cuda(ROPE_OP_PARAMS) { apply(ROPE_OP_INPUTS, q, k, true); }

// Functional: new contiguous tensors [q_out] or [q_out, k_out], the tail beyond rotary_dim copied.
std::vector<at::Tensor> rope_functional_cuda(ROPE_OP_PARAMS) {
  std::vector<at::Tensor> out{at::empty(q.sizes(), q.options())};
  OptTensor k_out;
  if (k.has_value()) {
    k_out = at::empty(k->sizes(), k->options());
    out.push_back(*k_out);
  }
  apply(ROPE_OP_INPUTS, out[0], k_out, true);
  return out;
}

// CPU tensors: every argument check runs (so bad arguments get their reason on any machine,
// which is also what CI tests without a GPU), then the call is refused: there is no CPU kernel.
void refuse_cpu(const at::Tensor& q) {
  // One prebuilt string (see apply.cpp on why messages are not streamed piecewise).
  TORCH_CHECK_NOT_IMPLEMENTED(false, "rope_cuda: the rope kernels run on CUDA tensors, got " + q.device().str() +
                                         " tensors (the arguments are otherwise valid); "
                                         "rope_cuda.hf.apply_rotary_pos_emb falls back to PyTorch math for CPU tensors");
}

void rope_inplace_cpu(ROPE_OP_PARAMS) {
  apply(ROPE_OP_INPUTS, q, k, false);
  refuse_cpu(q);
}

std::vector<at::Tensor> rope_functional_cpu(ROPE_OP_PARAMS) {
  // Checked against outputs allocated as the CUDA kernel allocates them, so that the overlap
  // checks see the same layout.
  const at::Tensor q_out = at::empty(q.sizes(), q.options());
  const OptTensor k_out = k.has_value() ? OptTensor(at::empty(k->sizes(), k->options())) : OptTensor();
  apply(ROPE_OP_INPUTS, q_out, k_out, false);
  refuse_cpu(q);
  return {};
}

#undef ROPE_OP_INPUTS
#undef ROPE_OP_PARAMS

// QK-RMSNorm + RoPE in place: the RoPE arguments of rope_ that a norm launch takes, after the norm's.
#define ROPE_NORM_OP_PARAMS                                                                             \
  const at::Tensor &q, const OptTensor &k, const OptTensor &q_weight, const OptTensor &k_weight, double eps, \
      bool weight_one_plus, const OptTensor &positions, const OptTensor &cos, const OptTensor &sin,     \
      const OptTensor &cos_sin_cache, const OptTensor &inv_freq, double attention_scaling, bool interleaved, \
      bool enable_pdl, const OptTensor &cu_seqlens, const OptTensor &seqlen_offsets

void rope_qk_norm(ROPE_NORM_OP_PARAMS, bool run) {
  const RopeInputs in{q, k, positions, cos, sin, cos_sin_cache, inv_freq, attention_scaling, interleaved, false,
                      at::OptionalIntArrayRef(), "contiguous", enable_pdl, cu_seqlens, seqlen_offsets, 1, 0,
                      "load_balanced"};
  const NormInputs norm{q_weight, k_weight, eps, weight_one_plus};
  apply(in, q, k, run, &norm);
}

void rope_qk_norm_inplace_cuda(ROPE_NORM_OP_PARAMS) {
  rope_qk_norm(q, k, q_weight, k_weight, eps, weight_one_plus, positions, cos, sin, cos_sin_cache, inv_freq,
               attention_scaling, interleaved, enable_pdl, cu_seqlens, seqlen_offsets, true);
}

void rope_qk_norm_inplace_cpu(ROPE_NORM_OP_PARAMS) {
  rope_qk_norm(q, k, q_weight, k_weight, eps, weight_one_plus, positions, cos, sin, cos_sin_cache, inv_freq,
               attention_scaling, interleaved, enable_pdl, cu_seqlens, seqlen_offsets, false);
  refuse_cpu(q);
}

#undef ROPE_NORM_OP_PARAMS

// RoPE + paged KV-cache write in place: q and k rotated, the rotated k and v to the caches.
#define ROPE_APPEND_OP_PARAMS                                                                           \
  const at::Tensor &q, const at::Tensor &k, const at::Tensor &v, const at::Tensor &k_cache,            \
      const at::Tensor &v_cache, const at::Tensor &slot_mapping, c10::string_view kv_cache_dtype, double k_scale, \
      double v_scale, c10::string_view cache_layout, bool k_write_back, const OptTensor &positions,     \
      const OptTensor &cos, const OptTensor &sin, const OptTensor &cos_sin_cache, const OptTensor &inv_freq, \
      double attention_scaling, bool interleaved, bool enable_pdl, const OptTensor &cu_seqlens,         \
      const OptTensor &seqlen_offsets
#define ROPE_APPEND_OP_ARGS                                                                             \
  q, k, v, k_cache, v_cache, slot_mapping, kv_cache_dtype, k_scale, v_scale, cache_layout, k_write_back, positions, \
      cos, sin, cos_sin_cache, inv_freq, attention_scaling, interleaved, enable_pdl, cu_seqlens, seqlen_offsets

void rope_append(ROPE_APPEND_OP_PARAMS, bool run) {
  const OptTensor k_opt(k);
  const RopeInputs in{q, k_opt, positions, cos, sin, cos_sin_cache, inv_freq, attention_scaling, interleaved, false,
                      at::OptionalIntArrayRef(), "contiguous", enable_pdl, cu_seqlens, seqlen_offsets, 1, 0,
                      "load_balanced"};
  const AppendInputs append{v, k_cache, v_cache, slot_mapping, cache_layout, kv_cache_dtype, k_scale, v_scale,
                            k_write_back};
  apply(in, q, k_opt, run, nullptr, &append);
}

void rope_append_inplace_cuda(ROPE_APPEND_OP_PARAMS) { rope_append(ROPE_APPEND_OP_ARGS, true); }

void rope_append_inplace_cpu(ROPE_APPEND_OP_PARAMS) {
  rope_append(ROPE_APPEND_OP_ARGS, false);
  refuse_cpu(q);
}

#undef ROPE_APPEND_OP_ARGS
#undef ROPE_APPEND_OP_PARAMS

}  // namespace

TORCH_LIBRARY(rope_cuda, m) {
  // Arguments added later come last (mrope_section / mrope_layout for multi-axis positions, then
  // enable_pdl, then packed sequences), so that calls written before them keep their meaning.
  m.def(
      "rope_(Tensor(a!) q, Tensor(b!)? k, Tensor? positions=None, Tensor? cos=None, Tensor? sin=None, "
      "Tensor? cos_sin_cache=None, Tensor? inv_freq=None, float attention_scaling=1.0, bool interleaved=False, "
      "bool inverse=False, int[]? mrope_section=None, str mrope_layout=\"contiguous\", bool enable_pdl=False, "
      "Tensor? cu_seqlens=None, Tensor? seqlen_offsets=None, int cp_size=1, int cp_rank=0, "
      "str cp_layout=\"load_balanced\") -> ()");
  m.def(
      "rope(Tensor q, Tensor? k, Tensor? positions=None, Tensor? cos=None, Tensor? sin=None, "
      "Tensor? cos_sin_cache=None, Tensor? inv_freq=None, float attention_scaling=1.0, bool interleaved=False, "
      "bool inverse=False, int[]? mrope_section=None, str mrope_layout=\"contiguous\", bool enable_pdl=False, "
      "Tensor? cu_seqlens=None, Tensor? seqlen_offsets=None, int cp_size=1, int cp_rank=0, "
      "str cp_layout=\"load_balanced\") -> Tensor[]");
  // Per-head RMSNorm of q and k (weights [head_dim] in q's dtype), then RoPE, in place: vLLM's
  // fused_qk_norm_rope and Qwen3 / Gemma 3 attention. Forward only.
  m.def(
      "rope_qk_norm_(Tensor(a!) q, Tensor(b!)? k, Tensor? q_weight, Tensor? k_weight, float eps=1e-6, "
      "bool weight_one_plus=False, Tensor? positions=None, Tensor? cos=None, Tensor? sin=None, "
      "Tensor? cos_sin_cache=None, Tensor? inv_freq=None, float attention_scaling=1.0, bool interleaved=False, "
      "bool enable_pdl=False, Tensor? cu_seqlens=None, Tensor? seqlen_offsets=None) -> ()");
  // RoPE, then the rotated k and v to paged caches (vLLM's rotary_embedding + reshape_and_cache_flash,
  // SGLang's fused KV-buffer write), in one launch. Forward only.
  m.def(
      "rope_append_(Tensor(a!) q, Tensor(b!) k, Tensor v, Tensor(c!) k_cache, Tensor(d!) v_cache, "
      "Tensor slot_mapping, str kv_cache_dtype=\"auto\", float k_scale=1.0, float v_scale=1.0, "
      "str cache_layout=\"NHD\", bool k_write_back=True, Tensor? positions=None, Tensor? cos=None, "
      "Tensor? sin=None, Tensor? cos_sin_cache=None, Tensor? inv_freq=None, float attention_scaling=1.0, "
      "bool interleaved=False, bool enable_pdl=False, Tensor? cu_seqlens=None, Tensor? seqlen_offsets=None) -> ()");
}

TORCH_LIBRARY_IMPL(rope_cuda, CUDA, m) {
  m.impl("rope_", &rope_inplace_cuda);
  m.impl("rope", &rope_functional_cuda);
  m.impl("rope_qk_norm_", &rope_qk_norm_inplace_cuda);
  m.impl("rope_append_", &rope_append_inplace_cuda);
}

TORCH_LIBRARY_IMPL(rope_cuda, CPU, m) {
  m.impl("rope_", &rope_inplace_cpu);
  m.impl("rope", &rope_functional_cpu);
  m.impl("rope_qk_norm_", &rope_qk_norm_inplace_cpu);
  m.impl("rope_append_", &rope_append_inplace_cpu);
}

}  // namespace rope_cuda
