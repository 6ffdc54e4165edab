// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// FP8 E4M3 quantization by a per-tensor scale, `saturate(x / scale)`, as the kernel's stores do
/// it: the division by a reciprocal resolved once per launch, and the conversions of one value and
/// of two. All __host__ __device__, tested on the host against IEEE division.

#include <math.h>

#include <cuda_fp8.h>

#include <rope/config.cuh>

namespace rope {
namespace detail {

/// The scales `divide_by_scale` divides by exactly: [2^-64, 2^64]. Validation keeps FP8 scales
/// in this range. Within it the reciprocal is a normal float, and wherever a quotient can reach
/// FP8's range (|x / scale| >= 2^-11) the correction residuals below are exact.
constexpr float kMinQuantScale = 0x1p-64f;
constexpr float kMaxQuantScale = 0x1p64f;

/// Whether `scale` is one `divide_by_scale` divides by exactly (NaN is not).
inline bool quant_scale_in_range(float scale) { return scale >= kMinQuantScale && scale <= kMaxQuantScale; }

/// A per-tensor scale and its reciprocal (rounded to nearest), resolved once by the launcher so
/// a kernel divides by the scale without a division per element. For a power of two in
/// [kMinQuantScale, kMaxQuantScale] (the scales validation accepts) the reciprocal is exact, and
/// then every product x * reciprocal is the quotient x / scale, rounded the same way (the same
/// real number).
struct DivisionScale {
  float scale = 1.0f;
  float reciprocal = 1.0f;
  bool reciprocal_is_exact = true;
};

inline DivisionScale division_scale(float scale) {
  int exponent = 0;
  return DivisionScale{scale, 1.0f / scale, frexpf(scale, &exponent) == 0.5f};
}

/// x / s.scale as IEEE fp32 division rounds it (to nearest even), for scales in
/// [kMinQuantScale, kMaxQuantScale]: the product with the reciprocal is within 1.5 ulp of the
/// quotient, one correction with an exact FMA residual brings it within one ulp, and a second
/// gives the correctly rounded quotient (Markstein's theorem; CUDA's own division runs the same
/// steps after a range check and an approximate reciprocal, which this skips). Products beyond
/// 2^64, infinite or NaN are kept as they are: they saturate, or stay NaN, in the FP8
/// conversion exactly as the quotient would. The sign is the quotient's, zero included.
ROPE_HOST_DEVICE float divide_by_scale(float x, DivisionScale s) {
  float q = x * s.reciprocal;
  if (!(fabsf(q) <= 0x1p64f)) return q;
  q = fmaf(fmaf(-q, s.scale, x), s.reciprocal, q);
  q = fmaf(fmaf(-q, s.scale, x), s.reciprocal, q);
  return copysignf(q, x);
}

/// One FP8 E4M3 value: saturate(x / scale) (finite values beyond the range clamped to +-448,
/// round to nearest even, NaN kept NaN), as vLLM's cache writes store it.
ROPE_HOST_DEVICE __nv_fp8_e4m3 to_fp8(float value, DivisionScale scale) {
  __nv_fp8_e4m3 out;
  out.__x = __nv_cvt_float_to_fp8(divide_by_scale(value, scale), __NV_SATFINITE, __NV_E4M3);
  return out;
}

/// Two floats (quotients already) converted to FP8 E4M3 by one instruction (a `cvt` of two
/// floats), rounded to nearest even and saturated as `to_fp8` does it: the first value's byte in
/// the low half of the 16-bit result, as the two bytes lie in memory.
ROPE_HOST_DEVICE __nv_fp8x2_storage_t quotients_to_fp8x2(float first, float second) {
  return __nv_cvt_float2_to_fp8x2(make_float2(first, second), __NV_SATFINITE, __NV_E4M3);
}

/// Two FP8 values with one conversion instruction; each is rounded exactly as `to_fp8` rounds it.
ROPE_HOST_DEVICE __nv_fp8x2_storage_t to_fp8x2(float first, float second, DivisionScale scale) {
  return quotients_to_fp8x2(divide_by_scale(first, scale), divide_by_scale(second, scale));
}

/// to_fp8x2 from the products with the reciprocal alone: its bytes when
/// `scale.reciprocal_is_exact` (the products are then the quotients).
ROPE_HOST_DEVICE __nv_fp8x2_storage_t to_fp8x2_by_product(float first, float second, DivisionScale scale) {
  return quotients_to_fp8x2(first * scale.reciprocal, second * scale.reciprocal);
}

}  // namespace detail
}  // namespace rope
