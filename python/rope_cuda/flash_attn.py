"""Drop-in for FlashAttention's ``flash_attn.layers.rotary.apply_rotary_emb``.

Same signature and semantics: ``x`` is ``[batch, seqlen, nheads, headdim]``, or packed
``[total_seqlen, nheads, headdim]`` with ``cu_seqlens``; ``cos`` / ``sin`` are ``[seqlen_ro, rotary_dim / 2]``
and position p takes row p; a token's position is its index in its sequence plus ``seqlen_offsets``
(an int, or one per sequence); the first ``rotary_dim`` elements of each head rotate, the rest pass
through. Differentiable with respect to ``x`` (also with ``inplace=True`` on a tensor autograd may
overwrite). ``max_seqlen`` only enters FlashAttention's check of the table length.

Positions past ``seqlen_ro`` pass through unrotated, as FlashAttention's kernel does for tensor
offsets (it asserts against them for int offsets; so does this drop-in where it can without
reading device memory).
"""

from typing import Optional, Union

import torch

from ._api import apply_rope, apply_rope_

Tensor = torch.Tensor

_POSITIONS: dict = {}  # (device, batch, seqlen) -> int32 [batch, seqlen] of 0 .. seqlen - 1


def _batch_positions(batch: int, seqlen: int, device) -> Tensor:
    key = (device, batch, seqlen)
    positions = _POSITIONS.get(key)
    if positions is None:
        if len(_POSITIONS) >= 64:
            _POSITIONS.clear()
        positions = torch.arange(seqlen, device=device, dtype=torch.int32).expand(batch, seqlen).contiguous()
        _POSITIONS[key] = positions
    return positions


def apply_rotary_emb(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool = False, inplace: bool = False,
                     seqlen_offsets: Union[int, Tensor] = 0, cu_seqlens: Optional[Tensor] = None,
                     max_seqlen: Optional[int] = None) -> Tensor:
    """Rotates x as FlashAttention's function does; returns the result (x itself when ``inplace``).

    Args:
        x: ``[batch, seqlen, nheads, headdim]``, or ``[total_seqlen, nheads, headdim]`` with cu_seqlens.
        cos, sin: ``[seqlen_ro, rotary_dim / 2]``, float32 or x's dtype.
        interleaved: pairs ``(x[2i], x[2i+1])`` (GPT-J) instead of the halves (GPT-NeoX).
        inplace: write the result into x.
        seqlen_offsets: int, or int32/int64 ``[batch]``: added to each sequence's positions (decoding
            with a KV cache).
        cu_seqlens: int32 ``[batch + 1]``: packed sequences (running totals of their lengths).
        max_seqlen: with cu_seqlens, the longest sequence (checked against the table, as FlashAttention does).
    """
    # FlashAttention's own checks of the table length: the longest sequence (seqlen, or max_seqlen
    # when packed) plus an int offset must fit; tensor offsets are not read on the host.
    seqlen = x.shape[1] if cu_seqlens is None else max_seqlen
    int_offset = 0 if isinstance(seqlen_offsets, Tensor) else int(seqlen_offsets)
    if seqlen is not None and int_offset + seqlen > cos.shape[0]:
        raise ValueError(f"rope_cuda.flash_attn: seqlen_offsets ({int_offset}) + seqlen ({seqlen}) exceeds the "
                         f"{cos.shape[0]} rows of cos / sin")
    if isinstance(seqlen_offsets, Tensor):
        offsets = seqlen_offsets
    else:
        offsets = None
        if int_offset:
            # Position p + offset is row p of the tables shifted by the offset: no positions array.
            cos, sin = cos[int_offset:], sin[int_offset:]
    kwargs = dict(cos=cos, sin=sin, interleaved=interleaved)
    if cu_seqlens is not None:
        kwargs.update(cu_seqlens=cu_seqlens, seqlen_offsets=offsets)
    else:
        if x.dim() != 4:
            raise ValueError(f"rope_cuda.flash_attn: x must be [batch, seqlen, nheads, headdim] without cu_seqlens, "
                             f"got shape {tuple(x.shape)}")
        positions = _batch_positions(x.shape[0], x.shape[1], x.device)
        if offsets is not None:
            if offsets.dim() != 1 or offsets.shape[0] != x.shape[0]:
                raise ValueError(f"rope_cuda.flash_attn: seqlen_offsets must be an int or [batch] = [{x.shape[0]}], "
                                 f"got shape {tuple(offsets.shape)}")
            positions = positions + offsets.to(torch.int32)[:, None]
        kwargs.update(positions=positions)
    if inplace and not (torch.is_grad_enabled() and x.requires_grad):
        apply_rope_(x, **kwargs)
        return x
    out, _ = apply_rope(x, **kwargs)
    if inplace:
        return x.copy_(out)
    return out
