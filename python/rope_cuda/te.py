"""Drop-in for Transformer Engine's ``transformer_engine.pytorch.attention.rope.apply_rotary_pos_emb``.

Same signature and semantics (TE 2.x): ``t`` in ``"sbhd"``, ``"bshd"`` or ``"thd"`` layout, ``freqs``
the fp32 angles ``[s2, 1, 1, d2]`` (``d2`` = rotary dim, the rest of each head passes through),
per-sequence ``start_positions``, packed sequences through ``cu_seqlens``, and context parallelism
(``cp_size`` / ``cp_rank``, TE's load-balanced chunks: rank r holds chunks r and ``2 * cp_size - 1 - r``
of each sequence). Differentiable with respect to ``t``; ``fused`` is accepted and ignored (one path).

One difference by construction: the two elements of a rotation pair share one angle, read from
``freqs[..., i]`` (pair i of the halves) or ``freqs[..., 2 * i]`` (interleaved). Every RoPE builds its
freqs that way (``cat([f, f])`` or each angle repeated twice); TE applies each element's own angle.
"""

from typing import Optional, Tuple

import torch

from ._api import apply_rope

Tensor = torch.Tensor

_TABLES: dict = {}  # one entry: (freqs, version, interleaved) -> (cos, sin)
_POSITIONS: dict = {}  # (device, format, s, b, cp_size, cp_rank) -> int32 positions of the tokens in memory order


def _tables(freqs: Tensor, interleaved: bool) -> Tuple[Tensor, Tensor]:
    """cos and sin of each pair's angle, ``[s2, d2 / 2]`` fp32, kept while the same freqs are passed."""
    key = _TABLES.get("key")
    if key is not None and key[0] is freqs and key[1] == freqs._version and key[2] == interleaved:
        return _TABLES["value"]
    if freqs.dim() != 4 or freqs.shape[1] != 1 or freqs.shape[2] != 1:
        raise ValueError(f"rope_cuda.te: freqs must be [s2, 1, 1, d2], got shape {tuple(freqs.shape)}")
    if freqs.dtype != torch.float32:
        raise ValueError(f"rope_cuda.te: freqs must be float32 angles, got {freqs.dtype}")
    d2 = freqs.shape[-1]
    if d2 % 2 or d2 == 0:
        raise ValueError(f"rope_cuda.te: freqs' last dimension (the rotary dim) must be even and positive, got {d2}")
    angles = freqs.detach().reshape(freqs.shape[0], d2)
    angles = angles[:, 0::2] if interleaved else angles[:, : d2 // 2]
    value = (torch.cos(angles), torch.sin(angles))
    _TABLES["key"] = (freqs, freqs._version, interleaved)
    _TABLES["value"] = value
    return value


def _rank_positions(local_len: int, cp_size: int, cp_rank: int, device) -> Tensor:
    """Global positions of a rank's ``local_len`` tokens of one sequence (TE's chunk assignment)."""
    i = torch.arange(local_len, device=device, dtype=torch.int32)
    if cp_size == 1:
        return i
    chunk = local_len // 2
    full = local_len * cp_size
    return torch.where(i < chunk, cp_rank * chunk + i, full - (cp_rank + 1) * chunk + (i - chunk))


def _dense_positions(fmt: str, s: int, b: int, cp_size: int, cp_rank: int, start_positions: Optional[Tensor],
                     device) -> Tensor:
    """Positions of the s * b tokens of an sbhd / bshd tensor in memory order."""
    key = (device, fmt, s, b, cp_size, cp_rank)
    if start_positions is None and key in _POSITIONS:
        return _POSITIONS[key]
    per_token = _rank_positions(s, cp_size, cp_rank, device)  # [s]
    grid = per_token[:, None].expand(s, b) if fmt == "sbhd" else per_token[None, :].expand(b, s)
    if start_positions is not None:
        offsets = start_positions.to(device=device, dtype=torch.int32)
        grid = grid + (offsets[None, :] if fmt == "sbhd" else offsets[:, None])
    positions = grid.reshape(-1).contiguous()
    if start_positions is None:
        if len(_POSITIONS) >= 64:
            _POSITIONS.clear()
        _POSITIONS[key] = positions
    return positions


def apply_rotary_pos_emb(t: Tensor, freqs: Tensor, tensor_format: str = "sbhd",
                         start_positions: Optional[Tensor] = None, interleaved: bool = False, fused: bool = False,
                         cu_seqlens: Optional[Tensor] = None, cp_size: int = 1, cp_rank: int = 0) -> Tensor:
    """Rotates ``t`` by ``freqs`` as Transformer Engine's function does; returns a new tensor shaped like t.

    Args:
        t: ``[s, b, h, d]`` (sbhd), ``[b, s, h, d]`` (bshd) or ``[total_tokens, h, d]`` (thd).
        freqs: fp32 angles ``[s2, 1, 1, d2]``; position p takes row p; ``d2 <= d``.
        tensor_format: ``"sbhd"``, ``"bshd"`` or ``"thd"``.
        start_positions: optional int ``[b]``: sequence i's positions start at ``start_positions[i]``
            (not with ``cp_size > 1``, as in TE).
        interleaved: pairs ``(x[2i], x[2i+1])`` instead of ``(x[i], x[i + d2/2])``.
        fused: accepted for compatibility; there is one implementation.
        cu_seqlens: int32 ``[b + 1]`` on t's device, required for thd: the running totals of the
            sequences' lengths (``cu_seqlens_padded``, the full lengths, when ``cp_size > 1``).
        cp_size, cp_rank: context parallelism: t holds rank cp_rank's load-balanced share of each sequence.
    """
    del fused
    if cp_size > 1 and start_positions is not None:
        raise ValueError("rope_cuda.te: start_positions with cp_size > 1 is not supported (as in Transformer Engine)")
    if tensor_format not in ("sbhd", "bshd", "thd"):
        raise ValueError(f"rope_cuda.te: unsupported tensor_format {tensor_format!r} (sbhd, bshd or thd)")
    if not 0 <= cp_rank < cp_size:
        raise ValueError(f"rope_cuda.te: cp_rank must be in [0, cp_size), got cp_rank {cp_rank}, cp_size {cp_size}")
    cos, sin = _tables(freqs, interleaved)
    if tensor_format == "thd":
        if cu_seqlens is None:
            raise ValueError("rope_cuda.te: cu_seqlens must not be None when tensor_format is 'thd'")
        out, _ = apply_rope(t, cos=cos, sin=sin, interleaved=interleaved, cu_seqlens=cu_seqlens,
                            seqlen_offsets=start_positions, cp_size=cp_size, cp_rank=cp_rank)
        return out
    if t.dim() != 4:
        raise ValueError(f"rope_cuda.te: {tensor_format} needs a 4-D t, got shape {tuple(t.shape)}")
    s, b = (t.shape[0], t.shape[1]) if tensor_format == "sbhd" else (t.shape[1], t.shape[0])
    if start_positions is None and s * cp_size > freqs.shape[0]:
        raise ValueError(f"rope_cuda.te: Rotary Embeddings only supported up to {freqs.shape[0]} sequence length, "
                         f"got {s * cp_size}")
    positions = _dense_positions(tensor_format, s, b, cp_size, cp_rank, start_positions, t.device)
    tokens = t.reshape(s * b, t.shape[2], t.shape[3])
    out, _ = apply_rope(tokens, positions=positions, cos=cos, sin=sin, interleaved=interleaved)
    return out.view(t.shape)
