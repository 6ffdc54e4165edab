// SPDX-License-Identifier: MIT
// Tests of rope/frequencies.cuh: every scaling method against an fp64 re-derivation written here
// from the published formulas (not the header's code), hand-checked spot values, every rejected
// argument, and the cos/sin table fill (host variant here, GPU variant where a device exists).

#include <rope/frequencies.cuh>
#include <rope/launch.cuh>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr float kGuard = -12345.0f;
const float kNaN = std::numeric_limits<float>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------------------------
// fp64 references, each written from its paper / HF formula in a form of its own.

// theta_i = base^(-2i/d), through exp/log rather than pow.
std::vector<double> ref_default(double base, int rot) {
  std::vector<double> f(rot / 2);
  for (int i = 0; i < rot / 2; ++i) f[i] = std::exp(-2.0 * i / rot * std::log(base));
  return f;
}

std::vector<double> ref_linear(double base, int rot, double factor) {
  std::vector<double> f = ref_default(base, rot);
  for (double& v : f) v /= factor;
  return f;
}

// NTK-aware: new base = base * factor^(d / (d - 2)).
std::vector<double> ref_ntk(double base, int rot, double factor) {
  return ref_default(base * std::exp(std::log(factor) * rot / (rot - 2.0)), rot);
}

// Dynamic NTK: the effective factor (factor * L / L0 - (factor - 1)) once L > L0.
std::vector<double> ref_dynamic(double base, int rot, double factor, double original, double seq_len) {
  if (seq_len <= original) return ref_default(base, rot);
  return ref_ntk(base, rot, factor * seq_len / original - factor + 1.0);
}

// YaRN: pair i's wavelength 2*pi*base^(2i/d) fits r = L0 / wavelength turns into the original
// context. The ramp boundaries are the (fractional) pairs where r = beta_fast and r = beta_slow.
struct YarnRef {
  std::vector<double> inv_freq;
  double attention;
  double low, high;
};
YarnRef ref_yarn(double base, int rot, double factor, double original, double beta_fast, double beta_slow,
                 double mscale, double mscale_all_dim, bool truncate = true) {
  auto pair_with_turns = [&](double turns) {
    // L0 / (2*pi*base^(2i/d)) = turns  <=>  i = d/2 * log_base(L0 / (2*pi*turns)).
    return 0.5 * rot * std::log(original / (2.0 * kPi * turns)) / std::log(base);
  };
  YarnRef r;
  r.low = pair_with_turns(beta_fast);
  r.high = pair_with_turns(beta_slow);
  if (truncate) {
    r.low = std::floor(r.low);
    r.high = std::ceil(r.high);
  }
  r.low = std::max(r.low, 0.0);
  r.high = std::min(r.high, rot - 1.0);
  const double width = r.high == r.low ? 0.001 : r.high - r.low;
  const std::vector<double> orig = ref_default(base, rot);
  for (int i = 0; i < rot / 2; ++i) {
    const double t = std::min(1.0, std::max(0.0, (i - r.low) / width));  // share interpolated
    r.inv_freq.push_back((1.0 - t) * orig[i] + t * orig[i] / factor);
  }
  auto m = [&](double k) { return factor <= 1.0 ? 1.0 : 1.0 + 0.1 * k * std::log(factor); };
  r.attention = (mscale != 0.0 && mscale_all_dim != 0.0) ? m(mscale) / m(mscale_all_dim) : m(1.0);
  return r;
}

// Llama-3.1: by turns in the original context, r = L0 * theta / (2*pi): r < low_ff: divide by
// factor; r > high_ff: keep; between: mix with weight (r - low_ff) / (high_ff - low_ff).
std::vector<double> ref_llama3(double base, int rot, double factor, double low_ff, double high_ff, double original) {
  std::vector<double> f = ref_default(base, rot);
  for (double& v : f) {
    const double turns = original * v / (2.0 * kPi);
    if (turns < low_ff) {
      v /= factor;
    } else if (turns <= high_ff) {
      const double w = (turns - low_ff) / (high_ff - low_ff);
      v = w * v + (1.0 - w) * v / factor;
    }
  }
  return f;
}

std::vector<double> ref_longrope(double base, int rot, const std::vector<float>& ext) {
  std::vector<double> f = ref_default(base, rot);
  for (int i = 0; i < rot / 2; ++i) f[i] /= ext[i];
  return f;
}

// ---------------------------------------------------------------------------------------------
// Harness: runs compute_inv_freq into a NaN-filled buffer with a guard on each side.

struct InvFreq {
  rope::Status status;
  std::vector<float> inv_freq;  // rot / 2 values
  float attention = kGuard;
};

InvFreq run(const rope::RopeScaling& s, int rot, std::int64_t seq_len = 0) {
  std::vector<float> buf(std::max(rot / 2, 0) + 2, kNaN);
  buf.front() = buf.back() = kGuard;
  InvFreq r;
  r.status = rope::compute_inv_freq(s, rot, buf.data() + 1, &r.attention, seq_len);
  EXPECT_EQ(buf.front(), kGuard) << "wrote before the output";
  EXPECT_EQ(buf.back(), kGuard) << "wrote after the output";
  r.inv_freq.assign(buf.begin() + 1, buf.end() - 1);
  return r;
}

// Computed in fp64 and rounded once: within one fp32 ulp of the fp64 reference.
void expect_matches(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << "pair " << i << " not written";
    EXPECT_LE(std::fabs(got[i] - want[i]), 1.2e-7 * std::fabs(want[i])) << "pair " << i;
  }
}

InvFreq run_ok(const rope::RopeScaling& s, int rot, std::int64_t seq_len = 0) {
  InvFreq r = run(s, rot, seq_len);
  EXPECT_TRUE(r.status.ok()) << r.status.message;
  return r;
}

// ---------------------------------------------------------------------------------------------

TEST(Frequencies, Default) {
  for (int rot : {2, 64, 96, 128}) {
    for (double base : {10000.0, 500000.0, 1e6}) {
      const InvFreq r = run_ok(rope::RopeScaling::unscaled(base), rot);
      expect_matches(r.inv_freq, ref_default(base, rot));
      EXPECT_EQ(r.attention, 1.0f);
      EXPECT_EQ(r.inv_freq[0], 1.0f);  // base^0
    }
  }
  // base^(-1/2) at the middle pair: 10000 -> exactly 1/100.
  EXPECT_EQ(run_ok(rope::RopeScaling::unscaled(10000.0), 128).inv_freq[32], 0.01f);
}

TEST(Frequencies, Linear) {
  const InvFreq r = run_ok(rope::RopeScaling::linear(10000.0, 4.0), 128);
  expect_matches(r.inv_freq, ref_linear(10000.0, 128, 4.0));
  EXPECT_EQ(r.attention, 1.0f);
  EXPECT_EQ(r.inv_freq[0], 0.25f);
  EXPECT_EQ(r.inv_freq[32], static_cast<float>(0.01 / 4.0));
  // factor 1 is plain RoPE.
  EXPECT_EQ(run_ok(rope::RopeScaling::linear(10000.0, 1.0), 128).inv_freq,
            run_ok(rope::RopeScaling::unscaled(10000.0), 128).inv_freq);
}

TEST(Frequencies, Ntk) {
  for (int rot : {4, 64, 128}) {
    const InvFreq r = run_ok(rope::RopeScaling::ntk(10000.0, 4.0), rot);
    expect_matches(r.inv_freq, ref_ntk(10000.0, rot, 4.0));
    EXPECT_EQ(r.attention, 1.0f);
    // By construction the highest frequency is kept and the lowest is divided by factor.
    EXPECT_EQ(r.inv_freq[0], 1.0f);
    const double lowest = std::pow(10000.0, -(rot - 2.0) / rot) / 4.0;
    EXPECT_NEAR(r.inv_freq.back(), lowest, 1.2e-7 * lowest);
  }
}

TEST(Frequencies, DynamicNtk) {
  const rope::RopeScaling s = rope::RopeScaling::dynamic_ntk(10000.0, 2.0, 4096);
  const std::vector<float> plain = run_ok(rope::RopeScaling::unscaled(10000.0), 128).inv_freq;
  // Up to the original context: plain RoPE, bit for bit.
  for (std::int64_t len : {0, 1, 2048, 4096}) EXPECT_EQ(run_ok(s, 128, len).inv_freq, plain) << len;
  for (std::int64_t len : {4097, 6000, 8192, 100000}) {
    const InvFreq r = run_ok(s, 128, len);
    expect_matches(r.inv_freq, ref_dynamic(10000.0, 128, 2.0, 4096, static_cast<double>(len)));
    EXPECT_EQ(r.attention, 1.0f);
  }
  // Hand check: length 2 * 4096 at factor 2 gives effective factor 3, so the lowest pair is / 3.
  const double lowest = std::pow(10000.0, -126.0 / 128) / 3.0;
  EXPECT_NEAR(run_ok(s, 128, 8192).inv_freq[63], lowest, 1.2e-7 * lowest);
}

TEST(Frequencies, YarnQwen) {
  // Qwen2.5-style: rot 128, base 1e6, factor 4, original 32768.
  const rope::RopeScaling s = rope::RopeScaling::yarn(1e6, 4.0, 32768);
  const InvFreq r = run_ok(s, 128);
  const YarnRef ref = ref_yarn(1e6, 128, 4.0, 32768, 32, 1, 0, 0);
  expect_matches(r.inv_freq, ref.inv_freq);
  EXPECT_FLOAT_EQ(r.attention, static_cast<float>(0.1 * std::log(4.0) + 1.0));
  // Hand-derived range: 32 turns at pair 23.6 -> 23, 1 turn at pair 39.65 -> 40.
  EXPECT_EQ(ref.low, 23.0);
  EXPECT_EQ(ref.high, 40.0);
  const std::vector<float> plain = run_ok(rope::RopeScaling::unscaled(1e6), 128).inv_freq;
  const std::vector<float> interp = run_ok(rope::RopeScaling::linear(1e6, 4.0), 128).inv_freq;
  for (int i = 0; i <= 23; ++i) EXPECT_EQ(r.inv_freq[i], plain[i]) << i;
  for (int i = 24; i < 40; ++i) {
    EXPECT_LT(r.inv_freq[i], plain[i]) << i;
    EXPECT_GT(r.inv_freq[i], interp[i]) << i;
  }
  for (int i = 40; i < 64; ++i) EXPECT_EQ(r.inv_freq[i], interp[i]) << i;
}

TEST(Frequencies, YarnDeepSeekV3) {
  // DeepSeek-V3: rope head dim 64, base 10000, factor 40, original 4096, mscale = mscale_all_dim = 1.
  rope::RopeScaling s = rope::RopeScaling::yarn(10000.0, 40.0, 4096, 32, 1);
  s.mscale = 1.0;
  s.mscale_all_dim = 1.0;
  const InvFreq r = run_ok(s, 64);
  const YarnRef ref = ref_yarn(10000.0, 64, 40.0, 4096, 32, 1, 1, 1);
  expect_matches(r.inv_freq, ref.inv_freq);
  EXPECT_EQ(r.attention, 1.0f);  // equal mscales cancel
  EXPECT_EQ(ref.low, 10.0);      // 10.47 floored
  EXPECT_EQ(ref.high, 23.0);     // 22.51 ceiled

  // Unequal mscales: the ratio of the two m(s) terms.
  s.mscale = 1.0;
  s.mscale_all_dim = 0.5;
  const float want = static_cast<float>((1.0 + 0.1 * std::log(40.0)) / (1.0 + 0.05 * std::log(40.0)));
  EXPECT_FLOAT_EQ(run_ok(s, 64).attention, want);
  // Only one of them set: the paper's default.
  s.mscale_all_dim = 0.0;
  EXPECT_FLOAT_EQ(run_ok(s, 64).attention, static_cast<float>(1.0 + 0.1 * std::log(40.0)));
}

TEST(Frequencies, YarnOptions) {
  rope::RopeScaling s = rope::RopeScaling::yarn(10000.0, 8.0, 2048, 24, 2);
  expect_matches(run_ok(s, 128).inv_freq, ref_yarn(10000.0, 128, 8.0, 2048, 24, 2, 0, 0).inv_freq);
  s.truncate = false;
  expect_matches(run_ok(s, 128).inv_freq, ref_yarn(10000.0, 128, 8.0, 2048, 24, 2, 0, 0, false).inv_freq);
  s.attention_factor = 1.5;
  EXPECT_EQ(run_ok(s, 128).attention, 1.5f);
  // factor 1: nothing to interpolate, attention 1.
  const InvFreq one = run_ok(rope::RopeScaling::yarn(10000.0, 1.0, 2048), 128);
  EXPECT_EQ(one.inv_freq, run_ok(rope::RopeScaling::unscaled(10000.0), 128).inv_freq);
  EXPECT_EQ(one.attention, 1.0f);
  // beta_fast == beta_slow: a zero-width range widened by 0.001, as HF.
  s = rope::RopeScaling::yarn(10000.0, 4.0, 4096, 4, 4);
  expect_matches(run_ok(s, 64).inv_freq, ref_yarn(10000.0, 64, 4.0, 4096, 4, 4, 0, 0).inv_freq);
}

TEST(Frequencies, Llama31) {
  // Llama-3.1-8B: rot 128, base 500000, factor 8, low 1, high 4, original 8192.
  const InvFreq r = run_ok(rope::RopeScaling::llama3(500000.0), 128);
  expect_matches(r.inv_freq, ref_llama3(500000.0, 128, 8.0, 1.0, 4.0, 8192));
  EXPECT_EQ(r.attention, 1.0f);
  const std::vector<float> plain = run_ok(rope::RopeScaling::unscaled(500000.0), 128).inv_freq;
  // Hand check: the highest-frequency pair is unchanged, the lowest is divided by 8. The
  // wavelength 2*pi*500000^(2i/128) passes 2048 at i = 28.2 and 8192 at i = 34.98.
  EXPECT_EQ(r.inv_freq[0], 1.0f);
  EXPECT_EQ(r.inv_freq[63], static_cast<float>(std::pow(500000.0, -126.0 / 128) / 8.0));
  for (int i = 0; i <= 28; ++i) EXPECT_EQ(r.inv_freq[i], plain[i]) << i;
  for (int i = 29; i <= 34; ++i) {
    EXPECT_LT(r.inv_freq[i], plain[i]) << i;
    EXPECT_GT(r.inv_freq[i], plain[i] / 8.0f) << i;
  }
  for (int i = 35; i < 64; ++i) {
    EXPECT_NEAR(r.inv_freq[i], plain[i] / 8.0, 1.2e-7 * plain[i] / 8.0) << i;
  }
  // Other settings.
  expect_matches(run_ok(rope::RopeScaling::llama3(500000.0, 32.0, 1.0, 4.0, 8192), 64).inv_freq,
                 ref_llama3(500000.0, 64, 32.0, 1.0, 4.0, 8192));
  expect_matches(run_ok(rope::RopeScaling::llama3(10000.0, 4.0, 2.0, 8.0, 4096), 128).inv_freq,
                 ref_llama3(10000.0, 128, 4.0, 2.0, 8.0, 4096));
}

TEST(Frequencies, LongRope) {
  // Phi-3-mini-128k-like: rot 96, base 10000, original 4096, max 131072; made-up factors.
  const int rot = 96;
  std::vector<float> short_f(rot / 2), long_f(rot / 2);
  for (int i = 0; i < rot / 2; ++i) {
    short_f[i] = 1.0f + 0.01f * i;
    long_f[i] = 1.0f + 0.75f * i;
  }
  const rope::RopeScaling s = rope::RopeScaling::longrope(10000.0, short_f.data(), long_f.data(), 4096, 131072);
  // Hand check: ln(32) / ln(4096) = 5/12, so the factor is sqrt(17/12).
  const float attention = static_cast<float>(std::sqrt(17.0 / 12.0));
  for (std::int64_t len : {0, 100, 4096}) {
    const InvFreq r = run_ok(s, rot, len);
    expect_matches(r.inv_freq, ref_longrope(10000.0, rot, short_f));
    EXPECT_FLOAT_EQ(r.attention, attention);
  }
  for (std::int64_t len : {4097, 131072, 200000}) {
    const InvFreq r = run_ok(s, rot, len);
    expect_matches(r.inv_freq, ref_longrope(10000.0, rot, long_f));
    EXPECT_FLOAT_EQ(r.attention, attention);
  }
  EXPECT_EQ(run_ok(s, rot).inv_freq[0], 1.0f);       // short factor 1 on pair 0
  EXPECT_EQ(run_ok(s, rot, 5000).inv_freq[0], 1.0f);  // long factor 1 too
  // No extension: attention 1; explicit attention_factor wins.
  rope::RopeScaling same = rope::RopeScaling::longrope(10000.0, short_f.data(), long_f.data(), 4096, 4096);
  EXPECT_EQ(run_ok(same, rot).attention, 1.0f);
  same.attention_factor = 1.25;
  EXPECT_EQ(run_ok(same, rot).attention, 1.25f);
}

// Every rejected argument: cudaErrorInvalidValue, a reason naming it, nothing written.
void expect_rejected(const rope::RopeScaling& s, int rot, const char* reason_part, std::int64_t seq_len = 0) {
  SCOPED_TRACE(reason_part);
  const InvFreq r = run(s, rot, seq_len);
  EXPECT_EQ(r.status.error, cudaErrorInvalidValue);
  EXPECT_NE(std::string(r.status.message).find(reason_part), std::string::npos) << r.status.message;
  for (float v : r.inv_freq) EXPECT_TRUE(std::isnan(v));
  EXPECT_EQ(r.attention, kGuard);
}

TEST(Frequencies, InvalidArgs) {
  using rope::RopeScaling;
  using rope::ScalingType;
  float out[64];
  float att = kGuard;
  EXPECT_EQ(rope::compute_inv_freq(RopeScaling::unscaled(1e4), 128, nullptr, &att).error, cudaErrorInvalidValue);
  EXPECT_EQ(att, kGuard);
  std::fill(out, out + 64, kGuard);
  EXPECT_EQ(rope::compute_inv_freq(RopeScaling::unscaled(1e4), 128, out, nullptr).error, cudaErrorInvalidValue);
  for (float v : out) EXPECT_EQ(v, kGuard);

  expect_rejected(RopeScaling::unscaled(1e4), 0, "rotary_dim");
  expect_rejected(RopeScaling::unscaled(1e4), -2, "rotary_dim");
  expect_rejected(RopeScaling::unscaled(1e4), 7, "rotary_dim must be even");
  for (double bad : {0.0, -10.0, std::nan(""), kInf}) expect_rejected(RopeScaling::unscaled(bad), 64, "base");
  expect_rejected(RopeScaling::unscaled(1e4), 64, "seq_len", -1);
  RopeScaling bad_type = RopeScaling::unscaled(1e4);
  bad_type.type = static_cast<ScalingType>(99);
  expect_rejected(bad_type, 64, "scaling type");

  // factor < 1 (or not finite) wherever the method uses it.
  const float f[32] = {};
  for (double bad : {0.5, 0.0, -2.0, std::nan(""), kInf}) {
    expect_rejected(RopeScaling::linear(1e4, bad), 64, "factor");
    expect_rejected(RopeScaling::ntk(1e4, bad), 64, "factor");
    expect_rejected(RopeScaling::dynamic_ntk(1e4, bad, 4096), 64, "factor");
    expect_rejected(RopeScaling::yarn(1e4, bad, 4096), 64, "factor");
    expect_rejected(RopeScaling::llama3(1e4, bad), 64, "factor");
  }
  RopeScaling unused_factor = RopeScaling::unscaled(1e4);
  unused_factor.factor = 0.5;  // plain RoPE ignores it
  EXPECT_TRUE(run(unused_factor, 64).status.ok());

  expect_rejected(RopeScaling::ntk(1e4, 2.0), 2, "rotary_dim >= 4");
  expect_rejected(RopeScaling::dynamic_ntk(1e4, 2.0, 4096), 2, "rotary_dim >= 4");
  expect_rejected(RopeScaling::dynamic_ntk(1e4, 2.0, 0), 64, "original_max_position_embeddings");
  expect_rejected(RopeScaling::yarn(1e4, 2.0, 0), 64, "original_max_position_embeddings");
  expect_rejected(RopeScaling::llama3(1e4, 8.0, 1.0, 4.0, -1), 64, "original_max_position_embeddings");
  expect_rejected(RopeScaling::longrope(1e4, f, f, 0, 4096), 64, "original_max_position_embeddings");

  // YaRN.
  expect_rejected(RopeScaling::yarn(1.0, 2.0, 4096), 64, "base (rope_theta) > 1");
  expect_rejected(RopeScaling::yarn(1e4, 2.0, 4096, 0.0, 1.0), 64, "beta_fast and beta_slow");
  expect_rejected(RopeScaling::yarn(1e4, 2.0, 4096, 32.0, -1.0), 64, "beta_fast and beta_slow");
  expect_rejected(RopeScaling::yarn(1e4, 2.0, 4096, 1.0, 32.0), 64, "beta_fast must be >= beta_slow");
  RopeScaling yarn = RopeScaling::yarn(1e4, 2.0, 4096);
  yarn.mscale = -1.0;
  expect_rejected(yarn, 64, "mscale");
  yarn.mscale = 1.0;
  yarn.mscale_all_dim = std::nan("");
  expect_rejected(yarn, 64, "mscale");
  yarn = RopeScaling::yarn(1e4, 2.0, 4096);
  yarn.attention_factor = -1.0;
  expect_rejected(yarn, 64, "attention_factor");

  // Llama-3.1.
  expect_rejected(RopeScaling::llama3(1e4, 8.0, 0.0, 4.0), 64, "low_freq_factor");
  expect_rejected(RopeScaling::llama3(1e4, 8.0, 2.0, 2.0), 64, "high_freq_factor");
  expect_rejected(RopeScaling::llama3(1e4, 8.0, 4.0, 1.0), 64, "high_freq_factor");

  // LongRoPE.
  std::vector<float> ok(32, 1.0f), zero(32, 1.0f), nan(32, 1.0f);
  zero[31] = 0.0f;
  nan[5] = kNaN;
  expect_rejected(RopeScaling::longrope(1e4, nullptr, ok.data(), 4096, 131072), 64, "short_factor is null");
  expect_rejected(RopeScaling::longrope(1e4, ok.data(), nullptr, 4096, 131072), 64, "long_factor is null");
  expect_rejected(RopeScaling::longrope(1e4, ok.data(), ok.data(), 4096, 0), 64, "max_position_embeddings");
  expect_rejected(RopeScaling::longrope(1e4, zero.data(), ok.data(), 4096, 131072), 64, "entries");
  expect_rejected(RopeScaling::longrope(1e4, ok.data(), nan.data(), 4096, 131072), 64, "entries");
  RopeScaling lr = RopeScaling::longrope(1e4, ok.data(), ok.data(), 4096, 131072);
  lr.attention_factor = kInf;
  expect_rejected(lr, 64, "attention_factor");
}

// ---------------------------------------------------------------------------------------------
// cos/sin tables.

float to_f(float v) { return v; }
float to_f(__half v) { return __half2float(v); }
float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename E> E nan_of() { return E(kNaN); }
template <> __half nan_of<__half>() { return __float2half(kNaN); }
template <> __nv_bfloat16 nan_of<__nv_bfloat16>() { return __float2bfloat16(kNaN); }

// Absolute tolerance per element type, for values of magnitude <= scale.
template <typename E> double tolerance(float scale);
template <> double tolerance<float>(float scale) { return 2e-7 * std::max(1.0f, scale); }
template <> double tolerance<__half>(float scale) { return 1e-3 * std::max(1.0f, scale); }
template <> double tolerance<__nv_bfloat16>(float scale) { return 8e-3 * std::max(1.0f, scale); }

/// A table with a guard region: rows * row_stride elements, plus `kPad` guard elements before
/// and after; everything starts NaN, so unwritten entries and stray writes both show.
template <typename E>
struct Table {
  static constexpr int kPad = 8;
  std::vector<E> buf;
  Table(std::int64_t rows, std::int64_t row_stride) : buf(rows * row_stride + 2 * kPad, nan_of<E>()) {}
  E* data() { return buf.data() + kPad; }
};

/// Checks both tables against fp64 cos/sin of row * inv_freq[i] (the fp32 frequency, as the
/// kernel sees it), that every entry was written and that padding and guards stayed NaN.
/// `cos_base` / `sin_base` are the offsets of entry [0, 0] in their buffers (the same buffer
/// for the fused layout).
template <typename E>
void check_table(const std::vector<E>& cos_buf, const std::vector<E>& sin_buf, std::int64_t cos_base,
                 std::int64_t sin_base, std::int64_t rows, int rot, std::int64_t row_stride,
                 const std::vector<float>& inv_freq, float scale) {
  const int half = rot / 2;
  const double tol = tolerance<E>(scale);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(r) * static_cast<double>(inv_freq[i]);
      const double c = to_f(cos_buf[cos_base + r * row_stride + i]);
      const double s = to_f(sin_buf[sin_base + r * row_stride + i]);
      ASSERT_TRUE(std::isfinite(c) && std::isfinite(s)) << "row " << r << " pair " << i << " not written";
      const double err = std::max(std::fabs(c - scale * std::cos(angle)), std::fabs(s - scale * std::sin(angle)));
      ASSERT_LE(err, tol) << "row " << r << " pair " << i;
    }
  }
}

template <typename E>
void expect_untouched_outside(const std::vector<E>& buf, std::int64_t first, std::int64_t rows, std::int64_t row_stride,
                              std::int64_t width) {
  // Everything not in [first + r * row_stride, + width) must still be NaN.
  std::vector<bool> written(buf.size(), false);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t i = 0; i < width; ++i) written[first + r * row_stride + i] = true;
  for (std::size_t k = 0; k < buf.size(); ++k) {
    if (!written[k]) ASSERT_TRUE(std::isnan(to_f(buf[k]))) << "element " << k << " was written";
  }
}

std::vector<float> llama3_freqs(int rot) {
  std::vector<float> f(rot / 2);
  float att;
  EXPECT_TRUE(rope::compute_inv_freq(rope::RopeScaling::llama3(500000.0), rot, f.data(), &att).ok());
  return f;
}

std::vector<float> yarn_freqs(int rot, float* att) {
  std::vector<float> f(rot / 2);
  EXPECT_TRUE(rope::compute_inv_freq(rope::RopeScaling::yarn(1e6, 4.0, 32768), rot, f.data(), att).ok());
  return f;
}

template <typename E>
void host_fill_case(int rot, std::int64_t rows, std::int64_t row_stride, const std::vector<float>& inv_freq,
                    float scale) {
  Table<E> cos_t(rows, row_stride), sin_t(rows, row_stride);
  ASSERT_EQ(rope::fill_cos_sin_table_host(inv_freq.data(), rot, scale, rows, cos_t.data(), sin_t.data(), row_stride),
            cudaSuccess)
      << rope::last_error_message();
  check_table(cos_t.buf, sin_t.buf, Table<E>::kPad, Table<E>::kPad, rows, rot, row_stride, inv_freq, scale);
  expect_untouched_outside(cos_t.buf, Table<E>::kPad, rows, row_stride, rot / 2);
  expect_untouched_outside(sin_t.buf, Table<E>::kPad, rows, row_stride, rot / 2);
}

TEST(Frequencies, FillTableHostFloat) {
  host_fill_case<float>(128, 4096, 64, llama3_freqs(128), 1.0f);
  host_fill_case<float>(128, 1000, 72, llama3_freqs(128), 1.0f);  // padded rows stay untouched
  float att;
  const std::vector<float> yarn = yarn_freqs(128, &att);
  host_fill_case<float>(128, 2048, 64, yarn, att);  // YaRN attention factor 1.1386
}

TEST(Frequencies, FillTableHostHalf) { host_fill_case<__half>(128, 2048, 64, llama3_freqs(128), 1.0f); }

TEST(Frequencies, FillTableHostBFloat16) {
  float att;
  const std::vector<float> yarn = yarn_freqs(64, &att);
  host_fill_case<__nv_bfloat16>(64, 2048, 40, yarn, att);
}

TEST(Frequencies, FillTableHostLargePositions) {
  // Rows up to 2^17 + 8: a plain fp32 angle would be off by ~1e-2 here.
  host_fill_case<float>(8, 131080, 4, llama3_freqs(8), 1.0f);
}

TEST(Frequencies, FillTableHostFusedLayout) {
  // vLLM/FlashInfer cache: row = [cos(rot/2) | sin(rot/2)], padded to rot + 6.
  const int rot = 64;
  const std::int64_t rows = 777, stride = rot + 6;
  const std::vector<float> f = llama3_freqs(rot);
  Table<float> cache(rows, stride);
  ASSERT_EQ(rope::fill_cos_sin_table_host(f.data(), rot, 1.0f, rows, cache.data(), cache.data() + rot / 2, stride),
            cudaSuccess);
  check_table(cache.buf, cache.buf, Table<float>::kPad, Table<float>::kPad + rot / 2, rows, rot, stride, f, 1.0f);
  expect_untouched_outside(cache.buf, Table<float>::kPad, rows, stride, rot);
}

TEST(Frequencies, FillTableHostMatchesKernelAngle) {
  // The table holds exactly what computed mode uses: rope::device::rotary_sincos of (row, freq).
  const int rot = 128;
  const std::vector<float> f = llama3_freqs(rot);
  std::vector<float> c(300 * 64), s(300 * 64);
  ASSERT_EQ(rope::fill_cos_sin_table_host(f.data(), rot, 1.25f, 300, c.data(), s.data(), 64), cudaSuccess);
  for (int r = 0; r < 300; r += 7) {
    for (int i = 0; i < 64; ++i) {
      float ws, wc;
      rope::device::rotary_sincos(r, f[i], 1.25f, ws, wc);
      ASSERT_EQ(std::memcmp(&wc, &c[r * 64 + i], 4), 0);
      ASSERT_EQ(std::memcmp(&ws, &s[r * 64 + i], 4), 0);
    }
  }
}

// Both entry points validate identically, before touching the GPU, so this runs anywhere.
TEST(Frequencies, FillTableInvalidArgs) {
  std::vector<float> f(32, 0.5f), c(64 * 32 + 1, kGuard), s(64 * 32 + 1, kGuard);
  auto expect_bad = [&](const float* inv, int rot, float scale, std::int64_t rows, float* co, float* so,
                        std::int64_t stride, const char* reason_part) {
    SCOPED_TRACE(reason_part);
    for (int device = 0; device < 2; ++device) {
      const cudaError_t e = device ? rope::fill_cos_sin_table(inv, rot, scale, rows, co, so, stride)
                                   : rope::fill_cos_sin_table_host(inv, rot, scale, rows, co, so, stride);
      EXPECT_EQ(e, cudaErrorInvalidValue);
      EXPECT_NE(std::string(rope::last_error_message()).find(reason_part), std::string::npos)
          << rope::last_error_message();
    }
    for (float v : c) ASSERT_EQ(v, kGuard);
    for (float v : s) ASSERT_EQ(v, kGuard);
  };
  expect_bad(nullptr, 64, 1.0f, 64, c.data(), s.data(), 32, "inv_freq is null");
  expect_bad(f.data(), 64, 1.0f, 64, nullptr, s.data(), 32, "cos_out is null");
  expect_bad(f.data(), 64, 1.0f, 64, c.data(), nullptr, 32, "sin_out is null");
  expect_bad(f.data(), 64, 1.0f, -1, c.data(), s.data(), 32, "rows is negative");
  expect_bad(f.data(), 64, 1.0f, 64, c.data(), s.data(), 31, "row_stride");
  expect_bad(f.data(), 63, 1.0f, 64, c.data(), s.data(), 32, "rotary_dim must be even");
  expect_bad(f.data(), 0, 1.0f, 64, c.data(), s.data(), 32, "rotary_dim");
  expect_bad(f.data(), 64, kNaN, 64, c.data(), s.data(), 32, "attention_scaling");
  expect_bad(f.data(), 64, INFINITY, 64, c.data(), s.data(), 32, "attention_scaling");
  expect_bad(f.data(), 64, 1.0f, 64, c.data(), c.data(), 32, "same buffer");
  float* misaligned = reinterpret_cast<float*>(reinterpret_cast<char*>(c.data()) + 2);
  expect_bad(f.data(), 64, 1.0f, 64, misaligned, s.data(), 32, "aligned");
  expect_bad(reinterpret_cast<const float*>(reinterpret_cast<const char*>(f.data()) + 1), 64, 1.0f, 64, c.data(),
             s.data(), 32, "aligned");
  // Zero rows: success, nothing touched, null pointers allowed, no launch.
  EXPECT_EQ(rope::fill_cos_sin_table_host<float>(nullptr, 64, 1.0f, 0, nullptr, nullptr, 32), cudaSuccess);
  EXPECT_EQ(rope::fill_cos_sin_table<float>(nullptr, 64, 1.0f, 0, nullptr, nullptr, 32), cudaSuccess);
}

// ---------------------------------------------------------------------------------------------
// GPU: skipped without a device.

bool has_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!has_gpu()) GTEST_SKIP() << "no CUDA device"

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr << ": " << rope::last_error_message()

template <typename E>
void gpu_fill_case(int rot, std::int64_t rows, std::int64_t row_stride, const std::vector<float>& inv_freq,
                   float scale, bool fused) {
  const int half = rot / 2;
  // Fused: one buffer, sin at +half; separate: two buffers. Both with guards, NaN-filled.
  Table<E> a(rows, row_stride), b(fused ? 0 : rows, row_stride);
  float* d_freq = nullptr;
  E* d_a = nullptr;
  E* d_b = nullptr;
  CUDA_OK(cudaMalloc(&d_freq, half * sizeof(float)));
  CUDA_OK(cudaMalloc(&d_a, a.buf.size() * sizeof(E)));
  CUDA_OK(cudaMalloc(&d_b, b.buf.size() * sizeof(E)));
  CUDA_OK(cudaMemcpy(d_freq, inv_freq.data(), half * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(d_a, a.buf.data(), a.buf.size() * sizeof(E), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(d_b, b.buf.data(), b.buf.size() * sizeof(E), cudaMemcpyHostToDevice));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreate(&stream));
  E* cos_d = d_a + Table<E>::kPad;
  E* sin_d = fused ? cos_d + half : d_b + Table<E>::kPad;
  CUDA_OK(rope::fill_cos_sin_table(d_freq, rot, scale, rows, cos_d, sin_d, row_stride, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(a.buf.data(), d_a, a.buf.size() * sizeof(E), cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(b.buf.data(), d_b, b.buf.size() * sizeof(E), cudaMemcpyDeviceToHost));
  if (fused) {
    check_table(a.buf, a.buf, Table<E>::kPad, Table<E>::kPad + half, rows, rot, row_stride, inv_freq, scale);
    expect_untouched_outside(a.buf, Table<E>::kPad, rows, row_stride, rot);
  } else {
    check_table(a.buf, b.buf, Table<E>::kPad, Table<E>::kPad, rows, rot, row_stride, inv_freq, scale);
    expect_untouched_outside(a.buf, Table<E>::kPad, rows, row_stride, half);
    expect_untouched_outside(b.buf, Table<E>::kPad, rows, row_stride, half);
  }
  cudaStreamDestroy(stream);
  cudaFree(d_freq);
  cudaFree(d_a);
  cudaFree(d_b);
}

TEST(Frequencies, FillTableGpuFloat) {
  SKIP_WITHOUT_GPU();
  gpu_fill_case<float>(128, 8192, 64, llama3_freqs(128), 1.0f, false);
  gpu_fill_case<float>(128, 1000, 70, llama3_freqs(128), 1.0f, false);
  gpu_fill_case<float>(8, 131080, 4, llama3_freqs(8), 1.0f, false);  // large positions
  float att;
  const std::vector<float> yarn = yarn_freqs(128, &att);
  gpu_fill_case<float>(128, 4096, 64, yarn, att, false);
}

TEST(Frequencies, FillTableGpuHalf) {
  SKIP_WITHOUT_GPU();
  gpu_fill_case<__half>(128, 4096, 64, llama3_freqs(128), 1.0f, false);
}

TEST(Frequencies, FillTableGpuBFloat16) {
  SKIP_WITHOUT_GPU();
  float att;
  const std::vector<float> yarn = yarn_freqs(64, &att);
  gpu_fill_case<__nv_bfloat16>(64, 4096, 36, yarn, att, false);
}

TEST(Frequencies, FillTableGpuFusedLayout) {
  SKIP_WITHOUT_GPU();
  gpu_fill_case<float>(64, 3000, 64 + 4, llama3_freqs(64), 1.0f, true);
  gpu_fill_case<__half>(128, 3000, 128, llama3_freqs(128), 1.0f, true);
}

TEST(Frequencies, FillTableGpuAgreesWithComputedMode) {
  // An fp32 table from fill_cos_sin_table and the kernel's computed mode give bit-identical output.
  SKIP_WITHOUT_GPU();
  const int rot = 128, heads = 4;
  const std::int64_t tokens = 5000;
  float att;
  const std::vector<float> f = yarn_freqs(rot, &att);
  std::vector<float> x(tokens * heads * rot);
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  for (float& v : x) v = dist(gen);
  const std::size_t bytes = x.size() * sizeof(float);
  float *d_freq, *d_x, *d_y1, *d_y2, *d_cos, *d_sin;
  CUDA_OK(cudaMalloc(&d_freq, rot / 2 * sizeof(float)));
  CUDA_OK(cudaMalloc(&d_x, bytes));
  CUDA_OK(cudaMalloc(&d_y1, bytes));
  CUDA_OK(cudaMalloc(&d_y2, bytes));
  CUDA_OK(cudaMalloc(&d_cos, tokens * rot / 2 * sizeof(float)));
  CUDA_OK(cudaMalloc(&d_sin, tokens * rot / 2 * sizeof(float)));
  CUDA_OK(cudaMemcpy(d_freq, f.data(), rot / 2 * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(d_x, x.data(), bytes, cudaMemcpyHostToDevice));
  CUDA_OK(rope::fill_cos_sin_table(d_freq, rot, att, tokens, d_cos, d_sin, rot / 2));

  rope::RopeParams<float> p;
  p.num_tokens = tokens;
  p.head_dim = rot;
  p.q = rope::packed_heads<float>(d_x, d_y1, heads, rot);
  p.cos_sin = rope::computed_cos_sin(d_freq, att);
  CUDA_OK(rope::rope_forward(p));
  p.q = rope::packed_heads<float>(d_x, d_y2, heads, rot);
  p.cos_sin = rope::cos_sin_table(static_cast<const float*>(d_cos), static_cast<const float*>(d_sin), tokens, rot / 2);
  CUDA_OK(rope::rope_forward(p));
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<float> y1(x.size()), y2(x.size());
  CUDA_OK(cudaMemcpy(y1.data(), d_y1, bytes, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(y2.data(), d_y2, bytes, cudaMemcpyDeviceToHost));
  EXPECT_EQ(std::memcmp(y1.data(), y2.data(), bytes), 0);
  for (float* ptr : {d_freq, d_x, d_y1, d_y2, d_cos, d_sin}) cudaFree(ptr);
}

}  // namespace
