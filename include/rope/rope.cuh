// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// rope: fused Rotary Positional Embedding for CUDA. Include this header; link rope::rope, or
/// rope::precompiled to call its precompiled launcher instances instead of compiling them.

#include <rope/config.cuh>
#include <rope/device.cuh>
#include <rope/frequencies.cuh>
#include <rope/kv_cache.cuh>
#include <rope/launch.cuh>
#include <rope/prologue.cuh>
#include <rope/qk_norm.cuh>
#include <rope/status.cuh>
#include <rope/types.cuh>
#include <rope/validate.cuh>

// rope::precompiled defines ROPE_PRECOMPILED for its users: the launchers' common instances
// then come from the library (extern template) instead of being compiled here.
#if defined(ROPE_PRECOMPILED)
#include <rope/precompiled.cuh>
#endif
