// SPDX-License-Identifier: MIT
// Llama-3 style attention input: bf16 q [T, 32, 128] and k [T, 8, 128] (GQA), rotated in place
// in one launch, with int64 positions into an fp32 cos/sin table built on the host for
// base 500000. Checks against a double-precision CPU computation.
//
//   01_llama [T]      (default T = 4096)

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <cuda_bf16.h>

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
  const long tokens = argc > 1 ? std::atol(argv[1]) : 4096;
  const int q_heads = 32, k_heads = 8, dim = 128, half = dim / 2;
  const long max_positions = 8192;
  const double base = 500000.0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device found: nothing to run\n");
    return 77;
  }

  // The cos/sin table: row p holds cos/sin(p * base^(-2i/dim)) for i < dim/2.
  std::vector<float> cos(max_positions * half), sin(max_positions * half);
  for (long p = 0; p < max_positions; ++p) {
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) * std::pow(base, -2.0 * i / dim);
      cos[p * half + i] = static_cast<float>(std::cos(angle));
      sin[p * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  // A batch of sequences packed together: positions restart per sequence (ragged prefill).
  std::mt19937 rng(std::random_device{}());
  std::vector<std::int64_t> positions(tokens);
  for (long t = 0, start = 0; t < tokens; ++t) {
    if (t > 0 && rng() % 700 == 0) start = t;
    positions[t] = (t - start) % max_positions;
  }
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<__nv_bfloat16> q(tokens * q_heads * dim), k(tokens * k_heads * dim);
  for (auto& v : q) v = __float2bfloat16(uniform(rng));
  for (auto& v : k) v = __float2bfloat16(uniform(rng));

  __nv_bfloat16 *d_q, *d_k;
  float *d_cos, *d_sin;
  std::int64_t* d_pos;
  CHECK_CUDA(cudaMalloc(&d_q, q.size() * sizeof(q[0])));
  CHECK_CUDA(cudaMalloc(&d_k, k.size() * sizeof(k[0])));
  CHECK_CUDA(cudaMalloc(&d_cos, cos.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_sin, sin.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_pos, positions.size() * sizeof(std::int64_t)));
  CHECK_CUDA(cudaMemcpy(d_q, q.data(), q.size() * sizeof(q[0]), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_k, k.data(), k.size() * sizeof(k[0]), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_cos, cos.data(), cos.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_sin, sin.data(), sin.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_pos, positions.data(), positions.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice));

  // q and k in place, in one launch; the cos/sin of each token are read once for all 40 heads.
  rope::RopeParams<__nv_bfloat16> params;
  params.num_tokens = tokens;
  params.head_dim = dim;
  params.q = rope::packed_heads<__nv_bfloat16>(d_q, d_q, q_heads, dim);
  params.k = rope::packed_heads<__nv_bfloat16>(d_k, d_k, k_heads, dim);
  params.cos_sin = rope::cos_sin_table<float>(d_cos, d_sin, max_positions, half);
  params.positions = rope::positions(d_pos);
  if (rope::rope_forward(params) != cudaSuccess) {
    std::fprintf(stderr, "rope_forward failed: %s\n", rope::last_error_message());
    return 1;
  }
  std::vector<__nv_bfloat16> q_out(q.size()), k_out(k.size());
  CHECK_CUDA(cudaMemcpy(q_out.data(), d_q, q.size() * sizeof(q[0]), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(k_out.data(), d_k, k.size() * sizeof(k[0]), cudaMemcpyDeviceToHost));

  // Double-precision check of both tensors: relative L2 error against bf16's rounding.
  double err2 = 0.0, ref2 = 0.0;
  auto check = [&](const std::vector<__nv_bfloat16>& in, const std::vector<__nv_bfloat16>& out, int heads) {
    for (long t = 0; t < tokens; ++t) {
      for (int h = 0; h < heads; ++h) {
        const long o = (t * heads + h) * dim;
        for (int i = 0; i < half; ++i) {
          const double x1 = __bfloat162float(in[o + i]), x2 = __bfloat162float(in[o + i + half]);
          const double c = cos[positions[t] * half + i], s = sin[positions[t] * half + i];
          const double r1 = x1 * c - x2 * s, r2 = x1 * s + x2 * c;
          const double e1 = __bfloat162float(out[o + i]) - r1, e2 = __bfloat162float(out[o + i + half]) - r2;
          err2 += e1 * e1 + e2 * e2;
          ref2 += r1 * r1 + r2 * r2;
        }
      }
    }
  };
  check(q, q_out, q_heads);
  check(k, k_out, k_heads);
  const double rel = std::sqrt(err2 / ref2);
  std::printf("q [%ld, %d, %d] + k [%ld, %d, %d] bf16, positions into a %ld-row table: relative L2 error %.3g\n",
              tokens, q_heads, dim, tokens, k_heads, dim, max_positions, rel);
  if (!(rel < 8e-3)) {
    std::fprintf(stderr, "error above bf16 rounding (8e-3)\n");
    return 1;
  }
  std::printf("Correctness Check Passed!\n");
  return 0;
}
