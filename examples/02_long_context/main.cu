// SPDX-License-Identifier: MIT
// Long context: fp32 q [T, 32, 128] at positions from 100,000 to past 1,000,000, with cos/sin
// computed in the kernel from Llama-3.1 scaled frequencies (base 500000, factor 8). Reports the
// error against a double-precision computation, and what a plain fp32 angle would have cost.
//
//   02_long_context [T]      (default T = 8192)

#include <cmath>
#include <cstdint>
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
  const long tokens = argc > 1 ? std::atol(argv[1]) : 8192;
  const int heads = 32, dim = 128, half = dim / 2;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device found: nothing to run\n");
    return 77;
  }

  // Llama-3.1's frequencies, made on the host once (as a model loader would).
  std::vector<float> inv_freq(half);
  float attention_scaling = 1.0f;
  const rope::Status made = rope::compute_inv_freq(rope::RopeScaling::llama3(500000.0), dim, inv_freq.data(),
                                                   &attention_scaling);
  if (!made.ok()) {
    std::fprintf(stderr, "compute_inv_freq: %s\n", made.message);
    return 1;
  }

  // Positions past 100,000; token 0 sits exactly at 1,000,000.
  std::mt19937_64 rng(std::random_device{}());
  std::vector<std::int64_t> positions(tokens);
  for (long t = 0; t < tokens; ++t) positions[t] = 100000 + static_cast<std::int64_t>(rng() % 1000000);
  positions[0] = 1000000;
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> q(tokens * heads * dim), out(q.size());
  for (float& v : q) v = uniform(rng);

  float *d_q, *d_freq;
  std::int64_t* d_pos;
  CHECK_CUDA(cudaMalloc(&d_q, q.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_freq, half * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_pos, tokens * sizeof(std::int64_t)));
  CHECK_CUDA(cudaMemcpy(d_q, q.data(), q.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_freq, inv_freq.data(), half * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_pos, positions.data(), tokens * sizeof(std::int64_t), cudaMemcpyHostToDevice));

  rope::RopeParams<float> params;
  params.num_tokens = tokens;
  params.head_dim = dim;
  params.q = rope::packed_heads<float>(d_q, d_q, heads, dim);
  params.cos_sin = rope::computed_cos_sin(d_freq, attention_scaling);
  params.positions = rope::positions(d_pos);
  if (rope::rope_forward(params) != cudaSuccess) {
    std::fprintf(stderr, "rope_forward failed: %s\n", rope::last_error_message());
    return 1;
  }
  CHECK_CUDA(cudaMemcpy(out.data(), d_q, q.size() * sizeof(float), cudaMemcpyDeviceToHost));

  // Double precision: the angle is position * (the fp32 frequency), exactly.
  double err2 = 0, ref2 = 0, err2_at_1m = 0, ref2_at_1m = 0, naive_err2 = 0;
  for (long t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const long o = (t * heads + h) * dim;
      for (int i = 0; i < half; ++i) {
        const double angle = static_cast<double>(positions[t]) * inv_freq[i];
        const double c = std::cos(angle) * attention_scaling, s = std::sin(angle) * attention_scaling;
        const double x1 = q[o + i], x2 = q[o + i + half];
        const double r1 = x1 * c - x2 * s, r2 = x1 * s + x2 * c;
        const double e = (out[o + i] - r1) * (out[o + i] - r1) + (out[o + i + half] - r2) * (out[o + i + half] - r2);
        err2 += e;
        ref2 += r1 * r1 + r2 * r2;
        if (positions[t] == 1000000) err2_at_1m += e, ref2_at_1m += r1 * r1 + r2 * r2;
        // What a plain fp32 product and fp32 sin/cos would give, for comparison.
        const float naive_angle = static_cast<float>(positions[t]) * inv_freq[i];
        const double n1 = x1 * std::cos(naive_angle) - x2 * std::sin(naive_angle);
        const double n2 = x1 * std::sin(naive_angle) + x2 * std::cos(naive_angle);
        naive_err2 += (n1 - r1) * (n1 - r1) + (n2 - r2) * (n2 - r2);
      }
    }
  }
  const double rel = std::sqrt(err2 / ref2), rel_1m = std::sqrt(err2_at_1m / ref2_at_1m);
  std::printf("q [%ld, %d, %d] fp32, Llama-3.1 scaling, positions 100000..1100000, cos/sin computed in the kernel\n",
              tokens, heads, dim);
  std::printf("relative L2 error vs double: %.3g overall, %.3g at position 1000000\n", rel, rel_1m);
  std::printf("(a plain fp32 angle would give %.3g)\n", std::sqrt(naive_err2 / ref2));
  if (!(rel_1m <= 2e-6) || !(rel <= 2e-6)) {
    std::fprintf(stderr, "error above 2e-6\n");
    return 1;
  }
  std::printf("Correctness Check Passed!\n");
  return 0;
}
