// SPDX-License-Identifier: MIT
// Host-only helper for tests/tools/inv_freq_vs_fp32.py (not built by CMake). Reads requests on
// stdin, one per line, and prints rope's results as C99 hex floats (exact):
//
//   freq TYPE BASE ROTARY_DIM FACTOR ORIGINAL MAXPOS LOW HIGH BETA_FAST BETA_SLOW SEQ_LEN [F...]
//     -> compute_inv_freq: "ok ATTN f0 f1 ...", or "error REASON". TYPE is the ScalingType
//        number; for LongRoPE F... holds rotary_dim/2 short factors then rotary_dim/2 long ones.
//   angle POSITION INV_FREQ_HEX
//     -> "r S C": device::reduced_half_turns and the host device::rotary_sincos (scale 1).
//        With --device as the first argument, every angle request is answered by a kernel
//        instead (the device rotary_sincos: sincospif), after all input is read.
//
// Build: nvcc -std=c++17 -O2 -arch=native -I include -o /tmp/rope_freq_dump tests/tools/rope_freq_dump.cu
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <rope/frequencies.cuh>

__global__ void angles_kernel(const long long* pos, const float* freq, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[3 * i] = rope::device::reduced_half_turns(pos[i], freq[i]);
  rope::device::rotary_sincos(pos[i], freq[i], 1.0f, out[3 * i + 1], out[3 * i + 2]);
}

static int device_angles(const std::vector<long long>& pos, const std::vector<float>& freq) {
  const int n = static_cast<int>(pos.size());
  long long* d_pos = nullptr;
  float *d_freq = nullptr, *d_out = nullptr;
  std::vector<float> out(3 * pos.size());
  if (cudaMalloc(&d_pos, pos.size() * sizeof(long long)) != cudaSuccess ||
      cudaMalloc(&d_freq, freq.size() * sizeof(float)) != cudaSuccess ||
      cudaMalloc(&d_out, out.size() * sizeof(float)) != cudaSuccess ||
      cudaMemcpy(d_pos, pos.data(), pos.size() * sizeof(long long), cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMemcpy(d_freq, freq.data(), freq.size() * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess) {
    std::fprintf(stderr, "CUDA setup failed\n");
    return 1;
  }
  angles_kernel<<<(n + 255) / 256, 256>>>(d_pos, d_freq, d_out, n);
  if (cudaMemcpy(out.data(), d_out, out.size() * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess) {
    std::fprintf(stderr, "kernel failed\n");
    return 1;
  }
  for (int i = 0; i < n; ++i) std::printf("%a %a %a\n", out[3 * i], out[3 * i + 1], out[3 * i + 2]);
  return 0;
}

int main(int argc, char** argv) {
  const bool device = argc > 1 && std::string(argv[1]) == "--device";
  std::vector<long long> dev_pos;
  std::vector<float> dev_freq;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string op;
    in >> op;
    if (op == "freq") {
      int type = 0, rot = 0;
      double base, factor, low, high, bf, bs;
      long long orig, maxpos, seq;
      in >> type >> base >> rot >> factor >> orig >> maxpos >> low >> high >> bf >> bs >> seq;
      std::vector<float> ext;
      float v;
      while (in >> v) ext.push_back(v);
      rope::RopeScaling s;
      s.type = static_cast<rope::ScalingType>(type);
      s.base = base;
      s.factor = factor;
      s.original_max_position_embeddings = orig;
      s.max_position_embeddings = maxpos;
      s.low_freq_factor = low;
      s.high_freq_factor = high;
      s.beta_fast = bf;
      s.beta_slow = bs;
      if (ext.size() == static_cast<std::size_t>(rot)) {
        s.short_factor = ext.data();
        s.long_factor = ext.data() + rot / 2;
      }
      std::vector<float> f(static_cast<std::size_t>(rot / 2));
      float attn = 0.0f;
      const rope::Status st = rope::compute_inv_freq(s, rot, f.data(), &attn, seq);
      if (!st.ok()) {
        std::printf("error %s\n", st.message);
        continue;
      }
      std::printf("ok %a", attn);
      for (float x : f) std::printf(" %a", x);
      std::printf("\n");
    } else if (op == "angle") {
      long long pos;
      std::string hex;
      in >> pos >> hex;
      const float freq = std::strtof(hex.c_str(), nullptr);
      if (device) {
        dev_pos.push_back(pos);
        dev_freq.push_back(freq);
        continue;
      }
      const float r = rope::device::reduced_half_turns(pos, freq);
      float s, c;
      rope::device::rotary_sincos(pos, freq, 1.0f, s, c);
      std::printf("%a %a %a\n", r, s, c);
    } else if (!op.empty()) {
      std::printf("error unknown request\n");
    }
  }
  return device ? device_angles(dev_pos, dev_freq) : 0;
}
