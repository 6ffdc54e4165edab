// SPDX-License-Identifier: MIT
// Tensor -> rope::RopeParams marshalling. No math happens here: the rotation is the library's.
//
// q and k are [tokens, heads, head_dim] or [batch, seq, heads, head_dim] strided views. The
// library takes [tokens, heads, head_dim] views, so a 4-D input becomes one launch over
// batch * seq tokens when its batch dimension merges into the token dimension (batch stride ==
// seq * token stride, true for contiguous tensors, transposed HF views and fused-QKV slices) and
// the positions / cos-sin rows merge the same way. Otherwise it becomes one launch per batch
// entry, all on the same stream, with no copy and no synchronization.
//
// Multi-axis positions (M-RoPE, 2D vision RoPE) are [axes, tokens] or [axes, batch, seq]: each
// axis' slice merges or not as one-axis positions do, and the axis stride and sections go into
// rope::Positions through rope::multi_axis_positions.
//
// Packed sequences (cu_seqlens, optional seqlen_offsets, context parallelism) describe 3-D
// [total_tokens, heads, head_dim] inputs and become rope::packed_sequence_positions: one launch.

#include "apply.h"

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Exception.h>

#include <rope/kv_cache_validate.cuh>
#include <rope/qk_norm_validate.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

#include "launch.h"

namespace rope_cuda {
namespace {

// Error text is assembled here (std::to_string for numbers) and reaches torch as one string.
// Streaming numbers into torch's message builder from this extension crashed the process on one
// installation (the H200 image: Python 3.12, GCC 13), and an error path must never crash.
void append(std::string& s, const char* v) { s += v; }
void append(std::string& s, const std::string& v) { s += v; }
void append(std::string& s, const c10::Device& d) { s += d.str(); }
void append(std::string& s, at::IntArrayRef v) {
  s += "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  s += "]";
}
template <typename I, typename = std::enable_if_t<std::is_integral<I>::value>>
void append(std::string& s, I v) {
  s += std::to_string(v);
}
template <typename... Parts>
std::string text(const Parts&... parts) {
  std::string s = "rope_cuda: ";
  (append(s, parts), ...);
  return s;
}

#define ROPE_CHECK_ARG(cond, ...) TORCH_CHECK_VALUE(cond, text(__VA_ARGS__))

/// Strides (in elements) of one [batch, seq, heads, head_dim] view; 3-D views have one batch.
struct View {
  char* base = nullptr;
  std::int64_t batch_stride = 0;
  std::int64_t token_stride = 0;
  std::int64_t head_stride = 0;
};

View view_of(const at::Tensor& t) {
  View v;
  v.base = static_cast<char*>(t.data_ptr());
  const bool four_d = t.dim() == 4;
  v.batch_stride = four_d ? t.stride(0) : 0;
  v.token_stride = t.stride(four_d ? 1 : 0);
  v.head_stride = t.stride(-2);
  return v;
}

/// The token stride of the merged batch * seq dimension, or false when the batch dimension
/// does not merge (a size-1 dimension's stride is never used, so it imposes nothing).
bool merged_token_stride(std::int64_t batches, std::int64_t seq, std::int64_t batch_stride,
                         std::int64_t token_stride, std::int64_t& merged) {
  if (batches <= 1 || seq == 0) {
    merged = token_stride;
    return true;
  }
  if (seq == 1) {
    merged = batch_stride;
    return true;
  }
  merged = token_stride;
  return batch_stride == seq * token_stride;
}

const char* dtype_name(at::ScalarType t) { return c10::toString(t); }

void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& q) {
  ROPE_CHECK_ARG(t.device() == q.device(), name, " is on ", t.device(), " but q is on ", q.device(),
                 "; all tensors of one call must be on the same device");
}

void check_heads_tensor(const at::Tensor& t, const char* name) {
  ROPE_CHECK_ARG(t.dim() == 3 || t.dim() == 4, name,
                 " must be [tokens, heads, head_dim] or [batch, seq, heads, head_dim], got shape ", t.sizes());
  ROPE_CHECK_ARG(t.size(-1) <= 1 || t.stride(-1) == 1, name,
                 ": the last dimension (head_dim) must be contiguous (stride 1), got stride ", t.stride(-1),
                 "; rope_cuda never copies silently: pass ", name, ".contiguous() if a copy is intended");
  ROPE_CHECK_ARG(t.size(-2) <= std::numeric_limits<int>::max() && t.size(-1) <= std::numeric_limits<int>::max(),
                 name, " has too many heads or too large a head_dim: ", t.sizes());
}

/// cos/sin source after checks: a table (per-batch or shared) or inverse frequencies.
struct Source {
  bool table = false;
  const char* cos = nullptr;  // row 0 of batch 0
  const char* sin = nullptr;
  std::int64_t element_bytes = 4;
  rope::TableType type = rope::TableType::kFloat32;
  std::int64_t rows = 0;
  std::int64_t row_stride = 0;
  std::int64_t batch_stride = 0;  // elements between per-batch tables; 0 when shared
  bool per_batch = false;         // [batch, rows, .] with batch > 1
  std::int64_t half = 0;          // rotary_dim / 2
  const float* inv_freq = nullptr;
};

rope::TableType table_type_of(at::ScalarType table, at::ScalarType q, const char* name) {
  if (table == at::kFloat) return rope::TableType::kFloat32;
  ROPE_CHECK_ARG(table == q, name, " dtype must be float32 or q's dtype (", dtype_name(q), "), got ",
                 dtype_name(table));
  return table == at::kHalf ? rope::TableType::kFloat16 : rope::TableType::kBFloat16;
}

/// Shared checks of a table tensor [rows, width] or [batch, rows, width]; fills rows and strides.
void check_table_tensor(const at::Tensor& t, const char* name, const at::Tensor& q, std::int64_t batches,
                        Source& s) {
  check_same_device(t, name, q);
  ROPE_CHECK_ARG(t.dim() == 2 || (t.dim() == 3 && q.dim() == 4), name,
                 " must be [rows, width]", q.dim() == 4 ? " or [batch, rows, width]" : "", ", got shape ", t.sizes());
  ROPE_CHECK_ARG(t.size(-1) <= 1 || t.stride(-1) == 1, name,
                 ": the last dimension must be contiguous (stride 1), got stride ", t.stride(-1));
  s.type = table_type_of(t.scalar_type(), q.scalar_type(), name);
  s.element_bytes = static_cast<std::int64_t>(t.element_size());
  s.rows = t.size(-2);
  s.row_stride = t.stride(-2);
  if (t.dim() == 3 && t.size(0) != 1) {
    ROPE_CHECK_ARG(t.size(0) == batches, name, " has ", t.size(0), " tables but q has a batch of ", batches,
                   " (one table per batch entry, or one shared)");
    s.per_batch = batches > 1;
    s.batch_stride = t.stride(0);
  }
}

Source check_source(const RopeInputs& in, std::int64_t batches) {
  const at::Tensor& q = in.q;
  const int given = (in.cos.has_value() || in.sin.has_value()) + in.cos_sin_cache.has_value() + in.inv_freq.has_value();
  ROPE_CHECK_ARG(given == 1, "pass exactly one cos/sin source: cos and sin, cos_sin_cache, or inv_freq (got ", given,
                 ")");
  Source s;
  if (in.inv_freq.has_value()) {
    const at::Tensor& f = *in.inv_freq;
    check_same_device(f, "inv_freq", q);
    ROPE_CHECK_ARG(f.dim() == 1 && f.size(0) >= 1, "inv_freq must be a 1-D tensor of rotary_dim / 2 frequencies, got shape ",
                   f.sizes());
    ROPE_CHECK_ARG(f.scalar_type() == at::kFloat, "inv_freq dtype must be float32, got ", dtype_name(f.scalar_type()));
    ROPE_CHECK_ARG(f.size(0) == 1 || f.stride(0) == 1, "inv_freq must be contiguous, got stride ", f.stride(0));
    s.half = f.size(0);
    s.inv_freq = f.data_ptr<float>();
    return s;
  }
  s.table = true;
  if (in.cos_sin_cache.has_value()) {
    const at::Tensor& c = *in.cos_sin_cache;
    check_table_tensor(c, "cos_sin_cache", q, batches, s);
    ROPE_CHECK_ARG(c.size(-1) >= 2 && c.size(-1) % 2 == 0,
                   "cos_sin_cache rows must be [cos(rotary_dim / 2) | sin(rotary_dim / 2)], an even width >= 2; got width ",
                   c.size(-1));
    s.half = c.size(-1) / 2;
    s.cos = static_cast<const char*>(c.data_ptr());
    s.sin = s.cos + s.half * s.element_bytes;
    return s;
  }
  ROPE_CHECK_ARG(in.cos.has_value() && in.sin.has_value(), "cos and sin must be given together");
  const at::Tensor& c = *in.cos;
  const at::Tensor& n = *in.sin;
  check_table_tensor(c, "cos", q, batches, s);
  ROPE_CHECK_ARG(n.sizes() == c.sizes() && n.scalar_type() == c.scalar_type(),
                 "cos and sin must have the same shape and dtype, got ", c.sizes(), " ", dtype_name(c.scalar_type()),
                 " and ", n.sizes(), " ", dtype_name(n.scalar_type()));
  check_same_device(n, "sin", q);
  for (int d = 0; d < c.dim(); ++d) {
    // One row stride (and batch stride) describes both tables in the library.
    ROPE_CHECK_ARG(c.size(d) <= 1 || c.stride(d) == n.stride(d), "cos and sin must have the same strides, got ",
                   c.strides(), " and ", n.strides());
  }
  ROPE_CHECK_ARG(c.size(-1) >= 1, "cos/sin must have rotary_dim / 2 >= 1 columns, got shape ", c.sizes());
  s.half = c.size(-1);
  s.cos = static_cast<const char*>(c.data_ptr());
  s.sin = static_cast<const char*>(n.data_ptr());
  return s;
}

struct PositionsInfo {
  const char* data = nullptr;
  rope::PositionType type = rope::PositionType::kNone;
  std::int64_t element_bytes = 0;
  std::int64_t batch_stride = 0;  // elements
  bool merges = true;             // [batch, seq] rows are consecutive, so batch * seq tokens read one array
  // Multi-axis (M-RoPE): filled into rope::Positions by the library's multi_axis_positions.
  int axes = 1;
  std::int64_t axis_stride = 0;  // elements between the axes' arrays
  rope::AxisSections layout = rope::AxisSections::kContiguous;
  int sections[3] = {0, 0, 0};
  // Packed sequences (THD): the library's PackedSequences, built by packed_sequence_positions
  // (packed.sequences.cu_seqlens null without them).
  rope::Positions packed;
};

/// The section layout named by the op's string argument.
rope::AxisSections layout_of(c10::string_view name) {
  if (name == "contiguous") return rope::AxisSections::kContiguous;
  if (name == "interleaved") return rope::AxisSections::kInterleaved;
  ROPE_CHECK_ARG(false, "mrope_layout must be \"contiguous\" (Qwen2-VL's mrope_section) or \"interleaved\" ",
                 "(Qwen3-VL), got \"", std::string(name), "\"");
  return rope::AxisSections::kContiguous;
}

/// Checks mrope_section / mrope_layout; returns the number of position axes (1 without sections).
int check_sections(const RopeInputs& in, std::int64_t half, PositionsInfo& p) {
  const rope::AxisSections layout = layout_of(in.mrope_layout);
  if (!in.mrope_section.has_value()) {
    ROPE_CHECK_ARG(layout == rope::AxisSections::kContiguous,
                   "mrope_layout \"interleaved\" applies to multi-axis positions: pass mrope_section too");
    return 1;
  }
  const at::IntArrayRef sections = *in.mrope_section;
  ROPE_CHECK_ARG(sections.size() == 2 || sections.size() == 3,
                 "mrope_section must have 2 or 3 entries (frequencies per position axis), got ", sections,
                 "; one-axis positions need no mrope_section");
  std::int64_t sum = 0;
  for (const std::int64_t s : sections) {
    ROPE_CHECK_ARG(s >= 0, "mrope_section entries must be non-negative, got ", sections);
  }
  for (const std::int64_t s : sections) {
    // Each entry at most rotary_dim / 2 keeps the sum exact (and the int conversion below).
    ROPE_CHECK_ARG(s <= half, "mrope_section entry ", s, " exceeds rotary_dim / 2 (", half, "), got ", sections);
    sum += s;
  }
  ROPE_CHECK_ARG(sum == half, "mrope_section ", sections, " sums to ", sum, " but rotary_dim / 2 is ", half,
                 " (each frequency takes exactly one axis)");
  ROPE_CHECK_ARG(in.positions.has_value(), "mrope_section needs positions of shape [", sections.size(),
                 ", tokens] or [", sections.size(), ", batch, seq] (one row per axis)");
  p.axes = static_cast<int>(sections.size());
  p.layout = layout;
  for (std::size_t a = 0; a < sections.size(); ++a) p.sections[a] = static_cast<int>(sections[a]);
  return p.axes;
}

/// The context-parallel split named by the op's string argument.
rope::ContextSplit split_of(c10::string_view name) {
  if (name == "load_balanced") return rope::ContextSplit::kLoadBalanced;
  if (name == "contiguous") return rope::ContextSplit::kContiguous;
  ROPE_CHECK_ARG(false, "cp_layout must be \"load_balanced\" (rank r holds chunks r and 2 * cp_size - 1 - r, as ",
                 "Transformer Engine and Megatron-Core split) or \"contiguous\", got \"", std::string(name), "\"");
  return rope::ContextSplit::kLoadBalanced;
}

/// Checks cu_seqlens, seqlen_offsets and the context-parallel arguments; fills p.packed.
void check_sequences(const RopeInputs& in, PositionsInfo& p) {
  const rope::ContextSplit split = split_of(in.cp_layout);
  if (!in.cu_seqlens.has_value()) {
    ROPE_CHECK_ARG(!in.seqlen_offsets.has_value(), "seqlen_offsets (one start position per sequence) needs cu_seqlens");
    ROPE_CHECK_ARG(in.cp_size == 1 && in.cp_rank == 0 && split == rope::ContextSplit::kLoadBalanced,
                   "cp_size, cp_rank and cp_layout apply to packed sequences: pass cu_seqlens (got cp_size ", in.cp_size,
                   ", cp_rank ", in.cp_rank, ")");
    return;
  }
  const at::Tensor& q = in.q;
  const at::Tensor& cu = *in.cu_seqlens;
  ROPE_CHECK_ARG(q.dim() == 3, "cu_seqlens describes packed [total_tokens, heads, head_dim] (THD) tensors, got q of shape ",
                 q.sizes());
  ROPE_CHECK_ARG(!in.positions.has_value(), "pass positions or cu_seqlens, not both (cu_seqlens gives each token ",
                 "its place in its sequence as its position)");
  ROPE_CHECK_ARG(!in.mrope_section.has_value(), "mrope_section needs a positions array per axis; cu_seqlens gives one ",
                 "position per token");
  check_same_device(cu, "cu_seqlens", q);
  ROPE_CHECK_ARG(cu.scalar_type() == at::kInt, "cu_seqlens dtype must be int32, got ", dtype_name(cu.scalar_type()));
  ROPE_CHECK_ARG(cu.dim() == 1 && cu.size(0) >= 2, "cu_seqlens must be 1-D with batch + 1 >= 2 entries, got shape ",
                 cu.sizes());
  ROPE_CHECK_ARG(cu.size(0) - 1 <= std::numeric_limits<int>::max() - 1, "cu_seqlens has too many sequences: ",
                 cu.size(0) - 1);
  ROPE_CHECK_ARG(cu.stride(0) == 1, "cu_seqlens must be contiguous, got stride ", cu.stride(0));
  ROPE_CHECK_ARG(in.cp_size >= 1 && in.cp_size <= std::numeric_limits<int>::max(), "cp_size must be >= 1, got ",
                 in.cp_size);
  ROPE_CHECK_ARG(in.cp_rank >= 0 && in.cp_rank < in.cp_size, "cp_rank must be in [0, cp_size) = [0, ", in.cp_size,
                 "), got ", in.cp_rank);
  const int count = static_cast<int>(cu.size(0) - 1);
  const rope::ContextParallel context{static_cast<int>(in.cp_size), static_cast<int>(in.cp_rank), split};
  const auto* cu_data = static_cast<const std::int32_t*>(cu.data_ptr());
  if (!in.seqlen_offsets.has_value()) {
    p.packed = rope::packed_sequence_positions(cu_data, count, context);
    return;
  }
  const at::Tensor& o = *in.seqlen_offsets;
  check_same_device(o, "seqlen_offsets", q);
  ROPE_CHECK_ARG(o.scalar_type() == at::kInt || o.scalar_type() == at::kLong,
                 "seqlen_offsets dtype must be int32 or int64, got ", dtype_name(o.scalar_type()));
  ROPE_CHECK_ARG(o.dim() == 1 && o.size(0) == count, "seqlen_offsets must be [batch] = [", count,
                 "] (one per sequence of cu_seqlens), got shape ", o.sizes());
  ROPE_CHECK_ARG(o.size(0) <= 1 || o.stride(0) == 1, "seqlen_offsets must be contiguous, got stride ", o.stride(0));
  p.packed = o.scalar_type() == at::kInt
                 ? rope::packed_sequence_positions(cu_data, count, static_cast<const std::int32_t*>(o.data_ptr()), context)
                 : rope::packed_sequence_positions(cu_data, count, static_cast<const std::int64_t*>(o.data_ptr()), context);
}

PositionsInfo check_positions(const RopeInputs& in, std::int64_t half) {
  PositionsInfo p;
  check_sequences(in, p);
  const int axes = check_sections(in, half, p);
  if (!in.positions.has_value()) return p;
  const at::Tensor& full = *in.positions;
  const at::Tensor& q = in.q;
  check_same_device(full, "positions", q);
  ROPE_CHECK_ARG(full.scalar_type() == at::kInt || full.scalar_type() == at::kLong,
                 "positions dtype must be int32 or int64, got ", dtype_name(full.scalar_type()));
  const auto lead = q.sizes().slice(0, q.dim() - 2);
  if (axes == 1) {
    ROPE_CHECK_ARG(full.sizes() == lead, "positions must have q's leading shape ", lead, " (one per token), got ",
                   full.sizes(), full.dim() == static_cast<std::int64_t>(lead.size()) + 1
                                     ? "; multi-axis positions [axes, ...] need mrope_section"
                                     : "");
  } else {
    std::vector<std::int64_t> want{axes};
    want.insert(want.end(), lead.begin(), lead.end());
    ROPE_CHECK_ARG(full.sizes() == at::IntArrayRef(want), "positions must be [axes, ",
                   lead.size() == 1 ? "tokens" : "batch, seq", "] = ", at::IntArrayRef(want), " for an mrope_section of ",
                   axes, " entries, got ", full.sizes());
    p.axis_stride = full.stride(0);
  }
  // Per axis, the same [tokens] or [batch, seq] array a one-axis call takes.
  const at::Tensor t = axes == 1 ? full : full.select(0, 0);
  ROPE_CHECK_ARG(t.size(-1) <= 1 || t.stride(-1) == 1, "positions must be contiguous along the tokens, got strides ",
                 full.strides());
  p.data = static_cast<const char*>(full.data_ptr());
  p.type = full.scalar_type() == at::kInt ? rope::PositionType::kInt32 : rope::PositionType::kInt64;
  p.element_bytes = static_cast<std::int64_t>(full.element_size());
  if (t.dim() == 2) {
    const std::int64_t batches = t.size(0), seq = t.size(1);
    p.batch_stride = t.stride(0);
    // The library reads one position per token from consecutive elements.
    p.merges = batches <= 1 || seq == 0 || t.stride(0) == (seq == 1 ? 1 : seq);
  }
  return p;
}

/// rope::Positions for the array starting at `data`, through the library's own constructors.
rope::Positions positions_at(const PositionsInfo& pos, const char* data) {
  if (pos.axes == 1) {
    rope::Positions p;
    p.data = data;
    p.type = pos.type;
    return p;
  }
  const int s2 = pos.axes == 3 ? pos.sections[2] : 0;
  if (pos.type == rope::PositionType::kInt32) {
    return rope::multi_axis_positions(reinterpret_cast<const std::int32_t*>(data), pos.axes, pos.axis_stride,
                                      pos.layout, pos.sections[0], pos.sections[1], s2);
  }
  return rope::multi_axis_positions(reinterpret_cast<const std::int64_t*>(data), pos.axes, pos.axis_stride,
                                    pos.layout, pos.sections[0], pos.sections[1], s2);
}

template <typename T>
rope::HeadsTensor<T> heads_at(const View& x, const View& y, int heads, std::int64_t batch, std::int64_t x_token_stride,
                              std::int64_t y_token_stride) {
  rope::HeadsTensor<T> h;
  h.x = reinterpret_cast<const T*>(x.base) + batch * x.batch_stride;
  h.y = reinterpret_cast<T*>(y.base) + batch * y.batch_stride;
  h.num_heads = heads;
  h.x_token_stride = x_token_stride;
  h.x_head_stride = x.head_stride;
  h.y_token_stride = y_token_stride;
  h.y_head_stride = y.head_stride;
  return h;
}

/// A norm weight: 1-D [head_dim] in q's dtype, contiguous, on q's device.
const void* check_norm_weight(const std::optional<at::Tensor>& w, const char* name, const at::Tensor& q, bool needed) {
  if (!needed) {
    ROPE_CHECK_ARG(!w.has_value(), name, " is given but its tensor has no heads");
    return nullptr;
  }
  ROPE_CHECK_ARG(w.has_value(), name, " is required (one weight per element of a head)");
  check_same_device(*w, name, q);
  ROPE_CHECK_ARG(w->dim() == 1 && w->size(0) == q.size(-1), name, " must be [head_dim] = [", q.size(-1), "], got shape ",
                 w->sizes());
  ROPE_CHECK_ARG(w->scalar_type() == q.scalar_type(), name, " dtype must be q's (", dtype_name(q.scalar_type()),
                 "), got ", dtype_name(w->scalar_type()));
  ROPE_CHECK_ARG(w->size(0) <= 1 || w->stride(0) == 1, name, " must be contiguous, got stride ", w->stride(0));
  return w->data_ptr();
}

template <typename T>
rope::QkNorm<T, T> qk_norm_of(const NormInputs& n, const at::Tensor& q, bool has_q, bool has_k) {
  rope::QkNorm<T, T> norm;
  norm.q_weight = static_cast<const T*>(check_norm_weight(n.q_weight, "q_weight", q, has_q));
  norm.k_weight = static_cast<const T*>(check_norm_weight(n.k_weight, "k_weight", q, has_k));
  norm.eps = static_cast<float>(n.eps);
  norm.weighting = n.weight_one_plus ? rope::NormWeighting::kOnePlus : rope::NormWeighting::kMultiply;
  return norm;
}

/// One paged cache tensor as the library's view; fills `blocks` and `block_size`.
template <typename C>
rope::PagedCache<C> paged_cache_of(const at::Tensor& c, const char* name, const AppendInputs& a, std::int64_t kv_heads,
                                   std::int64_t head_dim, std::int64_t& blocks, std::int64_t& block_size) {
  ROPE_CHECK_ARG(c.dim() == 3 || c.dim() == 4, name, " must be [num_blocks, block_size, kv_heads, head_dim] (NHD), ",
                 "[num_blocks, kv_heads, block_size, head_dim] (HND) or [num_slots, kv_heads, head_dim], got shape ",
                 c.sizes());
  ROPE_CHECK_ARG(c.size(-1) <= 1 || c.stride(-1) == 1, name, ": the last dimension (head_dim) must be contiguous");
  const bool hnd = a.cache_layout == "HND";
  ROPE_CHECK_ARG(hnd || a.cache_layout == "NHD", "cache_layout must be \"NHD\" (vLLM) or \"HND\" (FlashInfer), got \"",
                 std::string(a.cache_layout), "\"");
  rope::PagedCache<C> p;
  p.data = static_cast<C*>(c.data_ptr());
  p.block_stride = c.stride(0);
  const int heads_dim = c.dim() == 3 ? 1 : hnd ? 1 : 2;
  ROPE_CHECK_ARG(c.size(heads_dim) == kv_heads && c.size(-1) == head_dim, name, " of shape ", c.sizes(),
                 " does not hold k's ", kv_heads, " heads of ", head_dim, " (cache_layout ", std::string(a.cache_layout),
                 ")");
  p.head_stride = c.stride(heads_dim);
  blocks = c.size(0);
  if (c.dim() == 3) {
    block_size = 1;
    p.row_stride = c.stride(0);
  } else {
    const int rows_dim = hnd ? 2 : 1;
    block_size = c.size(rows_dim);
    p.row_stride = c.stride(rows_dim);
  }
  return p;
}

/// rope::KvCacheAppend<T, C> of the append arguments (q, k and the RoPE part already checked).
template <typename T, typename C>
rope::KvCacheAppend<T, C> cache_append_of(const AppendInputs& a, const at::Tensor& k) {
  rope::KvCacheAppend<T, C> r;
  const at::Tensor& v = a.v;
  check_same_device(v, "v", k);
  ROPE_CHECK_ARG(v.dim() == 3 && v.sizes() == k.sizes(), "v must be shaped like k ", k.sizes(), ", got ", v.sizes());
  ROPE_CHECK_ARG(v.scalar_type() == k.scalar_type(), "v dtype must be k's (", dtype_name(k.scalar_type()), "), got ",
                 dtype_name(v.scalar_type()));
  ROPE_CHECK_ARG(v.size(-1) <= 1 || v.stride(-1) == 1, "v: the last dimension (head_dim) must be contiguous");
  r.v = static_cast<const T*>(v.data_ptr());
  r.v_token_stride = v.stride(0);
  r.v_head_stride = v.stride(1);
  for (const auto* c : {&a.k_cache, &a.v_cache}) check_same_device(*c, c == &a.k_cache ? "k_cache" : "v_cache", k);
  ROPE_CHECK_ARG(a.k_cache.sizes() == a.v_cache.sizes(), "k_cache and v_cache must have the same shape, got ",
                 a.k_cache.sizes(), " and ", a.v_cache.sizes());
  std::int64_t blocks = 0, block_size = 0;
  r.k_cache = paged_cache_of<C>(a.k_cache, "k_cache", a, k.size(1), k.size(2), blocks, block_size);
  r.v_cache = paged_cache_of<C>(a.v_cache, "v_cache", a, k.size(1), k.size(2), blocks, block_size);
  ROPE_CHECK_ARG(block_size <= std::numeric_limits<int>::max(), "block_size too large: ", block_size);
  r.num_blocks = blocks;
  r.block_size = static_cast<int>(block_size);
  const at::Tensor& s = a.slot_mapping;
  check_same_device(s, "slot_mapping", k);
  ROPE_CHECK_ARG(s.scalar_type() == at::kInt || s.scalar_type() == at::kLong,
                 "slot_mapping dtype must be int32 or int64, got ", dtype_name(s.scalar_type()));
  ROPE_CHECK_ARG(s.dim() == 1 && s.size(0) == k.size(0), "slot_mapping must be [num_tokens] = [", k.size(0),
                 "], got shape ", s.sizes());
  ROPE_CHECK_ARG(s.size(0) <= 1 || s.stride(0) == 1, "slot_mapping must be contiguous, got stride ", s.stride(0));
  r.slots = s.scalar_type() == at::kInt ? rope::slot_mapping(static_cast<const std::int32_t*>(s.data_ptr()))
                                        : rope::slot_mapping(static_cast<const std::int64_t*>(s.data_ptr()));
  if (!std::is_same<C, T>::value) {  // FP8: the scales divide; "auto" caches take none (vLLM ignores them)
    r.k_scale = static_cast<float>(a.k_scale);
    r.v_scale = static_cast<float>(a.v_scale);
  }
  return r;
}

/// Whether the caches are FP8 (kv_cache_dtype "fp8" / "fp8_e4m3", float8_e4m3fn or uint8 bytes)
/// or q's own type ("auto").
bool fp8_caches(const AppendInputs& a, const at::Tensor& q) {
  const bool fp8 = a.kv_cache_dtype == "fp8" || a.kv_cache_dtype == "fp8_e4m3";
  ROPE_CHECK_ARG(fp8 || a.kv_cache_dtype == "auto", "kv_cache_dtype must be \"auto\", \"fp8\" or \"fp8_e4m3\", got \"",
                 std::string(a.kv_cache_dtype), "\"");
  for (const auto* c : {&a.k_cache, &a.v_cache}) {
    const at::ScalarType t = c->scalar_type();
    const char* name = c == &a.k_cache ? "k_cache" : "v_cache";
    if (fp8) {
      ROPE_CHECK_ARG(t == at::kFloat8_e4m3fn || t == at::kByte, name, " dtype must be float8_e4m3fn or uint8 with ",
                     "kv_cache_dtype \"", std::string(a.kv_cache_dtype), "\", got ", dtype_name(t));
    } else {
      ROPE_CHECK_ARG(t == q.scalar_type(), name, " dtype must be q's (", dtype_name(q.scalar_type()),
                     ") with kv_cache_dtype \"auto\", got ", dtype_name(t));
    }
  }
  return fp8;
}

/// Checks the append's own arguments against the checked RoPE launch `p` and, if `run`, launches.
template <typename T, typename C>
void append_launch(const rope::RopeParams<T>& p, const AppendInputs& a, const at::Tensor& k, bool run,
                   const RopeInputs& in) {
  const rope::KvCacheAppend<T, C> append = cache_append_of<T, C>(a, k);
  rope::RopeParams<T> resolved = p;
  if (!a.k_write_back) resolved.k.y = nullptr;
  const rope::Status status = rope::validate(resolved, append);
  ROPE_CHECK_ARG(status.ok(), "rejected by the rope library: ", status.message);
  if (!run) return;
  const c10::cuda::CUDAGuard guard(in.q.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(in.q.device().index()).stream();
  const cudaError_t err = launch_append<T, C>(resolved, append, stream, in.enable_pdl);
  TORCH_CHECK(err == cudaSuccess, "rope_cuda: launch failed: ", rope::last_error_message());
}

template <typename T>
void apply_typed(const RopeInputs& in, const at::Tensor& q_out, const std::optional<at::Tensor>& k_out, bool run,
                 const NormInputs* norm_in, const AppendInputs* append_in) {
  const at::Tensor& q = in.q;
  const bool has_k = in.k.has_value() && in.k->size(-2) > 0;
  const bool four_d = q.dim() == 4;
  const std::int64_t batches = four_d ? q.size(0) : 1;
  const std::int64_t seq = four_d ? q.size(1) : q.size(0);

  const Source src = check_source(in, batches);
  // The library reports rotary_dim > head_dim itself; this only keeps the int conversion exact.
  ROPE_CHECK_ARG(src.half <= q.size(-1), "rotary_dim (", 2 * src.half, ") is larger than head_dim (", q.size(-1), ")");
  const PositionsInfo pos = check_positions(in, src.half);
  const bool has_positions = pos.type != rope::PositionType::kNone;

  const View qx = view_of(q), qy = view_of(q_out);
  View kx, ky;
  if (has_k) {
    kx = view_of(*in.k);
    ky = view_of(*k_out);
  }

  // One launch over batch * seq tokens when every per-token array merges (see the file comment).
  std::int64_t q_xts = qx.token_stride, q_yts = qy.token_stride, k_xts = kx.token_stride, k_yts = ky.token_stride;
  bool merge = merged_token_stride(batches, seq, qx.batch_stride, qx.token_stride, q_xts) &&
               merged_token_stride(batches, seq, qy.batch_stride, qy.token_stride, q_yts);
  if (has_k) {
    merge = merge && merged_token_stride(batches, seq, kx.batch_stride, kx.token_stride, k_xts) &&
            merged_token_stride(batches, seq, ky.batch_stride, ky.token_stride, k_yts);
  }
  std::int64_t merged_rows = src.rows;
  if (batches > 1 && seq > 0) {
    if (has_positions) {
      // Positions index one shared table (or the computed angles): the array must be [batch * seq].
      merge = merge && pos.merges && !src.per_batch;
    } else {
      // Without positions a token's row is its index in its sequence: only per-batch tables whose
      // rows follow each other (batch stride == seq * row stride) read as one table of batch * seq rows.
      std::int64_t merged_row_stride = 0;
      merge = merge && src.table && src.per_batch &&
              merged_token_stride(batches, seq, src.batch_stride, src.row_stride, merged_row_stride) &&
              merged_row_stride == src.row_stride;
      merged_rows = (batches - 1) * seq + src.rows;
    }
  }
  if (batches <= 1 || seq == 0) merge = true;
  const std::int64_t launches = merge ? 1 : batches;
  const std::int64_t tokens = merge ? batches * seq : seq;

  std::vector<rope::RopeParams<T>> all(static_cast<std::size_t>(launches));
  for (std::int64_t b = 0; b < launches; ++b) {
    rope::RopeParams<T>& p = all[static_cast<std::size_t>(b)];
    p.num_tokens = tokens;
    p.head_dim = static_cast<int>(q.size(-1));
    p.rotary_dim = static_cast<int>(2 * src.half);
    p.style = in.interleaved ? rope::Style::kInterleaved : rope::Style::kHalfSplit;
    p.q = heads_at<T>(qx, qy, static_cast<int>(q.size(-2)), b, merge ? q_xts : qx.token_stride,
                      merge ? q_yts : qy.token_stride);
    if (has_k) {
      p.k = heads_at<T>(kx, ky, static_cast<int>(in.k->size(-2)), b, merge ? k_xts : kx.token_stride,
                        merge ? k_yts : ky.token_stride);
    }
    if (src.table) {
      const std::int64_t offset = b * src.batch_stride * src.element_bytes;
      p.cos_sin.kind = rope::CosSin::Kind::kTable;
      p.cos_sin.cos = src.cos + offset;
      p.cos_sin.sin = src.sin + offset;
      p.cos_sin.table_type = src.type;
      p.cos_sin.rows = merge ? merged_rows : src.rows;
      // A single row's stride is never used; frameworks give it arbitrary values.
      p.cos_sin.row_stride = src.rows <= 1 && !(merge && src.per_batch) ? src.half : src.row_stride;
    } else {
      p.cos_sin = rope::computed_cos_sin(src.inv_freq, 1.0f);
    }
    p.cos_sin.attention_scaling = static_cast<float>(in.attention_scaling);
    if (has_positions) p.positions = positions_at(pos, pos.data + b * pos.batch_stride * pos.element_bytes);
    if (pos.packed.sequences.cu_seqlens != nullptr) p.positions = pos.packed;
  }

  if (append_in != nullptr) {
    ROPE_CHECK_ARG(q.dim() == 3 && has_k, "the KV-cache append takes q [tokens, heads, head_dim] and k ",
                   "[tokens, kv_heads, head_dim] (k with at least one head)");
    if (fp8_caches(*append_in, q)) {
      append_launch<T, __nv_fp8_e4m3>(all.front(), *append_in, *in.k, run, in);
    } else {
      append_launch<T, T>(all.front(), *append_in, *in.k, run, in);
    }
    return;
  }
  rope::QkNorm<T, T> norm;
  if (norm_in != nullptr) norm = qk_norm_of<T>(*norm_in, q, q.size(-2) > 0, has_k);
  // Every launch is checked before the first one runs, so a rejection writes nothing.
  for (const auto& p : all) {
    const rope::Status status = norm_in != nullptr ? rope::validate(p, norm) : rope::validate(p);
    ROPE_CHECK_ARG(status.ok(), "rejected by the rope library: ", status.message);
  }
  if (!run) return;

  const c10::cuda::CUDAGuard guard(q.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(q.device().index()).stream();
  for (const auto& p : all) {
    const cudaError_t err = norm_in != nullptr ? launch_qk_norm<T>(p, norm, stream, in.enable_pdl)
                                               : launch<T>(p, in.inverse, stream, in.enable_pdl);
    TORCH_CHECK(err == cudaSuccess, "rope_cuda: launch failed: ", rope::last_error_message());
  }
}

}  // namespace

void apply(const RopeInputs& in, const at::Tensor& q_out, const std::optional<at::Tensor>& k_out, bool run,
           const NormInputs* norm, const AppendInputs* append) {
  const at::Tensor& q = in.q;
  check_heads_tensor(q, "q");
  const at::ScalarType dtype = q.scalar_type();
  ROPE_CHECK_ARG(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
                 "q dtype must be float32, float16 or bfloat16, got ", dtype_name(dtype));
  if (in.k.has_value()) {
    const at::Tensor& k = *in.k;
    check_heads_tensor(k, "k");
    check_same_device(k, "k", q);
    ROPE_CHECK_ARG(k.scalar_type() == dtype, "k dtype (", dtype_name(k.scalar_type()), ") differs from q's (",
                   dtype_name(dtype), ")");
    ROPE_CHECK_ARG(k.dim() == q.dim() && k.sizes().slice(0, k.dim() - 2) == q.sizes().slice(0, q.dim() - 2) &&
                       k.size(-1) == q.size(-1),
                   "k must have q's tokens and head_dim (only the head count may differ), got q ", q.sizes(), " and k ",
                   k.sizes());
  }
  // Outputs whose elements share memory (a stride-0 dimension, as x.expand(...) makes) would have
  // the shared elements rotated once per alias. Only the in-place op's outputs (q and k) can.
  const char* shared = "has elements that share memory (a stride-0 dimension, as expand() makes): in place, each "
                       "shared element would be rotated once per alias; rotate before expanding, or pass a copy";
  ROPE_CHECK_ARG(at::has_internal_overlap(q_out) != at::MemOverlap::Yes, "q ", shared);
  ROPE_CHECK_ARG(!k_out.has_value() || at::has_internal_overlap(*k_out) != at::MemOverlap::Yes, "k ", shared);
  if (run) {
    ROPE_CHECK_ARG(q.is_cuda(), "q is on ", q.device(), "; rope_cuda runs on CUDA tensors");
  }
  switch (dtype) {
    case at::kFloat:
      apply_typed<float>(in, q_out, k_out, run, norm, append);
      break;
    case at::kHalf:
      apply_typed<__half>(in, q_out, k_out, run, norm, append);
      break;
    default:
      apply_typed<__nv_bfloat16>(in, q_out, k_out, run, norm, append);
      break;
  }
}

}  // namespace rope_cuda
