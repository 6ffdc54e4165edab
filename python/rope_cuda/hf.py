"""Drop-in for Hugging Face transformers' ``apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)``.

Same signature and results as the function in transformers 5's Llama, Qwen2, Mistral, Gemma,
GPT-NeoX and Phi-3 model files (not GLM's, which re-interleaves cos/sin), including:

- q/k ``[B, H, S, D]`` (``unsqueeze_dim=1``, usually transposed views of ``[B, S, H, D]``) or
  ``[B, S, H, D]`` (``unsqueeze_dim=2``); cos/sin ``[B or 1, S, rot]`` in transformers'
  duplicated-halves layout, broadcast over the batch;
- partial rotary (rot < D): the first rot dims are rotated, the rest passed through, as
  GPT-NeoX's and Phi-3's functions do;
- dtype promotion per tensor, as transformers' ``q * cos`` and ``k * cos`` give: q's result has
  the promoted dtype of q and cos/sin, k's that of k and cos/sin (bf16 q with fp32 cos -> fp32
  results computed from the exact fp32 inputs; bf16 q with fp16 k and bf16 cos -> bf16 q, fp32 k).

The kernel runs when q, k, cos and sin are CUDA tensors of that form and of float32/float16/
bfloat16 (after promotion); anything else (CPU tensors, float64, other shapes, cos/sin that
require grad) is computed with transformers' own formula in PyTorch, so the drop-in never
changes what a model computes. Gradients flow to q and k through the library's backward.
"""

import contextlib
from typing import Iterator, Tuple

import torch

Tensor = torch.Tensor
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def reference_apply_rotary_pos_emb(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor,
                                   unsqueeze_dim: int = 1) -> Tuple[Tensor, Tensor]:
    """transformers' formula in PyTorch: the fallback for inputs the kernel does not take."""
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    rot = cos.shape[-1]

    def rotate(x: Tensor) -> Tensor:
        head, tail = x[..., :rot], x[..., rot:]
        y = head * cos + _rotate_half(head) * sin
        return y if tail.shape[-1] == 0 else torch.cat((y, tail), dim=-1)

    return rotate(q), rotate(k)


def _kernel_layout(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor, unsqueeze_dim: int) -> int:
    """The axis of S in q (1 or 2) when the kernel can take these inputs, else 0."""
    if not (q.is_cuda and q.dim() == 4 and k.dim() == 4 and cos.dim() == 3 and sin.shape == cos.shape):
        return 0
    if not (k.device == q.device and cos.device == q.device and sin.device == q.device):
        return 0
    if (cos.requires_grad or sin.requires_grad) and torch.is_grad_enabled():
        return 0  # the kernel does not differentiate cos/sin; transformers' formula does
    axis = unsqueeze_dim + 4 if unsqueeze_dim < 0 else unsqueeze_dim
    if axis not in (1, 2):
        return 0
    seq_axis = 3 - axis  # unsqueeze at 1 -> [B, H, S, D]; at 2 -> [B, S, H, D]
    batch, seq, rot = cos.shape
    if q.shape[seq_axis] != seq or k.shape[seq_axis] != seq or q.shape[0] != k.shape[0]:
        return 0
    if batch not in (1, q.shape[0]) or q.shape[-1] != k.shape[-1] or rot % 2 or rot > q.shape[-1]:
        return 0
    return seq_axis


def _rotate(x: Tensor, y, cos: Tensor, sin: Tensor, seq_axis: int, dtype: torch.dtype):
    """x (and y, in the same launch) rotated by the kernel in `dtype`; [out_x] or [out_x, out_y]."""
    # transformers' x * cos computes in the promoted dtype; converting first is that same rounding.
    table = cos.dtype if cos.dtype in (dtype, torch.float32) else torch.float32
    # The rows repeat their first half (cat((freqs, freqs))): the kernel reads only that half.
    half = cos.shape[-1] // 2
    cos_half = cos.to(table)[..., :half]
    sin_half = sin.to(table)[..., :half]
    x = x.to(dtype)
    y = None if y is None else y.to(dtype)
    if seq_axis == 2:  # [B, H, S, D] -> the [B, S, H, D] view the op takes
        x = x.transpose(1, 2)
        y = None if y is None else y.transpose(1, 2)
    out = torch.ops.rope_cuda.rope.default(x, y, None, cos_half, sin_half, None, None, 1.0, False, False)
    return [o.transpose(1, 2) for o in out] if seq_axis == 2 else out


def apply_rotary_pos_emb(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor,
                         unsqueeze_dim: int = 1) -> Tuple[Tensor, Tensor]:
    """transformers' ``apply_rotary_pos_emb``, fused: returns ``(q_embed, k_embed)``.

    See the module docstring for the accepted layouts; other inputs get transformers' own math.
    Inputs the kernel refuses although transformers accepts them (a head_dim that is not
    contiguous in memory) raise ValueError with the reason rather than being copied.
    """
    seq_axis = _kernel_layout(q, k, cos, sin, unsqueeze_dim)
    table_dtype = torch.promote_types(cos.dtype, sin.dtype)
    q_dtype, k_dtype = torch.promote_types(q.dtype, table_dtype), torch.promote_types(k.dtype, table_dtype)
    if not seq_axis or q_dtype not in _KERNEL_DTYPES or k_dtype not in _KERNEL_DTYPES:
        return reference_apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim)
    if q_dtype == k_dtype:  # the usual case: q and k in one launch
        q_out, k_out = _rotate(q, k, cos, sin, seq_axis, q_dtype)
        return q_out, k_out
    return _rotate(q, None, cos, sin, seq_axis, q_dtype)[0], _rotate(k, None, cos, sin, seq_axis, k_dtype)[0]


@contextlib.contextmanager
def patched(*modules) -> Iterator[None]:
    """Replaces ``apply_rotary_pos_emb`` in the given transformers model modules (e.g.
    ``transformers.models.llama.modeling_llama``) for the duration of a ``with`` block.

    The model files look the function up at call time, so models built before or inside the
    block use the fused kernel while it lasts.
    """
    saved = []
    for module in modules:
        if not hasattr(module, "apply_rotary_pos_emb"):
            raise ValueError(f"rope_cuda: {module.__name__} has no apply_rotary_pos_emb to replace")
        saved.append((module, module.apply_rotary_pos_emb))
    try:
        for module, _ in saved:
            module.apply_rotary_pos_emb = apply_rotary_pos_emb
        yield
    finally:
        for module, original in saved:
            module.apply_rotary_pos_emb = original
