// SPDX-License-Identifier: MIT
#pragma once

/// \file
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
namespace detail {

/// The angle position * inv_freq in half-turns (units of pi), reduced into [-1, 1].
ROPE_HOST_DEVICE float reduced_half_turns(std::int64_t position, float inv_freq) {
  constexpr double kInvPi = 0.318309886183790671538;
  const double half_turns = static_cast<double>(position) * static_cast<double>(inv_freq) * kInvPi;
  return static_cast<float>(half_turns - 2.0 * rint(0.5 * half_turns));
}

/// sin and cos of position * inv_freq, each multiplied by `scale`.
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

}  // namespace detail
}  // namespace rope
