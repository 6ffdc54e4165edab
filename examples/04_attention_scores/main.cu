// SPDX-License-Identifier: MIT
// RoPE inside your own kernel, through the device API (<rope/device.cuh>): a tiny causal
// attention-score kernel, scores[h][i][j] = q_i . k_j / sqrt(d) for j <= i, that rotates q and k
// while it loads them into shared memory instead of running a separate RoPE pass. Llama-3 style:
// 4 q heads sharing 1 k head (GQA), 128 dims, bf16, frequencies from rope::compute_inv_freq.
// Checked against a double-precision reference of RoPE followed by the dot products.
//
//   04_attention_scores [T]      (default T = 64, at most 128)

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <cuda_bf16.h>

#include <rope/device.cuh>
#include <rope/rope.cuh>

#define CHECK_CUDA(call)                                                              \
  do {                                                                                \
    const cudaError_t e = (call);                                                     \
    if (e != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e));          \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

namespace {

constexpr int kDim = 128, kQHeads = 4, kMaxTokens = 128;  // 32 KiB of rotated keys in shared memory
constexpr int kVec = 8;  // pairs per access: 8 bf16 = 16 bytes, so 8 threads cover a 128-dim head
constexpr int kGroup = kDim / 2 / kVec;

// One block per (q head, query token i), 128 threads. Its q row and each key row are rotated by
// groups of 8 threads straight from global memory into shared memory, then reduced.
__global__ void causal_scores(const __nv_bfloat16* q, const __nv_bfloat16* k, const std::int64_t* positions,
                              rope::CosSin cos_sin, int tokens, float* scores) {
  const int head = blockIdx.y, i = blockIdx.x;
  __shared__ alignas(16) __nv_bfloat16 q_rot[kDim];
  __shared__ alignas(16) __nv_bfloat16 k_rot[kMaxTokens][kDim];
  const int group = threadIdx.x / kGroup;  // 16 groups of 8 threads
  const rope::device::HeadGroup me{static_cast<int>(threadIdx.x % kGroup), kGroup};
  if (group == 0) {
    rope::device::rotate_head<kVec, rope::Style::kHalfSplit>(me, q + (std::int64_t{i} * kQHeads + head) * kDim, q_rot,
                                                             kDim, kDim, cos_sin, positions[i]);
  }
  for (int j = group; j <= i; j += blockDim.x / kGroup) {
    rope::device::rotate_head<kVec, rope::Style::kHalfSplit>(me, k + std::int64_t{j} * kDim, k_rot[j], kDim, kDim,
                                                             cos_sin, positions[j]);
  }
  __syncthreads();
  // Thread j computes score (i, j) from the rotated rows (bf16, as an attention kernel would
  // feed its matrix units), accumulating in fp32.
  for (int j = threadIdx.x; j <= i; j += blockDim.x) {
    float dot = 0.0f;
    for (int d = 0; d < kDim; ++d) dot += __bfloat162float(q_rot[d]) * __bfloat162float(k_rot[j][d]);
    scores[(std::int64_t{head} * tokens + i) * tokens + j] = dot * rsqrtf(static_cast<float>(kDim));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int tokens = argc > 1 ? std::atoi(argv[1]) : 64;
  if (tokens < 1 || tokens > kMaxTokens) {
    std::fprintf(stderr, "T must be in [1, %d]\n", kMaxTokens);
    return 2;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device found: nothing to run\n");
    return 77;
  }

  // Llama-3.1-8B's frequencies (base 500000, llama3 scaling), positions of a decode-like window.
  std::vector<float> inv_freq(kDim / 2);
  float attention = 1.0f;
  const rope::Status freq = rope::compute_inv_freq(rope::RopeScaling::llama3(500000.0), kDim, inv_freq.data(),
                                                   &attention);
  if (!freq.ok()) {
    std::fprintf(stderr, "compute_inv_freq: %s\n", freq.message);
    return 1;
  }
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<__nv_bfloat16> q(std::size_t{static_cast<unsigned>(tokens)} * kQHeads * kDim), k(std::size_t{static_cast<unsigned>(tokens)} * kDim);
  for (auto& v : q) v = __float2bfloat16(uniform(rng));
  for (auto& v : k) v = __float2bfloat16(uniform(rng));
  std::vector<std::int64_t> positions(tokens);
  for (int t = 0; t < tokens; ++t) positions[t] = 100000 + t;

  __nv_bfloat16 *d_q, *d_k;
  std::int64_t* d_pos;
  float *d_freq, *d_scores;
  const std::size_t score_count = std::size_t{kQHeads} * tokens * tokens;
  CHECK_CUDA(cudaMalloc(&d_q, q.size() * sizeof(q[0])));
  CHECK_CUDA(cudaMalloc(&d_k, k.size() * sizeof(k[0])));
  CHECK_CUDA(cudaMalloc(&d_pos, positions.size() * sizeof(positions[0])));
  CHECK_CUDA(cudaMalloc(&d_freq, inv_freq.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_scores, score_count * sizeof(float)));
  CHECK_CUDA(cudaMemcpy(d_q, q.data(), q.size() * sizeof(q[0]), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_k, k.data(), k.size() * sizeof(k[0]), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_pos, positions.data(), positions.size() * sizeof(positions[0]), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_freq, inv_freq.data(), inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemset(d_scores, 0, score_count * sizeof(float)));

  causal_scores<<<dim3(static_cast<unsigned>(tokens), kQHeads), 128>>>(d_q, d_k, d_pos, rope::computed_cos_sin(d_freq, attention),
                                                                tokens, d_scores);
  CHECK_CUDA(cudaGetLastError());
  std::vector<float> scores(score_count);
  CHECK_CUDA(cudaMemcpy(scores.data(), d_scores, score_count * sizeof(float), cudaMemcpyDeviceToHost));

  // Reference: rotate in double with the exact angle, then dot products in double. The kernel's
  // q and k rows are rounded to bf16 after the rotation (relative 2^-9 per element), so each of
  // the 128 products (|q_d k_d| <= 2: rotated elements of inputs in [-1, 1] stay below sqrt(2))
  // may be off by 2 * 2 * 2^-9, and a score by at most 128 * 2^-7 / sqrt(128) < 0.09.
  auto rotated = [&](const __nv_bfloat16* row, std::int64_t position, std::vector<double>& out) {
    for (int p = 0; p < kDim / 2; ++p) {
      const double angle = static_cast<double>(position) * inv_freq[p];
      const double x1 = __bfloat162float(row[p]), x2 = __bfloat162float(row[p + kDim / 2]);
      out[p] = attention * (x1 * std::cos(angle) - x2 * std::sin(angle));
      out[p + kDim / 2] = attention * (x1 * std::sin(angle) + x2 * std::cos(angle));
    }
  };
  std::vector<double> qr(kDim), kr(kDim);
  double max_err = 0.0;
  for (int h = 0; h < kQHeads; ++h) {
    for (int i = 0; i < tokens; ++i) {
      rotated(&q[(std::size_t{static_cast<unsigned>(i)} * kQHeads + h) * kDim], positions[i], qr);
      for (int j = 0; j <= i; ++j) {
        rotated(&k[std::size_t{static_cast<unsigned>(j)} * kDim], positions[j], kr);
        double dot = 0.0;
        for (int d = 0; d < kDim; ++d) dot += qr[d] * kr[d];
        const double err = std::fabs(scores[(std::size_t{static_cast<unsigned>(h)} * tokens + i) * tokens + j] - dot / std::sqrt(double{kDim}));
        if (!(err <= 0.09)) {
          std::fprintf(stderr, "Mismatch at head %d, query %d, key %d: error %g\n", h, i, j, err);
          return 1;
        }
        max_err = std::fmax(max_err, err);
      }
    }
  }
  std::printf("causal scores, %d q heads x %d tokens x %d dims, bf16, RoPE applied while loading: max abs error %.3g\n",
              kQHeads, tokens, kDim, max_err);
  std::printf("Correctness Check Passed!\n");
  cudaFree(d_q);
  cudaFree(d_k);
  cudaFree(d_pos);
  cudaFree(d_freq);
  cudaFree(d_scores);
  return 0;
}
