// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Every check of a RoPE + KV-cache append launch: the RoPE part as `validate(params)` checks it,
/// then the append stage's arguments. Nothing is read from device memory.

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cuda_fp8.h>

#include <rope/detail/device/cache_append.cuh>
#include <rope/kv_cache_types.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

namespace rope {
namespace detail {

template <typename C>
constexpr bool kFp8Cache = std::is_same<C, __nv_fp8_e4m3>::value;

/// The RoPE params the kernel runs with: a null k.y (no write-back), and a null q.y when q goes
/// to q_fp8 only, become x with x's strides, which the kernel never writes then (see CacheAppend).
template <typename T, typename C>
RopeParams<T> resolve_outputs(RopeParams<T> p, const KvCacheAppend<T, C>& a) {
  auto to_x = [](HeadsTensor<T>& t) {
    t.y = const_cast<T*>(t.x);
    t.y_token_stride = t.x_token_stride;
    t.y_head_stride = t.x_head_stride;
  };
  if (p.k.y == nullptr) to_x(p.k);
  if (p.q.y == nullptr && a.q_fp8 != nullptr) to_x(p.q);
  return p;
}

/// The kernel's append stage for validated arguments (the launcher's and the host tests' one
/// conversion): the slot count, which outputs are written, and the scales' reciprocals.
template <typename T, typename C>
CacheAppend<T, C> make_cache_append(const RopeParams<T>& p, const KvCacheAppend<T, C>& a) {
  return CacheAppend<T, C>{a,
                           a.num_blocks * a.block_size,
                           p.k.y != nullptr,
                           p.q.y != nullptr,
                           division_scale(a.k_scale),
                           division_scale(a.v_scale),
                           division_scale(a.q_scale)};
}

/// make_cache_append for the attention prologue: its instances can always quantize q, and have
/// the caches only with `kCache` (without them the slot count is 0 and nothing is read of them).
template <bool kCache, typename T, typename C>
CacheAppend<T, C, true, kCache> make_prologue_append(const RopeParams<T>& p, const KvCacheAppend<T, C>& a) {
  return CacheAppend<T, C, true, kCache>{a,
                                         kCache ? a.num_blocks * a.block_size : 0,
                                         p.k.y != nullptr,
                                         p.q.y != nullptr,
                                         division_scale(a.k_scale),
                                         division_scale(a.v_scale),
                                         division_scale(a.q_scale)};
}

/// One dimension of a cache: extent and stride (elements).
struct CacheDim {
  std::int64_t extent;
  std::int64_t stride;
};

/// Elements from the first to one past the last element of rows of `row_len` elements laid out by
/// `dims` (strides non-negative, extents >= 1), or -1 beyond kMaxSpan.
inline std::int64_t cache_span(const CacheDim (&dims)[3], std::int64_t row_len) {
  std::int64_t span = row_len;
  for (const CacheDim& d : dims) {
    if (d.extent <= 1 || d.stride == 0) continue;
    if (d.extent - 1 > (kMaxSpan - span) / d.stride) return -1;
    span += (d.extent - 1) * d.stride;
  }
  return span;
}

/// True when no two rows (one per index triple) share an element: taken from the smallest stride
/// up, each dimension's stride must clear everything inside it. Extents of 1 impose nothing.
inline bool cache_rows_disjoint(CacheDim a, CacheDim b, CacheDim c, std::int64_t row_len) {
  // Sort the three by stride (a network of three compare-swaps).
  auto order = [](CacheDim& x, CacheDim& y) {
    if (y.stride < x.stride) {
      const CacheDim t = x; x = y; y = t;
    }
  };
  order(a, b);
  order(b, c);
  order(a, b);
  std::int64_t inner = row_len;
  for (const CacheDim& d : {a, b, c}) {
    if (d.extent <= 1) continue;
    if (d.stride < inner) return false;
    inner += (d.extent - 1) * d.stride;  // within kMaxSpan: cache_span was checked first
  }
  return true;
}

/// The reasons one cache's checks give, naming k_cache or v_cache.
struct CacheMessages {
  const char* null_data;
  const char* negative_strides;
  const char* span_too_large;
  const char* rows_overlap;
};

constexpr CacheMessages kKCacheMessages{
    "k_cache.data is null", "k_cache strides are negative", "k_cache strides and sizes exceed 64-bit offsets",
    "k_cache strides make cache rows overlap (each block, row and head needs head_dim elements of its own)"};
constexpr CacheMessages kVCacheMessages{
    "v_cache.data is null", "v_cache strides are negative", "v_cache strides and sizes exceed 64-bit offsets",
    "v_cache strides make cache rows overlap (each block, row and head needs head_dim elements of its own)"};

template <typename C>
Status validate_cache_geometry(const PagedCache<C>& cache, std::int64_t num_blocks, int block_size, int heads,
                               int head_dim, const CacheMessages& why) {
  if (cache.block_stride < 0 || cache.row_stride < 0 || cache.head_stride < 0) return invalid(why.negative_strides);
  const CacheDim dims[3] = {{num_blocks, cache.block_stride}, {block_size, cache.row_stride}, {heads, cache.head_stride}};
  if (cache_span(dims, head_dim) < 0) return invalid(why.span_too_large);
  if (!cache_rows_disjoint(dims[0], dims[1], dims[2], head_dim)) return invalid(why.rows_overlap);
  return Status{};
}

/// Byte range [first, last) of a cache (geometry checked, num_blocks >= 1).
template <typename C>
void cache_byte_extent(const PagedCache<C>& cache, std::int64_t num_blocks, int block_size, int heads, int head_dim,
                       std::uintptr_t& first, std::uintptr_t& last) {
  const CacheDim dims[3] = {{num_blocks, cache.block_stride}, {block_size, cache.row_stride}, {heads, cache.head_stride}};
  first = reinterpret_cast<std::uintptr_t>(cache.data);
  last = first + static_cast<std::uintptr_t>(cache_span(dims, head_dim)) * sizeof(C);
}

/// k and v caches share no element: disjoint byte ranges, or one buffer holding both as
/// alternating parts of every block (FlashInfer's `[pages, 2, ...]`): equal strides, and the
/// later cache starting, within a block, past the earlier one's rows of that block and early
/// enough to end before the next block.
template <typename C>
bool caches_disjoint(const PagedCache<C>& k, const PagedCache<C>& v, std::int64_t num_blocks, int block_size,
                     int heads, int head_dim) {
  std::uintptr_t k0, k1, v0, v1;
  cache_byte_extent(k, num_blocks, block_size, heads, head_dim, k0, k1);
  cache_byte_extent(v, num_blocks, block_size, heads, head_dim, v0, v1);
  if (k1 <= v0 || v1 <= k0) return true;
  if (k.block_stride != v.block_stride || k.row_stride != v.row_stride || k.head_stride != v.head_stride) return false;
  const std::uintptr_t distance = k0 < v0 ? v0 - k0 : k0 - v0;
  if (distance % sizeof(C) != 0 || k.block_stride == 0) return false;
  const CacheDim block_rows[3] = {{1, 0}, {block_size, k.row_stride}, {heads, k.head_stride}};
  const std::int64_t rows = cache_span(block_rows, head_dim);  // one block's rows of one cache
  const std::int64_t within = static_cast<std::int64_t>(distance / sizeof(C)) % k.block_stride;
  return rows <= within && within <= k.block_stride - rows;
}

/// True when byte ranges [a0, a1) and [b0, b1) do not meet.
inline bool bytes_disjoint(std::uintptr_t a0, std::uintptr_t a1, std::uintptr_t b0, std::uintptr_t b1) {
  return a1 <= b0 || b1 <= a0;
}

}  // namespace detail

namespace detail {

/// arguments_apart for an append: what the RoPE part reads besides its heads (positions, tables
/// or frequencies) and the slots lie in no output (q.y, k.y, and `more_outputs`: the caches and
/// q_fp8), and neither flag lies in anything the launch reads or writes.
template <typename T, typename C>
Status side_arguments_apart(const RopeParams<T>& resolved, const KvCacheAppend<T, C>& a,
                            std::initializer_list<ByteRange> more_outputs) {
  const RopeParams<T>& p = resolved;
  const SideReads reads = side_reads(p);
  const std::size_t e = sizeof(T);
  const ByteRange qx = view_bytes(ViewGeometry{p.q.x, p.q.num_heads, p.q.x_token_stride, p.q.x_head_stride}, p.num_tokens,
                                  p.head_dim, e);
  const ByteRange qy = view_bytes(ViewGeometry{p.q.y, p.q.num_heads, p.q.y_token_stride, p.q.y_head_stride}, p.num_tokens,
                                  p.head_dim, e);
  const ByteRange kx = view_bytes(ViewGeometry{p.k.x, p.k.num_heads, p.k.x_token_stride, p.k.x_head_stride}, p.num_tokens,
                                  p.head_dim, e);
  const ByteRange ky = view_bytes(ViewGeometry{p.k.y, p.k.num_heads, p.k.y_token_stride, p.k.y_head_stride}, p.num_tokens,
                                  p.head_dim, e);
  const ByteRange v = view_bytes(ViewGeometry{a.v, p.k.num_heads, a.v_token_stride, a.v_head_stride}, p.num_tokens, p.head_dim, e);
  const std::uint64_t slot_bytes = a.slots.type == SlotType::kInt32 ? 4 : 8;
  const ArgumentBytes slots{bytes_at(a.slots.data, static_cast<std::uint64_t>(p.num_tokens) * slot_bytes),
                            "slots overlap an output of the launch (read while it is written)"};
  const ArgumentBytes flag{bytes_at(p.out_of_range_flag, sizeof(int)), kFlagInArgument};
  const ArgumentBytes slot_flag{bytes_at(a.slot_out_of_range_flag, sizeof(int)),
                                "slot_out_of_range_flag lies in a tensor the launch reads or writes"};
  Status s = arguments_apart(more_outputs, {}, {reads.positions, reads.cu_seqlens, reads.offsets, reads.cos, reads.sin, reads.inv_freq, slots}, {flag, slot_flag});
  if (!s.ok()) return s;
  return arguments_apart({qy, ky}, {qx, kx, v}, {slots}, {flag, slot_flag});
}

/// q_fp8's own checks, with or without caches: q to quantize, the scale, strides and rows.
template <typename T, typename C>
Status validate_q_fp8_layout(const RopeParams<T>& p, const KvCacheAppend<T, C>& a) {
  if (p.q.num_heads < 1) return invalid("q_fp8 needs q (q.num_heads >= 1)");
  if (!quant_scale_in_range(a.q_scale)) return invalid("q_scale must be in [2^-64, 2^64]");
  if (a.q_fp8_token_stride < 0 || a.q_fp8_head_stride < 0) return invalid("q_fp8 strides are negative");
  if (!span_fits(p.num_tokens, p.q.num_heads, a.q_fp8_token_stride, a.q_fp8_head_stride)) {
    return invalid("q_fp8 strides and sizes exceed 64-bit offsets");
  }
  if (!rows_disjoint(p.num_tokens, p.q.num_heads, p.head_dim, a.q_fp8_token_stride, a.q_fp8_head_stride)) {
    return invalid("q_fp8 strides make output rows overlap (rows of the output must be disjoint)");
  }
  return Status{};
}

/// The checks of q_fp8 in a launch without caches (the attention prologue's q to FP8 alone): its
/// own (validate_q_fp8_layout), and that it overlaps nothing the launch reads or writes.
template <typename T, typename C>
Status validate_q_fp8(const RopeParams<T>& p, const KvCacheAppend<T, C>& a, const RopeParams<T>& resolved) {
  if (a.q_fp8 == nullptr) return invalid("q_fp8 is null");
  const Status layout = validate_q_fp8_layout(p, a);
  if (!layout.ok()) return layout;
  if (p.num_tokens == 0) return Status{};
  std::uintptr_t q0, q1;
  byte_extent(ViewGeometry{a.q_fp8, p.q.num_heads, a.q_fp8_token_stride, a.q_fp8_head_stride}, p.num_tokens,
              p.head_dim, sizeof(__nv_fp8_e4m3), q0, q1);
  const ViewGeometry views[] = {{p.q.x, p.q.num_heads, p.q.x_token_stride, p.q.x_head_stride},
                                {resolved.q.y, p.q.num_heads, resolved.q.y_token_stride, resolved.q.y_head_stride},
                                {resolved.k.x, p.k.num_heads, resolved.k.x_token_stride, resolved.k.x_head_stride},
                                {resolved.k.y, p.k.num_heads, resolved.k.y_token_stride, resolved.k.y_head_stride}};
  for (const ViewGeometry& view : views) {
    if (view.heads == 0) continue;
    ViewGeometry one = view;
    if (one.heads > 1 && one.head_stride == 0) one.heads = 1;
    std::uintptr_t b0, b1;
    byte_extent(one, p.num_tokens, p.head_dim, sizeof(T), b0, b1);
    if (!bytes_disjoint(q0, q1, b0, b1)) return invalid("q_fp8 overlaps q or k");
  }
  return side_arguments_apart(resolved, a, {ByteRange{q0, q1}});
}

/// Which of an append's parts a launch has: rope_forward_append has the caches and q_fp8 only with
/// an FP8 cache; the attention prologue may have q_fp8 with any cache, or without one.
struct AppendParts {
  bool has_cache = true;
  bool q_fp8_any_cache = false;
};

/// The checks of validate(params, append) for the parts `parts` says the launch has.
template <typename T, typename C>
Status validate_append(const RopeParams<T>& p, const KvCacheAppend<T, C>& a, AppendParts parts) {
  static_assert(std::is_same<C, T>::value || detail::kFp8Cache<C>,
                "the cache element type is the tensor's type or __nv_fp8_e4m3");
  if (parts.has_cache && p.k.num_heads < 1) {
    return invalid("append needs k (k.num_heads >= 1): its heads go to the cache");
  }
  const RopeParams<T> resolved = detail::resolve_outputs(p, a);
  Status s = validate(resolved);
  if (!s.ok()) return s;
  if (!parts.has_cache) return validate_q_fp8(p, a, resolved);

  if (a.block_size <= 0) return invalid("block_size must be positive");
  if (a.num_blocks < 0) return invalid("num_blocks is negative");
  if (a.num_blocks > detail::kMaxSpan / a.block_size) return invalid("num_blocks * block_size exceeds 2^59");
  if (a.slots.type != SlotType::kInt32 && a.slots.type != SlotType::kInt64) {
    return invalid("slots.type is not a rope::SlotType value");
  }
  if (detail::kFp8Cache<C>) {
    if (!detail::quant_scale_in_range(a.k_scale)) return invalid("k_scale must be in [2^-64, 2^64]");
    if (!detail::quant_scale_in_range(a.v_scale)) return invalid("v_scale must be in [2^-64, 2^64]");
  } else if (a.k_scale != 1.0f || a.v_scale != 1.0f) {
    return invalid("k_scale and v_scale apply only to an FP8 cache (leave them 1)");
  }
  if (a.q_fp8 != nullptr) {
    if (!detail::kFp8Cache<C> && !parts.q_fp8_any_cache) {
      return invalid("q_fp8 needs an FP8 cache (C = __nv_fp8_e4m3); rope_attention_prologue takes it with any cache");
    }
    s = detail::validate_q_fp8_layout(p, a);
    if (!s.ok()) return s;
  } else if (a.q_scale != 1.0f) {
    return invalid("q_scale applies only with q_fp8 (leave it 1)");
  }
  const int heads = p.k.num_heads;
  s = detail::validate_cache_geometry(a.k_cache, a.num_blocks, a.block_size, heads, p.head_dim, detail::kKCacheMessages);
  if (!s.ok()) return s;
  s = detail::validate_cache_geometry(a.v_cache, a.num_blocks, a.block_size, heads, p.head_dim, detail::kVCacheMessages);
  if (!s.ok()) return s;
  if (a.v_token_stride < 0 || a.v_head_stride < 0) return invalid("v strides are negative");
  if (!detail::span_fits(p.num_tokens, heads, a.v_token_stride, a.v_head_stride)) {
    return invalid("v strides and sizes exceed 64-bit offsets");
  }

  // Pointers are only dereferenced when there is a token: empty tensors may carry nullptr.
  if (p.num_tokens == 0) return Status{};

  if (a.v == nullptr) return invalid("v is null");
  if (a.k_cache.data == nullptr) return invalid(detail::kKCacheMessages.null_data);
  if (a.v_cache.data == nullptr) return invalid(detail::kVCacheMessages.null_data);
  if (a.slots.data == nullptr) return invalid("slots.data is null");
  if (!detail::is_aligned(a.v, sizeof(T))) return invalid("v is not aligned to its element type");
  if (!detail::is_aligned(a.k_cache.data, sizeof(C)) || !detail::is_aligned(a.v_cache.data, sizeof(C))) {
    return invalid("k_cache.data or v_cache.data is not aligned to its element type");
  }
  if (!detail::is_aligned(a.slots.data, a.slots.type == SlotType::kInt32 ? 4 : 8)) {
    return invalid("slots.data is not aligned to its type");
  }
  if (a.slot_out_of_range_flag != nullptr && !detail::is_aligned(a.slot_out_of_range_flag, alignof(int))) {
    return invalid("slot_out_of_range_flag is not aligned to int");
  }

  // v is read while q.y and k.y are written: it may share their buffer only as another part of
  // one layout (fused QKV), as k may with q.
  const detail::ViewGeometry v_view{a.v, heads, a.v_token_stride, a.v_head_stride};
  const detail::ViewGeometry qy{p.q.y, p.q.num_heads, p.q.y_token_stride, p.q.y_head_stride};
  const detail::ViewGeometry ky{p.k.y, heads, p.k.y_token_stride, p.k.y_head_stride};
  if ((p.q.y != nullptr && !detail::views_disjoint(v_view, qy, p.num_tokens, p.head_dim, sizeof(T))) ||
      (p.k.y != nullptr && !detail::views_disjoint(v_view, ky, p.num_tokens, p.head_dim, sizeof(T)))) {
    return invalid("v overlaps q.y or k.y (v is read while they are written)");
  }

  // The caches and q_fp8 are written; nothing read or written by the RoPE part may lie in them,
  // nor may they in each other. With no blocks every slot is out of range: the caches are never
  // written.
  std::uintptr_t first[3], last[3];
  int outputs = 0;
  if (a.num_blocks > 0) {
    if (!detail::caches_disjoint(a.k_cache, a.v_cache, a.num_blocks, a.block_size, heads, p.head_dim)) {
      return invalid("k_cache and v_cache overlap (one buffer may hold both only as alternating parts of each block, "
                     "with equal strides)");
    }
    detail::cache_byte_extent(a.k_cache, a.num_blocks, a.block_size, heads, p.head_dim, first[0], last[0]);
    detail::cache_byte_extent(a.v_cache, a.num_blocks, a.block_size, heads, p.head_dim, first[1], last[1]);
    outputs = 2;
  }
  if (a.q_fp8 != nullptr) {
    detail::byte_extent(detail::ViewGeometry{a.q_fp8, p.q.num_heads, a.q_fp8_token_stride, a.q_fp8_head_stride},
                        p.num_tokens, p.head_dim, sizeof(__nv_fp8_e4m3), first[outputs], last[outputs]);
    for (int c = 0; c < outputs; ++c) {
      if (!detail::bytes_disjoint(first[c], last[c], first[outputs], last[outputs])) {
        return invalid("q_fp8 overlaps a cache");
      }
    }
    ++outputs;
  }
  const detail::ViewGeometry views[] = {
      {p.q.x, p.q.num_heads, p.q.x_token_stride, p.q.x_head_stride},
      {resolved.q.y, p.q.num_heads, resolved.q.y_token_stride, resolved.q.y_head_stride},
      {resolved.k.x, heads, resolved.k.x_token_stride, resolved.k.x_head_stride},
      {resolved.k.y, heads, resolved.k.y_token_stride, resolved.k.y_head_stride},
      v_view};
  for (const detail::ViewGeometry& view : views) {
    if (view.heads == 0) continue;  // q absent
    detail::ViewGeometry one = view;
    if (one.heads > 1 && one.head_stride == 0) one.heads = 1;  // a broadcast input is one head
    std::uintptr_t b0, b1;
    detail::byte_extent(one, p.num_tokens, p.head_dim, sizeof(T), b0, b1);
    for (int c = 0; c < outputs; ++c) {
      if (!detail::bytes_disjoint(first[c], last[c], b0, b1)) {
        return invalid(a.q_fp8 != nullptr && c == outputs - 1 ? "q_fp8 overlaps q, k or v" : "a cache overlaps q, k or v");
      }
    }
  }
  const detail::ByteRange none{};
  return detail::side_arguments_apart(resolved, a,
                                      {outputs > 0 ? detail::ByteRange{first[0], last[0]} : none,
                                       outputs > 1 ? detail::ByteRange{first[1], last[1]} : none,
                                       outputs > 2 ? detail::ByteRange{first[2], last[2]} : none});
}

}  // namespace detail

/// Checks every argument of a RoPE + KV-cache append launch (`rope_forward_append`):
/// `cudaErrorInvalidValue` and the reason on the first problem found. The RoPE part is checked
/// as `validate(params)` does (k.y may be null here: no write-back).
template <typename T, typename C>
Status validate(const RopeParams<T>& p, const KvCacheAppend<T, C>& a) {
  return detail::validate_append(p, a, detail::AppendParts{});
}

}  // namespace rope
