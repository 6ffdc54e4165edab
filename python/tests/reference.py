"""A float64 RoPE written from the formulas, independent of the library and of transformers.

For pair (x1, x2) at angle theta = position * inv_freq[i]:
    y1 = x1 cos(theta) - x2 sin(theta),  y2 = x1 sin(theta) + x2 cos(theta)
half-split pairs are (x[i], x[i + rot/2]); interleaved pairs are (x[2i], x[2i+1]).
"""

import torch


def rotate(x, cos, sin, interleaved=False, inverse=False):
    """x: [..., D]; cos, sin: broadcastable to [..., rot/2] (float64). Returns float64."""
    x = x.double()
    half = cos.shape[-1]
    rot = 2 * half
    if inverse:
        sin = -sin
    if interleaved:
        x1, x2 = x[..., 0:rot:2], x[..., 1:rot:2]
    else:
        x1, x2 = x[..., :half], x[..., half:rot]
    y1 = x1 * cos - x2 * sin
    y2 = x1 * sin + x2 * cos
    y = x.clone()
    if interleaved:
        y[..., 0:rot:2], y[..., 1:rot:2] = y1, y2
    else:
        y[..., :half], y[..., half:rot] = y1, y2
    return y


def cos_sin_from_inv_freq(positions, inv_freq, scaling=1.0):
    """Exact-angle cos/sin [..., rot/2] in float64 for integer positions."""
    angle = positions.double()[..., None] * inv_freq.double()
    return torch.cos(angle) * scaling, torch.sin(angle) * scaling


def tolerance(dtype):
    """(rtol of the relative L2 error, max abs error) per output dtype, the library's bounds."""
    return {torch.float32: (1e-6, 1e-5), torch.float16: (1e-3, 2e-3), torch.bfloat16: (8e-3, 1.6e-2)}[dtype]


def assert_close_rel(actual, expected, dtype=None):
    dtype = dtype or actual.dtype
    rel_bound, abs_bound = tolerance(dtype)
    a, e = actual.double(), expected.double()
    assert not torch.isnan(a).any(), "NaN in the output"
    rel = (a - e).norm() / e.norm().clamp_min(1e-30)
    err = (a - e).abs().max().item() if a.numel() else 0.0
    assert rel <= rel_bound and err <= abs_bound * max(1.0, e.abs().max().item()), \
        f"relative L2 {rel:.3g} (bound {rel_bound}), max abs {err:.3g} (bound {abs_bound})"
