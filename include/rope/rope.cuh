// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// rope: fused Rotary Positional Embedding for CUDA. Include this header; link rope::rope.

#include <rope/config.cuh>
#include <rope/device.cuh>
#include <rope/frequencies.cuh>
#include <rope/kv_cache.cuh>
#include <rope/launch.cuh>
#include <rope/qk_norm.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>
