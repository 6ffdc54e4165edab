// SPDX-License-Identifier: MIT
// Instantiates the library's launchers (RoPE, RoPE + KV append, QK-norm + RoPE) for the three
// tensor types; nothing else lives here.

#include "launch.h"

#include <rope/kv_cache.cuh>
#include <rope/launch.cuh>
#include <rope/qk_norm.cuh>

namespace rope_cuda {

template <typename T>
cudaError_t launch(const rope::RopeParams<T>& params, bool inverse, cudaStream_t stream, bool programmatic) {
  rope::LaunchOptions options;
  options.programmatic_dependent_launch = programmatic;
  return inverse ? rope::rope_backward(params, stream, options) : rope::rope_forward(params, stream, options);
}

template <typename T, typename C>
cudaError_t launch_append(const rope::RopeParams<T>& params, const rope::KvCacheAppend<T, C>& append,
                          cudaStream_t stream, bool programmatic) {
  rope::LaunchOptions options;
  options.programmatic_dependent_launch = programmatic;
  return rope::rope_forward_append(params, append, stream, options);
}

template <typename T>
cudaError_t launch_qk_norm(const rope::RopeParams<T>& params, const rope::QkNorm<T, T>& norm, cudaStream_t stream,
                           bool programmatic) {
  rope::LaunchOptions options;
  options.programmatic_dependent_launch = programmatic;
  return rope::rope_forward_qk_norm(params, norm, stream, options);
}

template cudaError_t launch<float>(const rope::RopeParams<float>&, bool, cudaStream_t, bool);
template cudaError_t launch<__half>(const rope::RopeParams<__half>&, bool, cudaStream_t, bool);
template cudaError_t launch<__nv_bfloat16>(const rope::RopeParams<__nv_bfloat16>&, bool, cudaStream_t, bool);

template cudaError_t launch_qk_norm<float>(const rope::RopeParams<float>&, const rope::QkNorm<float, float>&,
                                          cudaStream_t, bool);
template cudaError_t launch_qk_norm<__half>(const rope::RopeParams<__half>&, const rope::QkNorm<__half, __half>&,
                                           cudaStream_t, bool);
template cudaError_t launch_qk_norm<__nv_bfloat16>(const rope::RopeParams<__nv_bfloat16>&,
                                                  const rope::QkNorm<__nv_bfloat16, __nv_bfloat16>&, cudaStream_t, bool);

#define ROPE_CUDA_APPEND(T, C)                                                                               \
  template cudaError_t launch_append<T, C>(const rope::RopeParams<T>&, const rope::KvCacheAppend<T, C>&, cudaStream_t, \
                                           bool);
ROPE_CUDA_APPEND(float, float)
ROPE_CUDA_APPEND(float, __nv_fp8_e4m3)
ROPE_CUDA_APPEND(__half, __half)
ROPE_CUDA_APPEND(__half, __nv_fp8_e4m3)
ROPE_CUDA_APPEND(__nv_bfloat16, __nv_bfloat16)
ROPE_CUDA_APPEND(__nv_bfloat16, __nv_fp8_e4m3)
#undef ROPE_CUDA_APPEND

}  // namespace rope_cuda
