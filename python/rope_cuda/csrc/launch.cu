// SPDX-License-Identifier: MIT
// Instantiates the library's launchers (RoPE, QK-norm + RoPE) for the three tensor types; nothing
// else lives here.

#include "launch.h"

#include <rope/launch.cuh>
#include <rope/qk_norm.cuh>

namespace rope_cuda {

template <typename T>
cudaError_t launch(const rope::RopeParams<T>& params, bool inverse, cudaStream_t stream, bool programmatic) {
  rope::LaunchOptions options;
  options.programmatic_dependent_launch = programmatic;
  return inverse ? rope::rope_backward(params, stream, options) : rope::rope_forward(params, stream, options);
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

}  // namespace rope_cuda
