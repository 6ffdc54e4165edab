// SPDX-License-Identifier: MIT
// A downstream program linking rope::precompiled: the launchers below are the library's instances
// (its check_symbols.cmake proves this object compiled no kernel). Bad arguments are rejected by
// the library's code without a GPU; with a GPU, one launch is checked against the formula.
#include <cstdio>
#include <cstring>
#include <vector>

#include <rope/rope.cuh>

#if !defined(ROPE_PRECOMPILED)
#error "rope::precompiled defines ROPE_PRECOMPILED for its users"
#endif

namespace {

using bf16 = __nv_bfloat16;

bool rejected(cudaError_t err, const char* launcher) {
  const char* why = rope::last_error_message();
  const bool ok = err == cudaErrorInvalidValue && std::strcmp(why, "head_dim must be even") == 0;
  std::printf("%s with an odd head_dim: %s (%s)\n", launcher, why, ok ? "rejected as expected" : "WRONG");
  return ok;
}

}  // namespace

int main() {
  // Every launcher family the library holds for bf16, with an odd head_dim: no launch, no GPU.
  rope::RopeParams<bf16> bad;
  bad.num_tokens = 1;
  bad.head_dim = 63;
  bad.q.num_heads = 1;
  bad.k.num_heads = 1;  // append launches need k
  rope::KvCacheAppend<bf16, bf16> append;
  rope::KvCacheAppend<bf16, __nv_fp8_e4m3> append_fp8;
  rope::QkNorm<bf16, bf16> norm;
  rope::QkNorm<bf16, float> norm_fp32;
  bool ok = rejected(rope::rope_forward(bad), "rope_forward") & rejected(rope::rope_backward(bad), "rope_backward") &
            rejected(rope::rope_forward_append(bad, append), "rope_forward_append<bf16, bf16>") &
            rejected(rope::rope_forward_append(bad, append_fp8), "rope_forward_append<bf16, fp8>") &
            rejected(rope::rope_forward_qk_norm(bad, norm), "rope_forward_qk_norm<bf16, bf16>") &
            rejected(rope::rope_forward_qk_norm(bad, norm_fp32), "rope_forward_qk_norm<bf16, float>") &
            rejected(rope::rope_forward<bf16>(nullptr, nullptr, nullptr, nullptr, 1, 63),
                     "rope_forward (one call)");
  if (!ok) return 1;

  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::puts("no CUDA device: linked and rejected bad arguments only");
    return 0;
  }
  // cos = 0, sin = 1 turns each half-split pair (a, b) into (-b, a): exact in bf16.
  const int tokens = 4, dim = 64, half = dim / 2;
  std::vector<bf16> x(tokens * dim), y(tokens * dim);
  for (int i = 0; i < tokens * dim; ++i) x[i] = __float2bfloat16(static_cast<float>(i % 251 - 125));
  const std::vector<float> cos(tokens * half, 0.0f), sin(tokens * half, 1.0f);
  bf16* dx = nullptr;
  float *dcos = nullptr, *dsin = nullptr;
  cudaMalloc(&dx, x.size() * sizeof(bf16));
  cudaMalloc(&dcos, cos.size() * sizeof(float));
  cudaMalloc(&dsin, sin.size() * sizeof(float));
  cudaMemcpy(dx, x.data(), x.size() * sizeof(bf16), cudaMemcpyHostToDevice);
  cudaMemcpy(dcos, cos.data(), cos.size() * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(dsin, sin.data(), sin.size() * sizeof(float), cudaMemcpyHostToDevice);
  const cudaError_t err = rope::rope_forward(dx, dcos, dsin, dx, tokens, dim);
  std::printf("rope_forward: %s\n", rope::last_error_message());
  if (err != cudaSuccess || cudaMemcpy(y.data(), dx, y.size() * sizeof(bf16), cudaMemcpyDeviceToHost) != cudaSuccess) {
    return 1;
  }
  int wrong = 0;
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < half; ++i) {
      const float a = __bfloat162float(x[t * dim + i]), b = __bfloat162float(x[t * dim + half + i]);
      wrong += __bfloat162float(y[t * dim + i]) != -b || __bfloat162float(y[t * dim + half + i]) != a;
    }
  }
  std::printf("rope_forward on the GPU: %d of %d pairs wrong\n", wrong, tokens * half);
  return wrong == 0 ? 0 : 1;
}
