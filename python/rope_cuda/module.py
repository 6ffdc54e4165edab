"""``RotaryEmbedding``: a module that applies a model's RoPE to q and k with the fused kernel."""

from typing import Any, Optional, Sequence, Tuple

import torch

from ._api import apply_rope, apply_rope_
from .frequencies import inv_freq_from_config

Tensor = torch.Tensor


class RotaryEmbedding(torch.nn.Module):
    """Rotates q and k by a model's RoPE: ``q, k = rope(positions, q, k)``.

    Frequencies come from a transformers config (:meth:`from_config`, computed exactly as
    transformers computes them) or from the model itself (:meth:`from_inv_freq`, e.g. a
    ``LlamaRotaryEmbedding``'s ``inv_freq`` buffer and ``attention_scaling``).

    By default cos/sin are computed in the kernel from an exact angle ``position * inv_freq``
    (no table traffic). transformers instead rounds that product to float32 before ``cos``, which
    at long positions differs by up to ~1e-3 rad (position 131072); with ``max_positions`` the
    module instead builds a float32 table ``[max_positions, rot / 2]`` from transformers' own
    float32 angles (cos/sin of them may still differ in the last bit between CPU and CUDA math).

    Multi-axis positions (M-RoPE, 2D vision RoPE): give ``mrope_section`` (and ``mrope_layout``, see
    :func:`rope_cuda.apply_rope`); positions are then ``[axes, tokens]`` or ``[axes, batch, seq]``.
    """

    def __init__(self, inv_freq: Tensor, attention_scaling: float = 1.0, *, interleaved: bool = False,
                 max_positions: Optional[int] = None, mrope_section: Optional[Sequence[int]] = None,
                 mrope_layout: str = "contiguous"):
        super().__init__()
        inv_freq = inv_freq.detach().to(torch.float32).contiguous()
        if inv_freq.dim() != 1 or inv_freq.numel() == 0:
            raise ValueError(f"rope_cuda: inv_freq must be 1-D and non-empty, got shape {tuple(inv_freq.shape)}")
        self.attention_scaling = float(attention_scaling)
        self.interleaved = interleaved
        self.mrope_section = None if mrope_section is None else [int(s) for s in mrope_section]
        if self.mrope_section is not None and sum(self.mrope_section) != inv_freq.numel():
            raise ValueError(f"rope_cuda: mrope_section {self.mrope_section} must sum to the number of "
                             f"frequencies ({inv_freq.numel()})")
        self.mrope_layout = mrope_layout
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        cos = sin = None
        if max_positions is not None:
            if max_positions < 1:
                raise ValueError(f"rope_cuda: max_positions must be positive, got {max_positions}")
            # transformers' arithmetic: float32 angle = float(position) * inv_freq, then cos/sin,
            # then the attention factor (so the kernel is given attention_scaling 1).
            angles = torch.arange(max_positions, dtype=torch.float32, device=inv_freq.device)[:, None] * inv_freq[None, :]
            cos, sin = angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    @classmethod
    def from_config(cls, config: Any, *, seq_len: Optional[int] = None, interleaved: bool = False,
                    max_positions: Optional[int] = None, device: Optional[torch.device] = None,
                    mrope_section: Optional[Sequence[int]] = None,
                    mrope_layout: str = "contiguous") -> "RotaryEmbedding":
        """Built from a transformers config's ``rope_parameters`` / ``rope_scaling`` (see
        :func:`rope_cuda.inv_freq_from_config`; ``seq_len`` as there, for dynamic and longrope).
        ``mrope_section`` is not read from the config (transformers' classes fall back to their own
        defaults when it is missing): pass the model's, e.g. ``config.rope_parameters["mrope_section"]``."""
        inv_freq, scaling = inv_freq_from_config(config, seq_len=seq_len)
        module = cls(inv_freq, scaling, interleaved=interleaved, max_positions=max_positions,
                     mrope_section=mrope_section, mrope_layout=mrope_layout)
        return module.to(device) if device is not None else module

    @classmethod
    def from_inv_freq(cls, inv_freq: Tensor, attention_scaling: float = 1.0, **kwargs) -> "RotaryEmbedding":
        """Built from a model's own frequencies (e.g. ``model.model.rotary_emb.inv_freq``)."""
        return cls(inv_freq, attention_scaling, **kwargs)

    @property
    def rotary_dim(self) -> int:
        return 2 * self.inv_freq.numel()

    def forward(self, positions: Optional[Tensor], q: Tensor, k: Optional[Tensor] = None, *,
                inplace: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """Rotates the first ``rotary_dim`` elements of every head of q (and k).

        q, k: ``[tokens, heads, head_dim]`` or ``[batch, seq, heads, head_dim]`` (see
        :func:`rope_cuda.apply_rope`); positions: int32/int64 of their leading shape, or None for
        0, 1, 2, ... (with ``mrope_section``: ``[axes, *leading shape]``). Returns new tensors, or q
        and k themselves with ``inplace=True``.
        """
        run = apply_rope_ if inplace else apply_rope
        options = dict(interleaved=self.interleaved, mrope_section=self.mrope_section, mrope_layout=self.mrope_layout)
        if self.cos is not None:
            return run(q, k, positions=positions, cos=self.cos, sin=self.sin, **options)
        return run(q, k, positions=positions, inv_freq=self.inv_freq, attention_scaling=self.attention_scaling,
                   **options)

    def extra_repr(self) -> str:
        table = f", table rows={self.cos.shape[0]}" if self.cos is not None else ", computed cos/sin"
        sections = "" if self.mrope_section is None else \
            f", mrope_section={self.mrope_section}, mrope_layout={self.mrope_layout!r}"
        return (f"rotary_dim={self.rotary_dim}, attention_scaling={self.attention_scaling}, "
                f"interleaved={self.interleaved}{table}{sections}")
