// SPDX-License-Identifier: MIT
// An engine's attention input path: each step's fused QKV buffer [T, 32 + 8 + 8, 128] (bf16) gets
// q rotated in place while the rotated k and the v of every token go straight into a paged KV
// cache (vLLM's NHD layout, 16-token blocks handed out from a shuffled free list), in one launch
// per step: a prefill of two prompts, then decode steps of one token per sequence, each step
// padded with one token whose slot is -1 (as a captured CUDA graph of fixed size would be).
// Run once with a bf16 cache and once with an FP8 E4M3 cache; afterwards every cache row of every
// sequence is checked against a double-precision CPU computation of RoPE(k) and v.
//
//   03_kv_cache_append [decode_steps]      (default 4)

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <type_traits>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <rope/rope.cuh>

#define CHECK_CUDA(call)                                                     \
  do {                                                                       \
    const cudaError_t e = (call);                                            \
    if (e != cudaSuccess) {                                                  \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e)); \
      return false;                                                          \
    }                                                                        \
  } while (0)

namespace {

constexpr int kQHeads = 32, kKvHeads = 8, kDim = 128, kBlockSize = 16, kNumBlocks = 64;
constexpr int kRow = (kQHeads + 2 * kKvHeads) * kDim;  // elements per token of the QKV buffer

float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
float to_float(__nv_fp8_e4m3 v) { return static_cast<float>(v); }

/// One sequence: its tokens' k and v inputs (kept for the check) and its block table.
struct Sequence {
  std::vector<int> blocks;
  std::vector<std::vector<float>> k, v;  // per position: [kKvHeads * kDim]
  std::int64_t length() const { return static_cast<std::int64_t>(k.size()); }
};

/// Runs prefill + decode with cache element type C; returns false on any failure.
template <typename C>
bool run(const char* name, int decode_steps, float k_scale, float v_scale, double tolerance) {
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<int> free_blocks(kNumBlocks);
  for (int b = 0; b < kNumBlocks; ++b) free_blocks[b] = b;
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  std::vector<Sequence> seqs(2);

  std::vector<float> inv_freq(kDim / 2);
  float attention_scaling = 1.0f;
  if (!rope::compute_inv_freq(rope::RopeScaling::unscaled(500000.0), kDim, inv_freq.data(), &attention_scaling).ok()) {
    return false;
  }
  const std::size_t cache_elems = std::size_t{kNumBlocks} * kBlockSize * kKvHeads * kDim;
  const long max_tokens = 200;
  __nv_bfloat16* d_qkv;
  C *d_k_cache, *d_v_cache;
  float* d_inv_freq;
  std::int64_t *d_positions, *d_slots;
  int* d_flag;
  CHECK_CUDA(cudaMalloc(&d_qkv, max_tokens * kRow * sizeof(__nv_bfloat16)));
  CHECK_CUDA(cudaMalloc(&d_k_cache, cache_elems * sizeof(C)));
  CHECK_CUDA(cudaMalloc(&d_v_cache, cache_elems * sizeof(C)));
  CHECK_CUDA(cudaMalloc(&d_inv_freq, inv_freq.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&d_positions, max_tokens * sizeof(std::int64_t)));
  CHECK_CUDA(cudaMalloc(&d_slots, max_tokens * sizeof(std::int64_t)));
  CHECK_CUDA(cudaMalloc(&d_flag, sizeof(int)));
  CHECK_CUDA(cudaMemset(d_flag, 0, sizeof(int)));
  CHECK_CUDA(cudaMemcpy(d_inv_freq, inv_freq.data(), inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice));

  // One step: `count[s]` new tokens of sequence s, then one padding token.
  auto step = [&](const std::vector<int>& count) -> bool {
    std::vector<__nv_bfloat16> qkv;
    std::vector<std::int64_t> positions, slots;
    for (std::size_t s = 0; s < seqs.size(); ++s) {
      for (int i = 0; i < count[s]; ++i) {
        Sequence& seq = seqs[s];
        const std::int64_t pos = seq.length();
        if (pos % kBlockSize == 0) {  // a new block from the free list
          seq.blocks.push_back(free_blocks.back());
          free_blocks.pop_back();
        }
        positions.push_back(pos);
        slots.push_back(std::int64_t{seq.blocks[pos / kBlockSize]} * kBlockSize + pos % kBlockSize);
        std::vector<float> k(kKvHeads * kDim), v(kKvHeads * kDim);
        for (int e = 0; e < kRow; ++e) {
          const __nv_bfloat16 x = __float2bfloat16(uniform(rng));
          qkv.push_back(x);
          const int kv = e - kQHeads * kDim;  // k, then v
          if (kv >= 0 && kv < kKvHeads * kDim) k[kv] = __bfloat162float(x);
          if (kv >= kKvHeads * kDim) v[kv - kKvHeads * kDim] = __bfloat162float(x);
        }
        seq.k.push_back(k);
        seq.v.push_back(v);
      }
    }
    positions.push_back(0);  // padding: rotated, never cached
    slots.push_back(-1);
    for (int e = 0; e < kRow; ++e) qkv.push_back(__float2bfloat16(0.5f));
    const std::int64_t tokens = static_cast<std::int64_t>(positions.size());
    if (cudaMemcpy(d_qkv, qkv.data(), qkv.size() * sizeof(qkv[0]), cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d_positions, positions.data(), tokens * sizeof(std::int64_t), cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(d_slots, slots.data(), tokens * sizeof(std::int64_t), cudaMemcpyHostToDevice) != cudaSuccess) {
      return false;
    }
    rope::RopeParams<__nv_bfloat16> p;
    p.num_tokens = tokens;
    p.head_dim = kDim;
    p.q = rope::strided_heads<__nv_bfloat16>(d_qkv, d_qkv, kQHeads, kRow, kDim);  // q in place
    p.k = rope::strided_heads<__nv_bfloat16>(d_qkv + kQHeads * kDim, nullptr, kKvHeads, kRow, kDim);  // cache only
    p.cos_sin = rope::computed_cos_sin(d_inv_freq, attention_scaling);
    p.positions = rope::positions(d_positions);
    rope::KvCacheAppend<__nv_bfloat16, C> a;
    a.v = d_qkv + (kQHeads + kKvHeads) * kDim;
    a.v_token_stride = kRow;
    a.v_head_stride = kDim;
    a.k_cache = rope::nhd_paged_cache<C>(d_k_cache, kBlockSize, kKvHeads, kDim);
    a.v_cache = rope::nhd_paged_cache<C>(d_v_cache, kBlockSize, kKvHeads, kDim);
    a.num_blocks = kNumBlocks;
    a.block_size = kBlockSize;
    a.slots = rope::slot_mapping(d_slots);
    if (std::is_same<C, __nv_fp8_e4m3>::value) a.k_scale = k_scale, a.v_scale = v_scale;
    a.slot_out_of_range_flag = d_flag;
    if (rope::rope_forward_append(p, a) != cudaSuccess) {
      std::fprintf(stderr, "rope_forward_append failed: %s\n", rope::last_error_message());
      return false;
    }
    return true;
  };

  if (!step({37, 70})) return false;  // prefill
  for (int i = 0; i < decode_steps; ++i) {
    if (!step({1, 1})) return false;  // decode
  }

  std::vector<C> k_cache(cache_elems), v_cache(cache_elems);
  int flag = 0;
  CHECK_CUDA(cudaMemcpy(k_cache.data(), d_k_cache, cache_elems * sizeof(C), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(v_cache.data(), d_v_cache, cache_elems * sizeof(C), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(&flag, d_flag, sizeof(int), cudaMemcpyDeviceToHost));
  cudaFree(d_qkv), cudaFree(d_k_cache), cudaFree(d_v_cache), cudaFree(d_inv_freq);
  cudaFree(d_positions), cudaFree(d_slots), cudaFree(d_flag);

  // Every cached row against RoPE(k) and v in double precision (FP8: dequantized with its scale).
  const double ks = std::is_same<C, __nv_fp8_e4m3>::value ? k_scale : 1.0;
  const double vs = std::is_same<C, __nv_fp8_e4m3>::value ? v_scale : 1.0;
  double err2 = 0, ref2 = 0;
  long rows = 0;
  for (const Sequence& seq : seqs) {
    for (std::int64_t pos = 0; pos < seq.length(); ++pos) {
      const std::int64_t row = (std::int64_t{seq.blocks[pos / kBlockSize]} * kBlockSize + pos % kBlockSize) * kKvHeads * kDim;
      ++rows;
      for (int h = 0; h < kKvHeads; ++h) {
        const float* k = &seq.k[pos][h * kDim];
        const float* v = &seq.v[pos][h * kDim];
        for (int i = 0; i < kDim / 2; ++i) {
          const double angle = static_cast<double>(pos) * inv_freq[i];
          const double c = std::cos(angle), s = std::sin(angle);
          const double want[2] = {k[i] * c - k[i + kDim / 2] * s, k[i] * s + k[i + kDim / 2] * c};
          const int at[2] = {i, i + kDim / 2};
          for (int j = 0; j < 2; ++j) {
            const double got = to_float(k_cache[row + h * kDim + at[j]]) * ks;
            err2 += (got - want[j]) * (got - want[j]);
            ref2 += want[j] * want[j];
          }
        }
        for (int d = 0; d < kDim; ++d) {
          const double got = to_float(v_cache[row + h * kDim + d]) * vs;
          err2 += (got - v[d]) * (got - v[d]);
          ref2 += static_cast<double>(v[d]) * v[d];
        }
      }
    }
  }
  const double rel = std::sqrt(err2 / ref2);
  std::printf("%s cache: prefill 37 + 70 tokens, %d decode steps, %ld cached rows: relative L2 error %.3g\n", name,
              decode_steps, rows, rel);
  if (flag != 0) std::fprintf(stderr, "a slot was reported out of range\n");
  if (!(rel < tolerance) || flag != 0) {
    std::fprintf(stderr, "%s cache: error above %.3g\n", name, tolerance);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const int decode_steps = argc > 1 ? std::atoi(argv[1]) : 4;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device found: nothing to run\n");
    return 77;
  }
  // bf16: its rounding (8e-3). FP8 E4M3: 3 mantissa bits, relative error up to 1/16 (rms ~3.6%).
  // The scales put the largest values (|k| <= 1.42, |v| <= 1) near the top of FP8's range.
  if (!run<__nv_bfloat16>("bf16", decode_steps, 1.0f, 1.0f, 8e-3)) return 1;
  if (!run<__nv_fp8_e4m3>("fp8 e4m3", decode_steps, 1.5f / 448.0f, 1.0f / 448.0f, 5e-2)) return 1;
  std::printf("Correctness Check Passed!\n");
  return 0;
}
