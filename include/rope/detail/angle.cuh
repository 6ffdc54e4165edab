// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// cos and sin of position * inv_freq, accurate at large positions.
///
/// A plain fp32 product position * inv_freq already loses the angle's low bits (at position
/// 131072 its rounding error alone is ~4e-3 rad), and fast-math `__sinf` adds more. Here the
/// product is formed in fp64, where it is exact for |position| < 2^29 (a 24-bit frequency times
/// a 29-bit integer fits 53 bits), reduced modulo 2*pi in fp64 with a two-part 2*pi (Cody-Waite
/// with fma), and only the reduced angle, |r| <= pi, goes to fp32 sincos. The result is within
/// fp32 rounding of the true angle's sin and cos. This is a handful of fp64 operations per
/// (token, pair), shared by all heads of the token.

#include <cmath>
#include <cstdint>

#include <rope/config.cuh>

namespace rope {
namespace detail {

/// Angle reduced into [-pi, pi]: position * inv_freq - 2*pi*k, nearly exact.
ROPE_HOST_DEVICE float reduced_angle(std::int64_t position, float inv_freq) {
  constexpr double kTwoPiHi = 6.283185307179586232;      // fp64 nearest to 2*pi
  constexpr double kTwoPiLo = 2.4492935982947064e-16;    // 2*pi - kTwoPiHi
  constexpr double kInvTwoPi = 0.15915494309189534561;
  const double angle = static_cast<double>(position) * static_cast<double>(inv_freq);
  const double k = rint(angle * kInvTwoPi);
  double r = fma(-k, kTwoPiHi, angle);
  r = fma(-k, kTwoPiLo, r);
  return static_cast<float>(r);
}

/// sin and cos of position * inv_freq, each multiplied by `scale`.
ROPE_HOST_DEVICE void rotary_sincos(std::int64_t position, float inv_freq, float scale,
                                    float& sin_out, float& cos_out) {
  const float r = reduced_angle(position, inv_freq);
#if defined(__CUDA_ARCH__)
  sincosf(r, &sin_out, &cos_out);
#else
  sin_out = std::sin(r);
  cos_out = std::cos(r);
#endif
  sin_out *= scale;
  cos_out *= scale;
}

}  // namespace detail
}  // namespace rope
