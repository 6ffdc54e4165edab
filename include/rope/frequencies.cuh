// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// Per-pair inverse frequencies and the attention scaling factor for every RoPE scaling that
/// released models use (default, linear, NTK-aware, dynamic NTK, YaRN, Llama-3.1, LongRoPE), and
/// a cos/sin table builder that uses the same angle code as the kernel's computed mode.
///
/// The reference for every formula is HF transformers `src/transformers/modeling_rope_utils.py`
/// (`_compute_*_parameters`); each method below also names its paper. Everything is computed in
/// fp64 and rounded to fp32 once: within 0.5 ulp of the exact values on the real configs measured
/// by tests/tools/inv_freq_vs_fp32.py. Framework code evaluates the same formulas in fp32 (HF: an
/// fp32 exponent 2i/d, an fp32 pow) and lands elsewhere: torch 2.11 on CPU is 1 ulp from these
/// values for Llama-2/3, linear, dynamic NTK and YaRN, 3-4 ulp for Llama-3.1, rotary_dim 24 or 96
/// and LongRoPE; on CUDA up to 8 ulp. At position 10^6 that moves cos and sin by up to 0.06.
/// For bit-parity with a model's framework code, pass that model's own fp32 inv_freq to computed
/// mode (`computed_cos_sin`) or build the table from it (`fill_cos_sin_table`).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <rope/config.cuh>
#include <rope/device/rotation.cuh>
#include <rope/detail/host/block_count.cuh>
#include <rope/detail/host/kernel_launch.cuh>
#include <rope/detail/device/vector.cuh>
#include <rope/status.cuh>
#include <rope/validate.cuh>

namespace rope {

/// The frequency scaling methods (HF `rope_type` names in parentheses).
enum class ScalingType : int {
  kDefault = 0,     ///< plain RoPE ("default")
  kLinear = 1,      ///< position interpolation ("linear")
  kNtk = 2,         ///< static NTK-aware base change ("ntk")
  kDynamicNtk = 3,  ///< NTK base recomputed from the current sequence length ("dynamic")
  kYarn = 4,        ///< YaRN, incl. DeepSeek's mscale variant ("yarn")
  kLlama3 = 5,      ///< Llama-3.1 wavelength-banded interpolation ("llama3")
  kLongRope = 6,    ///< per-pair rescale factors, Phi-3 ("longrope")
};

/// A model's RoPE configuration: `rope_theta` plus its `rope_scaling` entries. Fields that a
/// method does not use are ignored. Prefer the named constructors below over filling it by hand.
struct RopeScaling {
  ScalingType type = ScalingType::kDefault;  ///< which method
  double base = 10000.0;  ///< rope_theta; > 0 (> 1 for YaRN)
  double factor = 1.0;    ///< context extension factor; >= 1 (linear, NTK, dynamic NTK, YaRN, Llama-3.1)
  /// Pre-training context length; > 0 for dynamic NTK, YaRN, Llama-3.1 and LongRoPE.
  std::int64_t original_max_position_embeddings = 0;
  /// Extended context length (LongRoPE only: its attention factor uses max / original).
  std::int64_t max_position_embeddings = 0;
  /// YaRN and LongRoPE: 0 derives it from the paper's formula; > 0 is used as given.
  double attention_factor = 0.0;

  double beta_fast = 32.0;  ///< YaRN: rotations at which the blend ramp starts (extrapolation side)
  double beta_slow = 1.0;   ///< YaRN: rotations at which the ramp ends (interpolation side)
  double mscale = 0.0;          ///< DeepSeek: used only when both mscale and mscale_all_dim are nonzero
  double mscale_all_dim = 0.0;  ///< DeepSeek: divides the attention factor (see mscale)
  bool truncate = true;         ///< floor/ceil the correction range to whole pairs (HF's default)

  double low_freq_factor = 1.0;   ///< Llama-3.1: wavelengths above original_max / this are divided by factor
  double high_freq_factor = 4.0;  ///< Llama-3.1: wavelengths below original_max / this are kept

  /// LongRoPE: rotary_dim / 2 rescale factors (host memory, read during the call only), used
  /// while the sequence fits the original context.
  const float* short_factor = nullptr;
  /// LongRoPE: the factors used past the original context.
  const float* long_factor = nullptr;

  /// Unscaled RoPE.
  static RopeScaling unscaled(double base) {
    RopeScaling s;
    s.base = base;
    return s;
  }
  /// Linear position interpolation: every frequency divided by `factor`.
  static RopeScaling linear(double base, double factor) {
    RopeScaling s = unscaled(base);
    s.type = ScalingType::kLinear;
    s.factor = factor;
    return s;
  }
  /// Static NTK-aware scaling.
  static RopeScaling ntk(double base, double factor) {
    RopeScaling s = linear(base, factor);
    s.type = ScalingType::kNtk;
    return s;
  }
  /// Dynamic NTK: pass the current sequence length to compute_inv_freq.
  static RopeScaling dynamic_ntk(double base, double factor, std::int64_t original_max) {
    RopeScaling s = linear(base, factor);
    s.type = ScalingType::kDynamicNtk;
    s.original_max_position_embeddings = original_max;
    return s;
  }
  /// YaRN (set `mscale` / `mscale_all_dim` afterwards for DeepSeek-V2/V3).
  static RopeScaling yarn(double base, double factor, std::int64_t original_max, double beta_fast = 32.0,
                          double beta_slow = 1.0) {
    RopeScaling s = dynamic_ntk(base, factor, original_max);
    s.type = ScalingType::kYarn;
    s.beta_fast = beta_fast;
    s.beta_slow = beta_slow;
    return s;
  }
  /// Llama-3.1 (defaults are Meta's published values).
  static RopeScaling llama3(double base, double factor = 8.0, double low_freq_factor = 1.0,
                            double high_freq_factor = 4.0, std::int64_t original_max = 8192) {
    RopeScaling s = dynamic_ntk(base, factor, original_max);
    s.type = ScalingType::kLlama3;
    s.low_freq_factor = low_freq_factor;
    s.high_freq_factor = high_freq_factor;
    return s;
  }
  /// LongRoPE (Phi-3): `short_factor` / `long_factor` hold rotary_dim / 2 values each.
  static RopeScaling longrope(double base, const float* short_factor, const float* long_factor,
                              std::int64_t original_max, std::int64_t max_position) {
    RopeScaling s = unscaled(base);
    s.type = ScalingType::kLongRope;
    s.short_factor = short_factor;
    s.long_factor = long_factor;
    s.original_max_position_embeddings = original_max;
    s.max_position_embeddings = max_position;
    return s;
  }
};

namespace detail {

constexpr double kPi = 3.14159265358979323846;

/// base^(-2i/rot): the unscaled frequency of pair i, in fp64.
inline double plain_inv_freq(double base, int i, int rotary_dim) {
  return 1.0 / std::pow(base, 2.0 * i / rotary_dim);
}

inline bool finite_at_least(double v, double lo) { return std::isfinite(v) && v >= lo; }
inline bool finite_above(double v, double lo) { return std::isfinite(v) && v > lo; }

/// YaRN's m(s) = 0.1 * m * ln(s) + 1 (1 when s <= 1): HF `get_mscale`, DeepSeek-V2 `yarn_get_mscale`.
inline double yarn_mscale(double scale, double m) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

/// The pair index whose wavelength fits `rotations` turns into the original context
/// (YaRN paper, eq. 17; HF `find_correction_dim`). Fractional.
inline double yarn_correction_pair(double rotations, int rotary_dim, double base, double original_max) {
  return rotary_dim * std::log(original_max / (rotations * 2.0 * kPi)) / (2.0 * std::log(base));
}

inline Status check_inv_freq_args(const RopeScaling& s, int rotary_dim, const float* inv_freq_out,
                                  const float* attention_scaling_out, std::int64_t seq_len) {
  if (inv_freq_out == nullptr) return invalid("inv_freq_out is null");
  if (attention_scaling_out == nullptr) return invalid("attention_scaling_out is null");
  if (rotary_dim < 2) return invalid("rotary_dim must be at least 2");
  if (rotary_dim % 2 != 0) return invalid("rotary_dim must be even");
  if (!finite_above(s.base, 0.0)) return invalid("base (rope_theta) must be finite and > 0");
  if (seq_len < 0) return invalid("seq_len is negative");

  const ScalingType t = s.type;
  if (t != ScalingType::kDefault && t != ScalingType::kLinear && t != ScalingType::kNtk &&
      t != ScalingType::kDynamicNtk && t != ScalingType::kYarn && t != ScalingType::kLlama3 &&
      t != ScalingType::kLongRope) {
    return invalid("scaling type is not a rope::ScalingType value");
  }
  const bool uses_factor = t == ScalingType::kLinear || t == ScalingType::kNtk || t == ScalingType::kDynamicNtk ||
                           t == ScalingType::kYarn || t == ScalingType::kLlama3;
  if (uses_factor && !finite_at_least(s.factor, 1.0)) return invalid("factor must be finite and >= 1");
  // NTK raises to rot / (rot - 2), which rotary_dim 2 makes infinite.
  if ((t == ScalingType::kNtk || t == ScalingType::kDynamicNtk) && rotary_dim < 4) {
    return invalid("NTK scaling needs rotary_dim >= 4");
  }
  const bool uses_original = t == ScalingType::kDynamicNtk || t == ScalingType::kYarn ||
                             t == ScalingType::kLlama3 || t == ScalingType::kLongRope;
  if (uses_original && s.original_max_position_embeddings <= 0) {
    return invalid("original_max_position_embeddings must be > 0");
  }
  if ((t == ScalingType::kYarn || t == ScalingType::kLongRope) && !finite_at_least(s.attention_factor, 0.0)) {
    return invalid("attention_factor must be finite and >= 0 (0 derives it)");
  }

  if (t == ScalingType::kYarn) {
    // The correction range divides by ln(base).
    if (!(s.base > 1.0)) return invalid("YaRN needs base (rope_theta) > 1");
    if (!finite_above(s.beta_fast, 0.0) || !finite_above(s.beta_slow, 0.0)) {
      return invalid("YaRN beta_fast and beta_slow must be finite and > 0");
    }
    if (s.beta_fast < s.beta_slow) return invalid("YaRN beta_fast must be >= beta_slow");
    if (!finite_at_least(s.mscale, 0.0) || !finite_at_least(s.mscale_all_dim, 0.0)) {
      return invalid("YaRN mscale and mscale_all_dim must be finite and >= 0");
    }
  }
  if (t == ScalingType::kLlama3) {
    if (!finite_above(s.low_freq_factor, 0.0)) return invalid("Llama-3.1 low_freq_factor must be finite and > 0");
    if (!std::isfinite(s.high_freq_factor) || s.high_freq_factor <= s.low_freq_factor) {
      return invalid("Llama-3.1 high_freq_factor must be finite and > low_freq_factor");
    }
  }
  if (t == ScalingType::kLongRope) {
    if (s.short_factor == nullptr) return invalid("LongRoPE short_factor is null");
    if (s.long_factor == nullptr) return invalid("LongRoPE long_factor is null");
    if (s.max_position_embeddings <= 0) return invalid("LongRoPE max_position_embeddings must be > 0");
    for (int i = 0; i < rotary_dim / 2; ++i) {
      if (!finite_above(s.short_factor[i], 0.0) || !finite_above(s.long_factor[i], 0.0)) {
        return invalid("LongRoPE short_factor/long_factor entries must be finite and > 0");
      }
    }
  }
  return Status{};
}

}  // namespace detail

/// Writes the `rotary_dim / 2` fp32 inverse frequencies of `scaling` into `inv_freq_out` (host
/// memory) and the factor that cos and sin are multiplied by into `*attention_scaling_out`
/// (1 except for YaRN and LongRoPE). Pass both to `rope::computed_cos_sin`, or to
/// `fill_cos_sin_table` after copying the frequencies to the device.
///
/// `seq_len` is the current sequence length; only dynamic NTK and LongRoPE read it (0: not
/// longer than the original context).
///
/// Within 0.5 ulp of exact; not bit-identical to a framework's fp32 values (see the file comment).
///
/// A bad argument returns `rope::invalid(reason)` and writes nothing. Never throws.
inline Status compute_inv_freq(const RopeScaling& scaling, int rotary_dim, float* inv_freq_out,
                               float* attention_scaling_out, std::int64_t seq_len = 0) {
  const Status status = detail::check_inv_freq_args(scaling, rotary_dim, inv_freq_out, attention_scaling_out, seq_len);
  if (!status.ok()) return status;

  const int half = rotary_dim / 2;
  const double factor = scaling.factor;
  const double original = static_cast<double>(scaling.original_max_position_embeddings);
  double base = scaling.base;
  double attention = 1.0;

  switch (scaling.type) {
    case ScalingType::kDefault:
      // Su et al. 2021, RoFormer (arXiv:2104.09864): theta_i = base^(-2i/d).
      for (int i = 0; i < half; ++i) inv_freq_out[i] = static_cast<float>(detail::plain_inv_freq(base, i, rotary_dim));
      break;

    case ScalingType::kLinear:
      // Chen et al. 2023, position interpolation (arXiv:2306.15595): positions / factor,
      // applied to the frequencies instead (same product). HF `_compute_linear_scaling_rope_parameters`.
      for (int i = 0; i < half; ++i) {
        inv_freq_out[i] = static_cast<float>(detail::plain_inv_freq(base, i, rotary_dim) / factor);
      }
      break;

    case ScalingType::kNtk:
    case ScalingType::kDynamicNtk: {
      // NTK-aware scaling (bloc97, r/LocalLLaMA 2023): stretch the base so the lowest frequency
      // is divided by `factor` and the highest is kept. The dynamic form (emozilla; HF
      // `_compute_dynamic_ntk_parameters`) uses the effective factor of the current length and
      // is plain RoPE up to the original context.
      double scale = factor;
      if (scaling.type == ScalingType::kDynamicNtk) {
        scale = seq_len > scaling.original_max_position_embeddings
                    ? factor * static_cast<double>(seq_len) / original - (factor - 1.0)
                    : 1.0;
      }
      base *= std::pow(scale, static_cast<double>(rotary_dim) / (rotary_dim - 2));
      for (int i = 0; i < half; ++i) inv_freq_out[i] = static_cast<float>(detail::plain_inv_freq(base, i, rotary_dim));
      break;
    }

    case ScalingType::kYarn: {
      // Peng et al. 2023, YaRN (arXiv:2309.00071), as HF `_compute_yarn_parameters`: pairs that
      // turn more than beta_fast times in the original context keep their frequency, pairs that
      // turn fewer than beta_slow times are interpolated (/ factor), a linear ramp in between.
      double low = detail::yarn_correction_pair(scaling.beta_fast, rotary_dim, base, original);
      double high = detail::yarn_correction_pair(scaling.beta_slow, rotary_dim, base, original);
      if (scaling.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = low < 0.0 ? 0.0 : low;
      // HF clamps to rotary_dim - 1 (not rotary_dim / 2 - 1); kept for identical results.
      high = high > rotary_dim - 1.0 ? rotary_dim - 1.0 : high;
      if (low == high) high += 0.001;  // as HF: avoids a zero-width ramp
      for (int i = 0; i < half; ++i) {
        double ramp = (i - low) / (high - low);  // 0: keep, 1: interpolate
        ramp = ramp < 0.0 ? 0.0 : (ramp > 1.0 ? 1.0 : ramp);
        const double keep = detail::plain_inv_freq(base, i, rotary_dim);
        inv_freq_out[i] = static_cast<float>(keep / factor * ramp + keep * (1.0 - ramp));
      }
      // Paper's sqrt(1/t) = 0.1 ln(s) + 1; DeepSeek-V2/V3 divide two such terms instead.
      if (scaling.attention_factor > 0.0) {
        attention = scaling.attention_factor;
      } else if (scaling.mscale != 0.0 && scaling.mscale_all_dim != 0.0) {
        attention = detail::yarn_mscale(factor, scaling.mscale) / detail::yarn_mscale(factor, scaling.mscale_all_dim);
      } else {
        attention = detail::yarn_mscale(factor, 1.0);
      }
      break;
    }

    case ScalingType::kLlama3: {
      // Meta Llama 3.1 (`apply_scaling` in llama-models; HF `_compute_llama3_parameters`):
      // wavelengths shorter than original/high_freq_factor are kept, longer than
      // original/low_freq_factor are divided by factor, and in between blended by how many
      // wavelengths fit in the original context.
      const double short_wavelen = original / scaling.high_freq_factor;
      const double long_wavelen = original / scaling.low_freq_factor;
      for (int i = 0; i < half; ++i) {
        const double f = detail::plain_inv_freq(base, i, rotary_dim);
        const double wavelen = 2.0 * detail::kPi / f;
        double out = f;
        if (wavelen > long_wavelen) {
          out = f / factor;
        } else if (wavelen >= short_wavelen) {
          const double smooth = (original / wavelen - scaling.low_freq_factor) /
                                (scaling.high_freq_factor - scaling.low_freq_factor);
          out = (1.0 - smooth) * f / factor + smooth * f;
        }
        inv_freq_out[i] = static_cast<float>(out);
      }
      break;
    }

    case ScalingType::kLongRope: {
      // Ding et al. 2024, LongRoPE (arXiv:2402.13753), as HF `_compute_longrope_parameters` and
      // Phi-3: per-pair divisors, the long set once the sequence outgrows the original context;
      // attention factor sqrt(1 + ln(s) / ln(original)) with s = max / original.
      const float* ext = seq_len > scaling.original_max_position_embeddings ? scaling.long_factor : scaling.short_factor;
      for (int i = 0; i < half; ++i) {
        inv_freq_out[i] = static_cast<float>(detail::plain_inv_freq(base, i, rotary_dim) / static_cast<double>(ext[i]));
      }
      const double s = static_cast<double>(scaling.max_position_embeddings) / original;
      if (scaling.attention_factor > 0.0) {
        attention = scaling.attention_factor;
      } else if (s > 1.0) {
        attention = std::sqrt(1.0 + std::log(s) / std::log(original));
      }
      break;
    }
  }
  *attention_scaling_out = static_cast<float>(attention);
  return Status{};
}

// ---------------------------------------------------------------------------------------------
// cos/sin tables

namespace detail {

/// Entry (row, pair i) of a cos/sin table: the very values the kernel's computed mode uses
/// for position `row`, so table mode and computed mode agree bit for bit in fp32.
template <typename E>
ROPE_HOST_DEVICE void cos_sin_table_entry(std::int64_t row, int i, const float* inv_freq, float attention_scaling,
                                          E* cos_out, E* sin_out, std::int64_t row_stride) {
  float s, c;
  device::rotary_sincos(row, inv_freq[i], attention_scaling, s, c);
  cos_out[row * row_stride + i] = from_float<E>(c);
  sin_out[row * row_stride + i] = from_float<E>(s);
}

template <typename E>
ROPE_KERNEL void fill_cos_sin_table_kernel(const float* inv_freq, int half, float attention_scaling,
                                           std::int64_t rows, E* cos_out, E* sin_out, std::int64_t row_stride) {
  const std::int64_t total = rows * half;
  const std::int64_t step = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t e = std::int64_t{blockIdx.x} * blockDim.x + threadIdx.x; e < total; e += step) {
    cos_sin_table_entry(e / half, static_cast<int>(e % half), inv_freq, attention_scaling, cos_out, sin_out,
                        row_stride);
  }
}

template <typename E>
Status check_table_args(const float* inv_freq, int rotary_dim, float attention_scaling, std::int64_t rows,
                        const E* cos_out, const E* sin_out, std::int64_t row_stride) {
  static_assert(std::is_same<E, float>::value || std::is_same<E, __half>::value ||
                    std::is_same<E, __nv_bfloat16>::value,
                "cos/sin tables are float, __half or __nv_bfloat16");
  if (rotary_dim < 2) return invalid("rotary_dim must be at least 2");
  if (rotary_dim % 2 != 0) return invalid("rotary_dim must be even");
  if (rows < 0) return invalid("rows is negative");
  if (row_stride < rotary_dim / 2) return invalid("row_stride is smaller than rotary_dim / 2");
  if (!table_span_fits(rows, row_stride)) return invalid("rows and row_stride exceed 64-bit offsets");
  if (!std::isfinite(attention_scaling)) return invalid("attention_scaling is not finite");
  if (rows == 0) return Status{};  // nothing is touched: empty tables may carry nullptr
  if (inv_freq == nullptr) return invalid("inv_freq is null");
  if (cos_out == nullptr) return invalid("cos_out is null");
  if (sin_out == nullptr) return invalid("sin_out is null");
  if (cos_out == sin_out) return invalid("cos_out and sin_out are the same buffer");
  if (!is_aligned(inv_freq, sizeof(float))) return invalid("inv_freq is not aligned to float");
  if (!is_aligned(cos_out, sizeof(E)) || !is_aligned(sin_out, sizeof(E))) {
    return invalid("cos_out or sin_out is not aligned to its element type");
  }
  return Status{};
}

}  // namespace detail

/// Fills `rows` rows of cos and sin tables on the device: element [r, i] (at `r * row_stride + i`,
/// i < rotary_dim / 2) is attention_scaling * cos(r * inv_freq[i]) (sin likewise), computed
/// exactly as the kernel's computed mode does. `inv_freq_device` holds rotary_dim / 2 fp32 values
/// in device memory (from compute_inv_freq). For a fused `[cos | sin]` row (vLLM, FlashInfer),
/// pass `sin_out = cos_out + rotary_dim / 2` and `row_stride = rotary_dim`. Elements between
/// rotary_dim / 2 and row_stride are not written.
///
/// Returns `cudaErrorInvalidValue` without launching on a bad argument (`rope::last_error_message()`
/// says which); `rows == 0` returns `cudaSuccess` and launches nothing. Asynchronous on `stream`.
template <typename E>
cudaError_t fill_cos_sin_table(const float* inv_freq_device, int rotary_dim, float attention_scaling,
                               std::int64_t rows, E* cos_out, E* sin_out, std::int64_t row_stride,
                               cudaStream_t stream = nullptr) {
  const Status status =
      detail::check_table_args(inv_freq_device, rotary_dim, attention_scaling, rows, cos_out, sin_out, row_stride);
  if (!status.ok()) return detail::record(status);
  if (rows == 0) return detail::record(cudaSuccess);
  const int half = rotary_dim / 2;
  constexpr int kThreads = 256;
  // Grid-stride loop: a bounded grid covers any table size.
  constexpr std::int64_t kMaxBlocks = std::int64_t{1} << 20;
  std::int64_t blocks = detail::ceil_div(rows * half, kThreads);
  blocks = blocks < kMaxBlocks ? blocks : kMaxBlocks;
  return detail::record(detail::launch_kernel(detail::fill_cos_sin_table_kernel<E>, dim3(static_cast<unsigned>(blocks)),
                                              dim3(kThreads), 0, stream, LaunchOptions{}, inv_freq_device, half,
                                              attention_scaling, rows, cos_out, sin_out, row_stride));
}

/// The same fill on the host, with host pointers (same checks, same per-element code; host
/// `sin`/`cos` of the reduced angle may differ from the device's `sincospif` in the last bit).
template <typename E>
cudaError_t fill_cos_sin_table_host(const float* inv_freq, int rotary_dim, float attention_scaling,
                                    std::int64_t rows, E* cos_out, E* sin_out, std::int64_t row_stride) {
  const Status status =
      detail::check_table_args(inv_freq, rotary_dim, attention_scaling, rows, cos_out, sin_out, row_stride);
  if (!status.ok()) return detail::record(status);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < rotary_dim / 2; ++i) {
      detail::cos_sin_table_entry(r, i, inv_freq, attention_scaling, cos_out, sin_out, row_stride);
    }
  }
  return detail::record(cudaSuccess);
}

}  // namespace rope
