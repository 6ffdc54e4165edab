"""Keyword-argument entry points to the two ops (the thinnest possible layer over them)."""

from typing import Optional, Tuple

import torch

Tensor = torch.Tensor


def apply_rope(q: Tensor, k: Optional[Tensor] = None, *, positions: Optional[Tensor] = None,
               cos: Optional[Tensor] = None, sin: Optional[Tensor] = None,
               cos_sin_cache: Optional[Tensor] = None, inv_freq: Optional[Tensor] = None,
               attention_scaling: float = 1.0, interleaved: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """Rotates q (and k) out of place; differentiable with respect to q and k.

    Args:
        q: ``[tokens, heads, head_dim]`` or ``[batch, seq, heads, head_dim]``, float32/float16/bfloat16,
            any strides with a contiguous last dimension (slices of a fused QKV buffer work).
        k: optional, like q with its own head count.
        positions: optional int32/int64 of q's leading shape (``[tokens]`` or ``[batch, seq]``). Without
            it the position of a token is its index (in its sequence, for 4-D inputs).
        cos, sin: a table ``[rows, rotary_dim / 2]`` each (or ``[batch or 1, rows, rotary_dim / 2]`` for
            4-D inputs), float32 or q's dtype, indexed by position. Row strides may be larger than
            the width (e.g. ``cos[..., :half]`` of transformers' duplicated ``[.., rotary_dim]`` rows).
        cos_sin_cache: alternatively one ``[rows, rotary_dim]`` table of ``[cos | sin]`` rows (vLLM).
        inv_freq: alternatively ``rotary_dim / 2`` float32 frequencies; cos/sin are then computed in
            the kernel from an exact angle ``position * inv_freq``.
        attention_scaling: multiplies cos and sin (YaRN / LongRoPE's attention factor).
        interleaved: pairs ``(x[2i], x[2i+1])`` (GPT-J) instead of ``(x[i], x[i + rotary_dim/2])``.

    ``rotary_dim`` is twice the table width (or the number of frequencies); the rest of each head
    is copied unchanged. Returns new contiguous tensors ``(q_out, k_out)`` (``k_out`` is None
    without k). Bad arguments raise ValueError with the reason; nothing is written.
    """
    out = torch.ops.rope_cuda.rope.default(q, k, positions, cos, sin, cos_sin_cache, inv_freq,
                                           attention_scaling, interleaved, False)
    return out[0], (out[1] if k is not None else None)


def apply_rope_(q: Tensor, k: Optional[Tensor] = None, *, positions: Optional[Tensor] = None,
                cos: Optional[Tensor] = None, sin: Optional[Tensor] = None,
                cos_sin_cache: Optional[Tensor] = None, inv_freq: Optional[Tensor] = None,
                attention_scaling: float = 1.0, interleaved: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """In-place :func:`apply_rope`: q and k are overwritten (the tail past rotary_dim is left alone)
    and returned. Not differentiable: tensors that require grad are refused (use apply_rope)."""
    if torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad)):
        raise ValueError("rope_cuda: apply_rope_ is not differentiable and q or k requires grad; "
                         "use apply_rope (functional) or run under torch.no_grad()")
    torch.ops.rope_cuda.rope_.default(q, k, positions, cos, sin, cos_sin_cache, inv_freq,
                                      attention_scaling, interleaved, False)
    return q, k
