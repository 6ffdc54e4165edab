// SPDX-License-Identifier: MIT
// rope::precompiled: rope_forward<T> and rope_backward<T> (RopeParams) and the one-call
// rope_forward<T>, for each tensor type the library holds
// (include/rope/precompiled.cuh lists every instance; this file defines one family of them).
#include <rope/precompiled.cuh>

namespace rope {

ROPE_DETAIL_PRECOMPILED_FOR_TYPES(ROPE_DETAIL_PRECOMPILED_LAUNCHERS, )

}  // namespace rope
