// SPDX-License-Identifier: MIT
// The original case: N tokens x 128 dims, fp32, one cos/sin row per token, half-split pairs.
// Rotates on the GPU with the one-call launcher and checks every element against the CPU.
//
//   00_basic [N]      (default N = 63488)

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <rope/rope.cuh>

#define CHECK_CUDA(call)                                                              \
  do {                                                                                \
    const cudaError_t e = (call);                                                     \
    if (e != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e));          \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 63488;
  const int dim = 128, half = dim / 2;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device found: nothing to run\n");
    return 77;
  }

  // Inputs: random x; cos/sin of angle t * 10000^(-2i/dim) for token t, pair i.
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(n * dim), cos(n * half), sin(n * half), y(n * dim);
  for (float& v : x) v = uniform(rng);
  for (long t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(t) * std::pow(10000.0, -2.0 * i / dim);
      cos[t * half + i] = static_cast<float>(std::cos(angle));
      sin[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }

  float *d_x, *d_cos, *d_sin, *d_y;
  CHECK_CUDA(cudaMalloc(&d_x, x.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_cos, cos.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_sin, sin.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_y, y.size() * sizeof(float)));
  CHECK_CUDA(cudaMemcpy(d_x, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_cos, cos.data(), cos.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_sin, sin.data(), sin.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemset(d_y, 0xff, y.size() * sizeof(float)));  // NaN: unwritten elements show

  const cudaError_t launched = rope::rope_forward(d_x, d_cos, d_sin, d_y, n, dim);
  if (launched != cudaSuccess) {
    std::fprintf(stderr, "rope_forward failed: %s\n", rope::last_error_message());
    return 1;
  }
  CHECK_CUDA(cudaMemcpy(y.data(), d_y, y.size() * sizeof(float), cudaMemcpyDeviceToHost));

  // CPU check: y1 = x1 cos - x2 sin, y2 = x1 sin + x2 cos, in double.
  double max_err = 0.0;
  for (long t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      const double x1 = x[t * dim + i], x2 = x[t * dim + i + half];
      const double c = cos[t * half + i], s = sin[t * half + i];
      const double e1 = std::fabs(y[t * dim + i] - (x1 * c - x2 * s));
      const double e2 = std::fabs(y[t * dim + i + half] - (x1 * s + x2 * c));
      if (!(e1 <= 1e-5) || !(e2 <= 1e-5)) {
        std::fprintf(stderr, "Mismatch at token %ld pair %d: error %g / %g\n", t, i, e1, e2);
        return 1;
      }
      max_err = std::fmax(max_err, std::fmax(e1, e2));
    }
  }
  std::printf("%ld tokens x %d dims, fp32: max abs error %.3g\n", n, dim, max_err);
  std::printf("Correctness Check Passed!\n");
  cudaFree(d_x);
  cudaFree(d_cos);
  cudaFree(d_sin);
  cudaFree(d_y);
  return 0;
}
