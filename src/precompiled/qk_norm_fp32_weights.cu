// SPDX-License-Identifier: MIT
// rope::precompiled: rope_forward_qk_norm<T, float> (16-bit T), for each tensor type the library holds
// (include/rope/precompiled.cuh lists every instance; this file defines one family of them).
#include <rope/precompiled.cuh>

namespace rope {

ROPE_DETAIL_PRECOMPILED_FOR_16BIT_TYPES(ROPE_DETAIL_PRECOMPILED_QK_NORM_FP32_WEIGHTS, )

}  // namespace rope
