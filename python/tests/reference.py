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


def axis_of_frequency(sections, layout):
    """Which position axis each of the sum(sections) frequencies takes (multi-axis positions).

    "contiguous" (Qwen2-VL's mrope_section, 2D vision): consecutive ranges, axis 0 first.
    "interleaved" (Qwen3-VL): frequency j takes axis 1 when j % 3 == 1 and j < 3 * s1, axis 2 when
    j % 3 == 2 and j < 3 * s2, axis 0 otherwise.
    """
    if layout == "contiguous":
        return [a for a, s in enumerate(sections) for _ in range(s)]
    s1, s2 = sections[1], (sections[2] if len(sections) > 2 else 0)
    return [1 if j % 3 == 1 and j < 3 * s1 else 2 if j % 3 == 2 and j < 3 * s2 else 0 for j in range(sum(sections))]


def multi_axis_cos_sin(positions, inv_freq, sections, layout, scaling=1.0):
    """Exact-angle cos/sin [..., rot/2] in float64 for positions [axes, ...]: frequency j's angle is
    (position on its axis) * inv_freq[j]."""
    axis = torch.tensor(axis_of_frequency(sections, layout), device=positions.device)
    chosen = positions.double().movedim(0, -1)[..., axis]  # [..., rot/2]: each frequency's position
    angle = chosen * inv_freq.double().to(positions.device)
    return torch.cos(angle) * scaling, torch.sin(angle) * scaling


def multi_axis_table_rows(positions, cos, sin, sections, layout, scaling=1.0):
    """cos/sin [..., rot/2] in float64 read from tables [rows, >= rot/2]: frequency j from the row
    of its axis' position (one axis: ``positions[None]``, ``sections=[rot/2]``)."""
    axis = torch.tensor(axis_of_frequency(sections, layout), device=positions.device)
    chosen = positions.long().movedim(0, -1)[..., axis]
    j = torch.arange(axis.numel(), device=positions.device).expand_as(chosen)
    return cos.double()[chosen, j] * scaling, sin.double()[chosen, j] * scaling


def exact_cos_sin(args, positions, sections, layout):
    """The float64 cos/sin [..., rot/2] an apply_rope call with these source arguments (cos/sin
    tables or inv_freq and attention_scaling) must use, for positions [axes, ...]."""
    scaling = args.get("attention_scaling", 1.0)
    if "inv_freq" in args:
        return multi_axis_cos_sin(positions, args["inv_freq"], sections, layout, scaling)
    return multi_axis_table_rows(positions, args["cos"], args["sin"], sections, layout, scaling)
