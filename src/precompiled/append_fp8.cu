// SPDX-License-Identifier: MIT
// rope::precompiled: rope_forward_append<T, __nv_fp8_e4m3> (16-bit T), for each tensor type the library holds
// (include/rope/precompiled.cuh lists every instance; this file defines one family of them).
#include <rope/precompiled.cuh>

namespace rope {

ROPE_DETAIL_PRECOMPILED_FOR_16BIT_TYPES(ROPE_DETAIL_PRECOMPILED_APPEND_FP8, )

}  // namespace rope
