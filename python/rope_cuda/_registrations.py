"""Fake (meta) kernels and autograd for the ops defined in csrc/registration.cpp.

The fake kernels give torch.compile / FakeTensor the output metadata without running anything:
the functional op returns new contiguous tensors shaped like q (and k), exactly what the CUDA
kernel allocates; the in-place op returns nothing. Argument errors surface when the real kernel
runs (its checks need strides and pointers that fake tensors under dynamic shapes do not have).

Autograd: the functional op's gradient is the library's backward (rotation by -theta), i.e. the
same op with ``inverse`` flipped, so higher-order gradients work too. The in-place op has no
autograd formula (torch.library only differentiates functional ops); rope_cuda.apply_rope_
refuses tensors that require grad.
"""

import torch

_NOT_DIFFERENTIABLE = ("positions", "cos", "sin", "cos_sin_cache", "inv_freq")
_NOT_DIFFERENTIABLE_SEQUENCES = ("cu_seqlens", "seqlen_offsets")


@torch.library.register_fake("rope_cuda::rope")
def _rope_fake(q, k, positions=None, cos=None, sin=None, cos_sin_cache=None, inv_freq=None, attention_scaling=1.0,
               interleaved=False, inverse=False, mrope_section=None, mrope_layout="contiguous", enable_pdl=False,
               cu_seqlens=None, seqlen_offsets=None, cp_size=1, cp_rank=0, cp_layout="load_balanced"):
    out = [q.new_empty(q.shape)]
    if k is not None:
        out.append(k.new_empty(k.shape))
    return out


@torch.library.register_fake("rope_cuda::rope_")
def _rope_inplace_fake(q, k, positions=None, cos=None, sin=None, cos_sin_cache=None, inv_freq=None,
                       attention_scaling=1.0, interleaved=False, inverse=False, mrope_section=None,
                       mrope_layout="contiguous", enable_pdl=False, cu_seqlens=None, seqlen_offsets=None, cp_size=1,
                       cp_rank=0, cp_layout="load_balanced"):
    return None


@torch.library.register_fake("rope_cuda::rope_qk_norm_")
def _rope_qk_norm_inplace_fake(q, k, q_weight, k_weight, eps=1e-6, weight_one_plus=False, positions=None, cos=None,
                               sin=None, cos_sin_cache=None, inv_freq=None, attention_scaling=1.0, interleaved=False,
                               enable_pdl=False, cu_seqlens=None, seqlen_offsets=None):
    return None


@torch.library.register_fake("rope_cuda::rope_append_")
def _rope_append_inplace_fake(q, k, v, k_cache, v_cache, slot_mapping, kv_cache_dtype="auto", k_scale=1.0,
                              v_scale=1.0, cache_layout="NHD", k_write_back=True, positions=None, cos=None, sin=None,
                              cos_sin_cache=None, inv_freq=None, attention_scaling=1.0, interleaved=False,
                              enable_pdl=False, cu_seqlens=None, seqlen_offsets=None):
    return None


# The schema's defaults, in case `inputs` lacks trailing arguments (the dispatcher drops those
# equal to their defaults; torch.library fills them back in before setup_context today).
_DEFAULTS = (None, None, None, None, None, None, None, 1.0, False, False, None, "contiguous", False, None, None, 1, 0,
             "load_balanced")


def _setup_context(ctx, inputs, output):
    full = tuple(inputs) + _DEFAULTS[len(inputs):]
    (q, k, positions, cos, sin, cos_sin_cache, inv_freq, attention_scaling, interleaved, inverse, mrope_section,
     mrope_layout, enable_pdl, cu_seqlens, seqlen_offsets, cp_size, cp_rank, cp_layout) = full
    ctx.save_for_backward(positions, cos, sin, cos_sin_cache, inv_freq, cu_seqlens, seqlen_offsets)
    ctx.has_k = k is not None
    ctx.options = (attention_scaling, interleaved, inverse, mrope_section, mrope_layout, enable_pdl)
    ctx.context_parallel = (cp_size, cp_rank, cp_layout)


def _grad_view(g):
    # Autograd may hand over gradients the kernel cannot read in place (e.g. the stride-0
    # expansion that x.sum() produces); only those are made dense. Typical gradients pass as is.
    if g.stride(-1) != 1 or 0 in g.stride():
        return g.contiguous()
    return g


def _backward(ctx, grads):
    needs = tuple(ctx.needs_input_grad)
    for name, needed in zip(_NOT_DIFFERENTIABLE + _NOT_DIFFERENTIABLE_SEQUENCES, needs[2:7] + needs[13:15]):
        if needed:
            raise RuntimeError(f"rope_cuda: gradients flow to q and k only, but {name} requires grad; "
                               f"pass {name}.detach() (rope frequencies and tables are not trained)")
    positions, cos, sin, cos_sin_cache, inv_freq, cu_seqlens, seqlen_offsets = ctx.saved_tensors
    attention_scaling, interleaved, inverse, mrope_section, mrope_layout, enable_pdl = ctx.options
    g_q = grads[0]
    g_k = grads[1] if ctx.has_k else None
    present = [g for g in (g_q, g_k) if g is not None]
    # One gradient per argument the dispatcher passed: it leaves out trailing arguments equal to
    # their defaults, and needs_input_grad has exactly one entry per argument passed.
    rest = (None,) * (len(ctx.needs_input_grad) - 2)
    if not present:
        return (None, None) + rest
    # q and k share the rotation, so whichever gradients exist go through one launch.
    rotated = torch.ops.rope_cuda.rope.default(
        _grad_view(present[0]), _grad_view(present[1]) if len(present) == 2 else None, positions, cos, sin,
        cos_sin_cache, inv_freq, attention_scaling, interleaved, not inverse, mrope_section, mrope_layout, enable_pdl,
        cu_seqlens, seqlen_offsets, *ctx.context_parallel)
    if g_q is None:
        d_q, d_k = None, rotated[0]
    else:
        d_q, d_k = rotated[0], (rotated[1] if g_k is not None else None)
    return (d_q, d_k) + rest


torch.library.register_autograd("rope_cuda::rope", _backward, setup_context=_setup_context)
