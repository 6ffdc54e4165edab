// SPDX-License-Identifier: MIT
#pragma once
// Runs a launch on the host: the launcher's own validation, dispatch and launch shape, then the
// per-token body in a loop over (token, lane) exactly as the kernel's threads would run it.

#include <cstdint>

#include <rope/rope.cuh>

namespace rope_test {

/// Runs an already validated launch: dispatch (with the append stage `append`, or NoAppend),
/// launch shape, then the body for every (token, lane).
template <typename Policy, typename T, typename Append>
void run_body_on_host(const rope::RopeParams<T>& p, bool inverse, const Append& append, int lanes_override,
                      int* vec_out) {
  rope::detail::dispatch<Policy>(p, append, [&](auto style, auto vec, auto head_batch, auto multi_axis) {
    if (vec_out != nullptr) *vec_out = decltype(vec)::value;
    const rope::detail::LaunchShape shape = rope::detail::choose_launch_shape<Policy>(p, vec, head_batch);
    const int lanes = lanes_override > 0 ? lanes_override : shape.lanes_per_token;
    for (std::int64_t token = 0; token < p.num_tokens; ++token) {
      for (int lane = 0; lane < lanes; ++lane) {
        rope::detail::rotate_token<T, decltype(style)::value, decltype(vec)::value, decltype(head_batch)::value,
                                   decltype(multi_axis)::value, Append>(p, inverse, token, lane, lanes, append);
      }
    }
  });
}

/// `lanes_override` > 0 replaces the launcher's lanes per token, to exercise other splits.
/// Returns the vector width (pairs per access) the dispatch picked through `vec_out`.
/// `Policy` is the kernel's tuning policy (the launchers' default unless a test names another).
template <typename Policy = rope::detail::DefaultPolicy, typename T>
cudaError_t run_on_host(const rope::RopeParams<T>& p, bool inverse, int lanes_override = 0,
                        int* vec_out = nullptr) {
  const rope::Status status = rope::validate(p);
  if (!status.ok()) return status.error;
  run_body_on_host<Policy>(p, inverse, rope::detail::NoAppend{}, lanes_override, vec_out);
  return cudaSuccess;
}

/// A RoPE + KV-cache append launch on the host: the launcher's validation and conversion of the
/// arguments, then the body with the append stage for every (token, lane).
template <typename T, typename C>
cudaError_t run_append_on_host(const rope::RopeParams<T>& p, const rope::KvCacheAppend<T, C>& a,
                               int lanes_override = 0, int* vec_out = nullptr) {
  const rope::Status status = rope::validate(p, a);
  if (!status.ok()) return status.error;
  if (p.num_tokens == 0) return cudaSuccess;
  run_body_on_host<rope::detail::DefaultPolicy>(rope::detail::resolve_k_write_back(p), false,
                                                rope::detail::make_cache_append(p, a), lanes_override, vec_out);
  return cudaSuccess;
}

}  // namespace rope_test
