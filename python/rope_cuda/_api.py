"""Keyword-argument entry points to the two ops (the thinnest possible layer over them)."""

import operator
from typing import Optional, Sequence, Tuple

import torch

Tensor = torch.Tensor


def _sections(mrope_section, mrope_layout):
    """The ops' (mrope_section, mrope_layout) arguments; their values are checked by the op."""
    if not isinstance(mrope_layout, str):
        raise TypeError(f"rope_cuda: mrope_layout must be a string (\"contiguous\" or \"interleaved\"), "
                        f"got {type(mrope_layout).__name__}")
    if mrope_section is not None:
        try:
            mrope_section = [operator.index(s) for s in mrope_section]
        except TypeError:
            raise TypeError(f"rope_cuda: mrope_section must be a list of ints, got {mrope_section!r}") from None
    return mrope_section, mrope_layout


def apply_rope(q: Tensor, k: Optional[Tensor] = None, *, positions: Optional[Tensor] = None,
               cos: Optional[Tensor] = None, sin: Optional[Tensor] = None,
               cos_sin_cache: Optional[Tensor] = None, inv_freq: Optional[Tensor] = None,
               attention_scaling: float = 1.0, interleaved: bool = False,
               mrope_section: Optional[Sequence[int]] = None,
               mrope_layout: str = "contiguous", enable_pdl: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """Rotates q (and k) out of place; differentiable with respect to q and k.

    Args:
        q: ``[tokens, heads, head_dim]`` or ``[batch, seq, heads, head_dim]``, float32/float16/bfloat16,
            any strides with a contiguous last dimension (slices of a fused QKV buffer work).
        k: optional, like q with its own head count.
        positions: optional int32/int64 of q's leading shape (``[tokens]`` or ``[batch, seq]``). Without
            it the position of a token is its index (in its sequence, for 4-D inputs). With
            ``mrope_section``: one row per axis, ``[axes, tokens]`` or ``[axes, batch, seq]`` (the
            ``position_ids`` of transformers' Qwen2-VL / Qwen3-VL, or a ViT patch's ``[row, column]``).
        cos, sin: a table ``[rows, rotary_dim / 2]`` each (or ``[batch or 1, rows, rotary_dim / 2]`` for
            4-D inputs), float32 or q's dtype, indexed by position. Row strides may be larger than
            the width (e.g. ``cos[..., :half]`` of transformers' duplicated ``[.., rotary_dim]`` rows).
        cos_sin_cache: alternatively one ``[rows, rotary_dim]`` table of ``[cos | sin]`` rows (vLLM).
        inv_freq: alternatively ``rotary_dim / 2`` float32 frequencies; cos/sin are then computed in
            the kernel from an exact angle ``position * inv_freq``.
        attention_scaling: multiplies cos and sin (YaRN / LongRoPE's attention factor).
        interleaved: pairs ``(x[2i], x[2i+1])`` (GPT-J) instead of ``(x[i], x[i + rotary_dim/2])``.
        mrope_section: multi-axis positions (M-RoPE, 2D vision RoPE): how many of the
            ``rotary_dim / 2`` frequencies each position axis takes, 2 or 3 entries summing to
            ``rotary_dim / 2`` (Qwen2-VL ``[16, 24, 24]``, Qwen3-VL ``[24, 20, 20]``, a ViT patch grid
            ``[rot/4, rot/4]``). Tables must hold every axis' positions; ``inv_freq`` works too.
        mrope_layout: how the sections map frequencies to axes (only with ``mrope_section``):
            ``"contiguous"``: consecutive ranges, axis 0 first (Qwen2-VL / Qwen2.5-VL's ``mrope_section``,
            2D vision RoPE); ``"interleaved"``: frequency j takes axis 1 if ``j % 3 == 1 and j < 3 * s1``,
            axis 2 if ``j % 3 == 2 and j < 3 * s2``, else axis 0 (Qwen3-VL). Unrelated to ``interleaved``,
            which picks the pairs.
        enable_pdl: programmatic dependent launch (Hopper and newer; no effect before): the launch
            may overlap the end of the kernel before it on the stream, and reads nothing before that
            kernel has finished, so results are the same. The backward pass launches likewise.

    ``rotary_dim`` is twice the table width (or the number of frequencies); the rest of each head
    is copied unchanged. Returns new contiguous tensors ``(q_out, k_out)`` (``k_out`` is None
    without k). Bad arguments raise ValueError with the reason; nothing is written.
    """
    out = torch.ops.rope_cuda.rope.default(q, k, positions, cos, sin, cos_sin_cache, inv_freq,
                                           attention_scaling, interleaved, False,
                                           *_sections(mrope_section, mrope_layout), bool(enable_pdl))
    return out[0], (out[1] if k is not None else None)


def apply_rope_(q: Tensor, k: Optional[Tensor] = None, *, positions: Optional[Tensor] = None,
                cos: Optional[Tensor] = None, sin: Optional[Tensor] = None,
                cos_sin_cache: Optional[Tensor] = None, inv_freq: Optional[Tensor] = None,
                attention_scaling: float = 1.0, interleaved: bool = False,
                mrope_section: Optional[Sequence[int]] = None,
                mrope_layout: str = "contiguous", enable_pdl: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """In-place :func:`apply_rope`: q and k are overwritten (the tail past rotary_dim is left alone)
    and returned. Not differentiable: tensors that require grad are refused (use apply_rope)."""
    if torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad)):
        raise ValueError("rope_cuda: apply_rope_ is not differentiable and q or k requires grad; "
                         "use apply_rope (functional) or run under torch.no_grad()")
    torch.ops.rope_cuda.rope_.default(q, k, positions, cos, sin, cos_sin_cache, inv_freq,
                                      attention_scaling, interleaved, False,
                                      *_sections(mrope_section, mrope_layout), bool(enable_pdl))
    return q, k
