// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// An attention prologue's stages in the forms the kernel and its checks take: the cache and
/// q_fp8 as one KvCacheAppend, and which append stage type an instance has.

#include <rope/kv_cache_types.cuh>
#include <rope/prologue_types.cuh>

namespace rope {
namespace detail {

/// The prologue's cache and q_fp8 as one KvCacheAppend (a default one, with slots unset, when
/// there is no cache).
template <typename T, typename C, typename W>
KvCacheAppend<T, C> prologue_append(const AttentionPrologue<T, C, W>& prologue) {
  KvCacheAppend<T, C> a = prologue.cache != nullptr ? *prologue.cache : KvCacheAppend<T, C>{};
  a.q_fp8 = prologue.q_fp8.data;
  a.q_fp8_token_stride = prologue.q_fp8.token_stride;
  a.q_fp8_head_stride = prologue.q_fp8.head_stride;
  a.q_scale = prologue.q_fp8.scale;
  return a;
}

}  // namespace detail
}  // namespace rope
