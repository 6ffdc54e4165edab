// SPDX-License-Identifier: MIT
#pragma once

/// \file
/// The staging of a row's next token (launches whose rows walk tokens, detail/device/kernel.cuh): while
/// a lane works on one token, its first batch of head chunks for the row's next token is copied
/// from global to shared memory without passing through registers (cp.async), so that token's
/// memory round trip overlaps the current token's arithmetic and stores. The lane reads the
/// chunks back from shared memory when it reaches that token. Every lane stages and reads back
/// only its own slots, so no barrier is needed: a lane waits for its own copies alone.

#include <cstdint>

#include <rope/config.cuh>
#include <rope/detail/device/vector.cuh>

namespace rope {
namespace detail {

/// Whether cp.async copies an access of this many bytes.
ROPE_HOST_DEVICE constexpr bool stageable_bytes(int bytes) { return bytes == 4 || bytes == 8 || bytes == 16; }

/// Copies one aligned vector from global memory into a shared-memory slot without registers:
/// `cp.async` on the GPU (16 bytes bypass L1, as the x loads are read once), a plain copy on the
/// host, where the stage is a buffer of the test's.
template <typename T, int N>
ROPE_HOST_DEVICE void copy_to_stage(Packed<T, N>* slot, const T* src) {
  check_aligned<T, N>(src);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int kBytes = static_cast<int>(sizeof(Packed<T, N>));
  static_assert(stageable_bytes(kBytes), "cp.async copies 4, 8 or 16 bytes");
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(slot));
  if constexpr (kBytes == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(dst), "l"(src), "n"(kBytes) : "memory");
  }
#else  // the host, and GPUs without cp.async (whose kernels never stage: detail/device/kernel.cuh)
  *slot = *reinterpret_cast<const Packed<T, N>*>(src);
#endif
}

/// Closes the group of copies this thread issued for one token (cp.async.commit_group).
ROPE_HOST_DEVICE void commit_stage() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

/// Waits until this thread's copies have landed, all but the newest group when `newest_pending`
/// (the next token's, issued before this token's are read). Nothing to wait for on the host.
ROPE_HOST_DEVICE void wait_for_stage(bool newest_pending) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if (newest_pending) {
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
  } else {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  }
#else
  (void)newest_pending;
#endif
}

/// No staging: rows that take one token, and instances whose accesses cp.async cannot copy.
struct NoStage {
  static constexpr bool kEnabled = false;
};

/// One lane's slots, two sets of them: the set that holds the current token's first batch (staged
/// while the row's previous token was worked on) and the set the next token's batch goes to. The
/// next token's copies are issued first, before this token's chunks are read back, so no chunk
/// registers are live while its addresses are formed, and a set is overwritten only a whole token
/// after it was read. Slot `index` of a set is at `index * stride` from the set's start, so the
/// 16-byte slots of consecutive lanes are adjacent: a warp's 16-byte accesses to one slot index
/// are free of bank conflicts (narrower accesses, which use part of each slot, are not).
struct SharedStage {
  static constexpr bool kEnabled = true;
  static constexpr int kSlotBytes = 16;
  unsigned char* base;  ///< this lane's first slot of set 0
  int stride;           ///< bytes from one slot index to the next: kSlotBytes times the block's threads
  int set_bytes;        ///< bytes from set 0 to set 1
  int current_set;      ///< the set that holds the current token's batch (when `current`)
  bool current;         ///< the slots hold the current token's batch
  std::int64_t next;    ///< the row's next token, whose batch this token stages; -1 for none

  template <typename V>
  ROPE_HOST_DEVICE V* current_slot(int index) const {
    return reinterpret_cast<V*>(base + current_set * set_bytes + static_cast<std::ptrdiff_t>(index) * stride);
  }
  template <typename V>
  ROPE_HOST_DEVICE V* next_slot(int index) const {
    return reinterpret_cast<V*>(base + (current_set ^ 1) * set_bytes + static_cast<std::ptrdiff_t>(index) * stride);
  }
};

/// Dynamic shared memory a block may have without its kernel's consent (beyond it the kernel's
/// cudaFuncAttributeMaxDynamicSharedMemorySize must be raised first).
constexpr int kDynamicSharedBytesWithoutOptIn = 48 * 1024;

/// The dynamic shared memory the running block was launched with, in bytes.
__device__ __forceinline__ unsigned dynamic_shared_bytes() {
  unsigned bytes;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
  return bytes;
}

/// Shared memory a block of `threads` threads needs to stage `lane_slots` slots per lane, two sets.
ROPE_HOST_DEVICE constexpr int stage_bytes(int threads, int lane_slots) {
  return 2 * threads * lane_slots * SharedStage::kSlotBytes;
}

/// The stage of thread `thread` of a block of `threads`, whose slots start at `slots`
/// (stage_bytes(threads, lane_slots) bytes, 16-byte aligned): the kernel's, and the host tests'.
ROPE_HOST_DEVICE SharedStage make_shared_stage(unsigned char* slots, int thread, int threads, int lane_slots) {
  return SharedStage{slots + thread * SharedStage::kSlotBytes, threads * SharedStage::kSlotBytes,
                     stage_bytes(threads, lane_slots) / 2, 0, false, -1};
}

}  // namespace detail
}  // namespace rope
