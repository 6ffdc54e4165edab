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


def _sequences(cu_seqlens, seqlen_offsets, cp_size, cp_rank, cp_layout):
    """The ops' packed-sequence arguments; their values are checked by the op."""
    if not isinstance(cp_layout, str):
        raise TypeError(f"rope_cuda: cp_layout must be a string (\"load_balanced\" or \"contiguous\"), "
                        f"got {type(cp_layout).__name__}")
    try:
        cp_size, cp_rank = operator.index(cp_size), operator.index(cp_rank)
    except TypeError:
        raise TypeError(f"rope_cuda: cp_size and cp_rank must be ints, got {cp_size!r} and {cp_rank!r}") from None
    return cu_seqlens, seqlen_offsets, cp_size, cp_rank, cp_layout


def check_cu_seqlens(cu_seqlens: Tensor, num_tokens: int, cp_size: int = 1, cp_layout: str = "load_balanced") -> None:
    """Raises ValueError unless ``cu_seqlens`` describes ``num_tokens`` local tokens: it starts at 0, never
    decreases, ends at ``num_tokens * cp_size``, and (with ``cp_size > 1``) every length is a multiple of
    ``2 * cp_size`` (``"load_balanced"``) or ``cp_size`` (``"contiguous"``).

    The ops never read cu_seqlens on the host (that would synchronize every call); this does, once,
    where the batch is built. On the GPU a bad cu_seqlens is read only within its ``batch + 1``
    entries and gives its tokens whatever positions its entries imply."""
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1:
        raise ValueError("rope_cuda: cu_seqlens must be a 1-D int32 tensor")
    if cu_seqlens.numel() < 2:
        raise ValueError("rope_cuda: cu_seqlens needs batch + 1 >= 2 entries")
    if cp_layout not in ("load_balanced", "contiguous"):
        raise ValueError(f"rope_cuda: cp_layout must be \"load_balanced\" or \"contiguous\", got {cp_layout!r}")
    if cp_size < 1:
        raise ValueError(f"rope_cuda: cp_size must be >= 1, got {cp_size}")
    cu = cu_seqlens.detach().cpu().tolist()
    if cu[0] != 0:
        raise ValueError(f"rope_cuda: cu_seqlens[0] must be 0, got {cu[0]}")
    multiple = 1 if cp_size == 1 else (2 * cp_size if cp_layout == "load_balanced" else cp_size)
    for s, (a, b) in enumerate(zip(cu, cu[1:])):
        if b < a:
            raise ValueError(f"rope_cuda: cu_seqlens decreases at sequence {s} ({a} -> {b})")
        if (b - a) % multiple:
            raise ValueError(f"rope_cuda: sequence {s} has length {b - a}, not a multiple of {multiple} "
                             f"({cp_layout} context parallelism over {cp_size} ranks)")
    if cu[-1] != num_tokens * cp_size:
        raise ValueError(f"rope_cuda: cu_seqlens ends at {cu[-1]} but the tokens are {num_tokens}"
                         + (f" x cp_size {cp_size}" if cp_size > 1 else ""))


def apply_rope(q: Tensor, k: Optional[Tensor] = None, *, positions: Optional[Tensor] = None,
               cos: Optional[Tensor] = None, sin: Optional[Tensor] = None,
               cos_sin_cache: Optional[Tensor] = None, inv_freq: Optional[Tensor] = None,
               attention_scaling: float = 1.0, interleaved: bool = False,
               mrope_section: Optional[Sequence[int]] = None,
               mrope_layout: str = "contiguous", enable_pdl: bool = False, cu_seqlens: Optional[Tensor] = None,
               seqlen_offsets: Optional[Tensor] = None, cp_size: int = 1, cp_rank: int = 0,
               cp_layout: str = "load_balanced") -> Tuple[Tensor, Optional[Tensor]]:
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
        cu_seqlens: packed variable-length sequences (THD) instead of positions: int32 ``[batch + 1]``
            on q's device, 0 then the running totals of the sequences' lengths; q and k are then
            ``[total_tokens, heads, head_dim]`` and a token's position is its index in its sequence.
            The values are not read on the host (see :func:`check_cu_seqlens`).
        seqlen_offsets: with cu_seqlens, int32/int64 ``[batch]``: each sequence's first position
            (FlashAttention's ``seqlen_offsets``, Transformer Engine's ``start_positions``).
        cp_size, cp_rank: context parallelism over packed sequences: cu_seqlens then describes the
            full sequences (Transformer Engine's ``cu_seqlens_padded``) and q/k hold rank cp_rank's
            share of each, ``length / cp_size`` tokens per sequence; positions are global.
        cp_layout: ``"load_balanced"``: each sequence in ``2 * cp_size`` chunks, rank r holding chunks
            r and ``2 * cp_size - 1 - r`` (Transformer Engine, Megatron-Core; lengths multiples of
            ``2 * cp_size``); ``"contiguous"``: ``cp_size`` chunks, rank r holding chunk r.

    ``rotary_dim`` is twice the table width (or the number of frequencies); the rest of each head
    is copied unchanged. Returns new contiguous tensors ``(q_out, k_out)`` (``k_out`` is None
    without k). Bad arguments raise ValueError with the reason; nothing is written.
    """
    out = torch.ops.rope_cuda.rope.default(q, k, positions, cos, sin, cos_sin_cache, inv_freq,
                                           attention_scaling, interleaved, False,
                                           *_sections(mrope_section, mrope_layout), bool(enable_pdl),
        *_sequences(cu_seqlens, seqlen_offsets, cp_size, cp_rank, cp_layout))
    return out[0], (out[1] if k is not None else None)


def apply_rope_(q: Tensor, k: Optional[Tensor] = None, *, positions: Optional[Tensor] = None,
                cos: Optional[Tensor] = None, sin: Optional[Tensor] = None,
                cos_sin_cache: Optional[Tensor] = None, inv_freq: Optional[Tensor] = None,
                attention_scaling: float = 1.0, interleaved: bool = False,
                mrope_section: Optional[Sequence[int]] = None,
                mrope_layout: str = "contiguous", enable_pdl: bool = False, cu_seqlens: Optional[Tensor] = None,
                seqlen_offsets: Optional[Tensor] = None, cp_size: int = 1, cp_rank: int = 0,
                cp_layout: str = "load_balanced") -> Tuple[Tensor, Optional[Tensor]]:
    """In-place :func:`apply_rope`: q and k are overwritten (the tail past rotary_dim is left alone)
    and returned. Not differentiable: tensors that require grad are refused (use apply_rope)."""
    if torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad)):
        raise ValueError("rope_cuda: apply_rope_ is not differentiable and q or k requires grad; "
                         "use apply_rope (functional) or run under torch.no_grad()")
    torch.ops.rope_cuda.rope_.default(q, k, positions, cos, sin, cos_sin_cache, inv_freq,
                                      attention_scaling, interleaved, False,
                                      *_sections(mrope_section, mrope_layout), bool(enable_pdl),
        *_sequences(cu_seqlens, seqlen_offsets, cp_size, cp_rank, cp_layout))
    return q, k


def apply_qk_norm_rope_(q: Tensor, k: Optional[Tensor] = None, *, q_weight: Optional[Tensor] = None,
                        k_weight: Optional[Tensor] = None, eps: float = 1e-6, weight_one_plus: bool = False,
                        positions: Optional[Tensor] = None, cos: Optional[Tensor] = None, sin: Optional[Tensor] = None,
                        cos_sin_cache: Optional[Tensor] = None, inv_freq: Optional[Tensor] = None,
                        attention_scaling: float = 1.0, interleaved: bool = False, enable_pdl: bool = False,
                        cu_seqlens: Optional[Tensor] = None,
                        seqlen_offsets: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
    """Per-head RMSNorm of q and k, then RoPE, in place, in one launch (Qwen3, Gemma 3, OLMo 2).

    Each head x becomes ``rotate(x * rsqrt(mean(x^2) + eps) * w)`` (``w + 1`` with ``weight_one_plus``,
    Gemma's zero-centred weights), in fp32 and rounded once, over all head_dim elements (with
    partial rotary the tail is normalized but not rotated). ``q_weight`` / ``k_weight``: ``[head_dim]``
    in q's dtype, required for the tensors given. The RoPE arguments are :func:`apply_rope`'s
    (one position axis). Not differentiable: tensors that require grad are refused. Returns q, k.
    """
    if torch.is_grad_enabled() and (q.requires_grad or (k is not None and k.requires_grad)):
        raise ValueError("rope_cuda: apply_qk_norm_rope_ is not differentiable and q or k requires grad; "
                         "run under torch.no_grad()")
    torch.ops.rope_cuda.rope_qk_norm_.default(q, k, q_weight, k_weight, float(eps), bool(weight_one_plus), positions,
                                              cos, sin, cos_sin_cache, inv_freq, attention_scaling, interleaved,
                                              bool(enable_pdl), cu_seqlens, seqlen_offsets)
    return q, k


def apply_rope_and_cache_(q: Tensor, k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, slot_mapping: Tensor, *,
                          kv_cache_dtype: str = "auto", k_scale: float = 1.0, v_scale: float = 1.0,
                          cache_layout: str = "NHD", k_write_back: bool = True, positions: Optional[Tensor] = None,
                          cos: Optional[Tensor] = None, sin: Optional[Tensor] = None,
                          cos_sin_cache: Optional[Tensor] = None, inv_freq: Optional[Tensor] = None,
                          attention_scaling: float = 1.0, interleaved: bool = False, enable_pdl: bool = False,
                          cu_seqlens: Optional[Tensor] = None,
                          seqlen_offsets: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """RoPE of q and k in place, and the rotated k and v written to paged caches, in one launch
    (``rope::rope_forward_append``): token t's row is ``slot_mapping[t]`` (row ``s % block_size`` of
    block ``s // block_size``; a negative slot writes no row).

    Args:
        q, k, v: ``[tokens, heads, head_dim]`` views (k and v with the kv heads), q and k rotated in place
            (k only into the cache with ``k_write_back=False``).
        k_cache, v_cache: ``[num_blocks, block_size, kv_heads, head_dim]`` (``cache_layout="NHD"``, vLLM),
            ``[num_blocks, kv_heads, block_size, head_dim]`` (``"HND"``, FlashInfer) or ``[num_slots, kv_heads,
            head_dim]`` (SGLang's pools: one row per block); any strides with a contiguous last dimension.
        slot_mapping: int32/int64 ``[tokens]``.
        kv_cache_dtype: ``"auto"`` (caches in q's dtype: the rotated k's bits), or ``"fp8"`` / ``"fp8_e4m3"``
            (float8_e4m3fn or uint8 caches: ``saturate(x / scale)``, the bytes vLLM's reshape_and_cache_flash
            stores after a separate RoPE), with ``k_scale`` / ``v_scale`` (ignored with "auto").
        The RoPE arguments are :func:`apply_rope`'s (one position axis).

    Not differentiable (tensors that require grad are refused). Returns q, k.
    """
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        raise ValueError("rope_cuda: apply_rope_and_cache_ is not differentiable and q or k requires grad; "
                         "run under torch.no_grad()")
    torch.ops.rope_cuda.rope_append_.default(q, k, v, k_cache, v_cache, slot_mapping, kv_cache_dtype, float(k_scale),
                                             float(v_scale), cache_layout, bool(k_write_back), positions, cos, sin,
                                             cos_sin_cache, inv_freq, attention_scaling, interleaved,
                                             bool(enable_pdl), cu_seqlens, seqlen_offsets)
    return q, k
