// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// FP8 E4M3 quantization by a per-tensor scale, `saturate(x / scale)`, as the kernel's stores do
/// it: the division by a reciprocal resolved once per launch, the shortcut that skips it where
/// the FP8 byte cannot depend on it, and the conversions. All __host__ __device__, tested on the
/// host against IEEE division.

#include <math.h>

#include <cstdint>

#include <cuda/std/bit>
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
/// a kernel divides by the scale without a division per element.
struct DivisionScale {
  float scale = 1.0f;
  float reciprocal = 1.0f;
};

inline DivisionScale division_scale(float scale) { return DivisionScale{scale, 1.0f / scale}; }

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

/// Whether a product x * reciprocal (within 1.5 ulp of the quotient x / scale) may convert to
/// another FP8 E4M3 value than the correctly rounded quotient: it lies within 3 units of the last
/// place of a float whose low 19 mantissa bits are zero. Every FP8 rounding boundary is such a
/// float (a midpoint between neighbouring values has at most 4 significant bits; 2^-10 lies
/// between zero and the smallest subnormal), and so are zero, infinity and NaN, which take the
/// exact path too.
ROPE_HOST_DEVICE bool near_fp8_boundary(float product) {
  return ((cuda::std::bit_cast<std::uint32_t>(product) + 3u) & 0x7ffffu) <= 6u;
}

/// Replaces the N values in `q` with floats that convert to the same FP8 E4M3 values as their
/// correctly rounded quotients by `scale` do: the products with the reciprocal, unless one of
/// them lies next to an FP8 rounding boundary; then all N quotients exactly (`divide_by_scale`).
/// The check costs three integer instructions per value; the corrections it skips cost four
/// FMAs and a select. For the exact path `value(i)` gives value i again (the caller's registers).
template <int N, typename Value>
ROPE_HOST_DEVICE void fp8_quotients(float (&q)[N], DivisionScale scale, Value value) {
  bool near = false;
ROPE_UNROLL
  for (int i = 0; i < N; ++i) {
    q[i] = value(i) * scale.reciprocal;
    near |= near_fp8_boundary(q[i]);
  }
  if (near) {
ROPE_UNROLL
    for (int i = 0; i < N; ++i) q[i] = divide_by_scale(value(i), scale);
  }
}

/// The FP8 E4M3 value of a quotient (saturating: finite values beyond +-448 clamped, round to
/// nearest even, NaN kept NaN).
ROPE_HOST_DEVICE __nv_fp8_e4m3 fp8_of_quotient(float quotient) {
  __nv_fp8_e4m3 out;
  out.__x = __nv_cvt_float_to_fp8(quotient, __NV_SATFINITE, __NV_E4M3);
  return out;
}

/// Two FP8 values from two quotients with one conversion instruction (a `cvt` of two floats).
ROPE_HOST_DEVICE void fp8_pair_of_quotients(float first, float second, __nv_fp8_e4m3& first_out,
                                            __nv_fp8_e4m3& second_out) {
  const __nv_fp8x2_storage_t two = __nv_cvt_float2_to_fp8x2(make_float2(first, second), __NV_SATFINITE, __NV_E4M3);
  first_out.__x = static_cast<__nv_fp8_storage_t>(two & 0xffu);
  second_out.__x = static_cast<__nv_fp8_storage_t>(two >> 8);
}

/// One FP8 E4M3 value: saturate(x / scale), as vLLM's cache writes store it (the conversion of
/// the IEEE quotient).
ROPE_HOST_DEVICE __nv_fp8_e4m3 to_fp8(float value, DivisionScale scale) {
  float q[1];
  fp8_quotients(q, scale, [&](int) { return value; });
  return fp8_of_quotient(q[0]);
}

}  // namespace detail
}  // namespace rope
