// SPDX-License-Identifier: MIT
// A downstream program: include the umbrella header, launch once, report the result.
#include <cstdio>

#include <rope/rope.cuh>

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::puts("no CUDA device: built and linked only");
    return 0;
  }
  const int tokens = 4, dim = 64;
  float *x, *cos, *sin;
  cudaMalloc(&x, tokens * dim * sizeof(float));
  cudaMalloc(&cos, tokens * dim / 2 * sizeof(float));
  cudaMalloc(&sin, tokens * dim / 2 * sizeof(float));
  cudaMemset(cos, 0, tokens * dim / 2 * sizeof(float));
  cudaMemset(sin, 0, tokens * dim / 2 * sizeof(float));
  const cudaError_t err = rope::rope_forward(x, cos, sin, x, tokens, dim);
  std::printf("rope_forward: %s\n", rope::last_error_message());
  return err == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess ? 0 : 1;
}
