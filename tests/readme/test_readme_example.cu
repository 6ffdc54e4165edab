// SPDX-License-Identifier: MIT
// The README's C++ example, compiled as the README shows it (CMake copies its first ```cpp block
// into readme_example.cuh at configure time) and run on the GPU against a double-precision
// rotation of the same inputs.

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "readme_example.cuh"

namespace {

bool gpu_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// On the host too: a bad argument is refused with a reason before anything touches the GPU.
TEST(ReadmeExample, RefusesAMissingTable) {
  EXPECT_EQ(rotate_qk(nullptr, nullptr, nullptr, nullptr, nullptr, 4, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_STRNE(rope::last_error_message(), "");
}

TEST(ReadmeExample, RotatesLikeTheFormula) {
  if (!gpu_available()) GTEST_SKIP() << "no CUDA device";
  const std::int64_t tokens = 37, rows = 4096;
  const int dim = 128, half = 64, q_heads = 32, k_heads = 8;
  std::mt19937 rng(20261207);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::uniform_int_distribution<std::int64_t> position(0, rows - 1);
  std::vector<__nv_bfloat16> q(tokens * q_heads * dim), k(tokens * k_heads * dim);
  for (auto& v : q) v = __float2bfloat16(uniform(rng));
  for (auto& v : k) v = __float2bfloat16(uniform(rng));
  std::vector<std::int64_t> positions(tokens);
  for (auto& p : positions) p = position(rng);
  std::vector<float> cos(rows * half), sin(rows * half);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(r) * std::pow(500000.0, -2.0 * i / dim);
      cos[r * half + i] = static_cast<float>(std::cos(angle));
      sin[r * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  __nv_bfloat16 *dq, *dk;
  float *dcos, *dsin;
  std::int64_t* dpos;
  ASSERT_EQ(cudaMalloc(&dq, q.size() * sizeof(q[0])), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dk, k.size() * sizeof(k[0])), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dcos, cos.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dsin, sin.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dpos, positions.size() * sizeof(std::int64_t)), cudaSuccess);
  cudaMemcpy(dq, q.data(), q.size() * sizeof(q[0]), cudaMemcpyHostToDevice);
  cudaMemcpy(dk, k.data(), k.size() * sizeof(k[0]), cudaMemcpyHostToDevice);
  cudaMemcpy(dcos, cos.data(), cos.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(dsin, sin.data(), sin.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(dpos, positions.data(), positions.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice);

  ASSERT_EQ(rotate_qk(dq, dk, dcos, dsin, dpos, tokens, rows, nullptr), cudaSuccess) << rope::last_error_message();
  std::vector<__nv_bfloat16> q_out(q.size()), k_out(k.size());
  ASSERT_EQ(cudaMemcpy(q_out.data(), dq, q.size() * sizeof(q[0]), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(k_out.data(), dk, k.size() * sizeof(k[0]), cudaMemcpyDeviceToHost), cudaSuccess);

  double max_abs = 0;
  auto check = [&](const std::vector<__nv_bfloat16>& in, const std::vector<__nv_bfloat16>& out, int heads) {
    for (std::int64_t t = 0; t < tokens; ++t) {
      for (int h = 0; h < heads; ++h) {
        const std::int64_t base = (t * heads + h) * dim;
        for (int i = 0; i < half; ++i) {
          const double x1 = __bfloat162float(in[base + i]), x2 = __bfloat162float(in[base + i + half]);
          const double c = cos[positions[t] * half + i], s = sin[positions[t] * half + i];
          max_abs = std::fmax(max_abs, std::fabs(__bfloat162float(out[base + i]) - (x1 * c - x2 * s)));
          max_abs = std::fmax(max_abs, std::fabs(__bfloat162float(out[base + i + half]) - (x1 * s + x2 * c)));
        }
      }
    }
  };
  check(q, q_out, q_heads);
  check(k, k_out, k_heads);
  EXPECT_LT(max_abs, 1.6e-2);  // bf16 rounding of outputs below 2 in magnitude; NaN fails too
  cudaFree(dq);
  cudaFree(dk);
  cudaFree(dcos);
  cudaFree(dsin);
  cudaFree(dpos);
}

}  // namespace
