// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Device API, part 1: the accurate angle, its cos and sin, and the rotation of pairs held in
/// registers. These are the functions the library's own kernel uses; a kernel of yours that
/// loads q or k (an attention kernel, a QKV epilogue) can call them to apply RoPE on the way, with
/// the launcher's accuracy. `<rope/device.cuh>` adds the cooperative per-head routine.
///
/// cos and sin of position * inv_freq, accurate at large positions.
///
/// A plain fp32 product position * inv_freq already loses the angle's low bits (at position
/// 131072 its rounding error alone is ~4e-3 rad), and fast-math `__sinf` adds more. Here the
/// product is formed in fp64, where it is exact for |position| < 2^29 (a 24-bit frequency times
/// a 29-bit integer fits 53 bits), turned into half-turns by a multiply by 1/pi (this rounds),
/// reduced modulo 2 in fp64 (exact), and rounded to fp32 in [-1, 1] (this rounds too) for
/// `sincospif`, whose own range reduction is exact, so it carries no slow path for huge arguments
/// (as `sincosf` does: registers the kernel needs for loads in flight). Measured against exact
/// values of position * inv_freq (tests/tools/inv_freq_vs_fp32.py: 40,000 positions below 2^29,
/// real frequencies), the reduced angle was off by less than 5.3e-8 half-turns (1.7e-7 rad) and
/// sin and cos by less than 1.7e-7 (absolute), on the host and on an H200 alike. This is a
/// handful of fp64 operations per (token, pair), shared by the heads of the lane.

#include <cmath>
#include <cstdint>

#include <rope/config.cuh>

namespace rope {
namespace device {

/// The angle position * inv_freq in half-turns (units of pi), reduced into [-1, 1].
ROPE_HOST_DEVICE float reduced_half_turns(std::int64_t position, float inv_freq) {
  constexpr double kInvPi = 0.318309886183790671538;
  const double half_turns = static_cast<double>(position) * static_cast<double>(inv_freq) * kInvPi;
  return static_cast<float>(half_turns - 2.0 * rint(0.5 * half_turns));
}

/// sin and cos of position * inv_freq, each multiplied by `scale` (a model's attention factor,
/// 1 for most). The order of the outputs is `sincosf`'s.
ROPE_HOST_DEVICE void rotary_sincos(std::int64_t position, float inv_freq, float scale,
                                    float& sin_out, float& cos_out) {
  const float r = reduced_half_turns(position, inv_freq);
#if defined(__CUDA_ARCH__)
  sincospif(r, &sin_out, &cos_out);
#else
  constexpr double kPi = 3.14159265358979323846;
  sin_out = static_cast<float>(std::sin(kPi * r));
  cos_out = static_cast<float>(std::cos(kPi * r));
#endif
  sin_out *= scale;
  cos_out *= scale;
}

/// a * b rounded to fp32 on its own: a product the compiler may not fuse into a following add
/// (`__fmul_rn` on the GPU; host compilers for x86-64 do not contract by default).
ROPE_HOST_DEVICE float unfused_product(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

/// Rotates one pair by the angle whose cos and sin are c and s:
/// y1 = x1 cos - x2 sin, y2 = x1 sin + x2 cos. Rotation by -theta (the gradient) is s negated.
/// Each output is one fused multiply-add of its first product onto the rounded second, written
/// out rather than left to the compiler's contraction, which fused `x1 * c - x2 * s` one way or
/// the other depending on the surrounding code: so every kernel and the host round a pair the
/// same way, and the library's two kernels give the same bits.
ROPE_HOST_DEVICE void rotate_pair(float x1, float x2, float c, float s, float& y1, float& y2) {
  y1 = fmaf(x1, c, -unfused_product(x2, s));
  y2 = fmaf(x1, s, unfused_product(x2, c));
}

/// Rotates a register fragment of N half-split pairs in place: pair i is (first[i], second[i]),
/// element i of each half of the rotated slice (Llama, GPT-NeoX).
template <int N>
ROPE_HOST_DEVICE void rotate_half_split(float (&first)[N], float (&second)[N], const float (&c)[N],
                                        const float (&s)[N]) {
ROPE_UNROLL
  for (int i = 0; i < N; ++i) rotate_pair(first[i], second[i], c[i], s[i], first[i], second[i]);
}

/// Rotates a register fragment of M / 2 interleaved pairs in place: pair i is (x[2i], x[2i + 1])
/// (GPT-J, DeepSeek's MLA slice).
template <int M>
ROPE_HOST_DEVICE void rotate_interleaved(float (&x)[M], const float (&c)[M / 2], const float (&s)[M / 2]) {
  static_assert(M % 2 == 0, "interleaved pairs are two elements each");
ROPE_UNROLL
  for (int i = 0; i < M / 2; ++i) rotate_pair(x[2 * i], x[2 * i + 1], c[i], s[i], x[2 * i], x[2 * i + 1]);
}

}  // namespace device
}  // namespace rope
