"""rope_cuda: the rope CUDA library's fused rotary position embedding as PyTorch ops.

Ops (torch.library, namespace ``rope_cuda``): ``torch.ops.rope_cuda.rope_`` (in place) and
``torch.ops.rope_cuda.rope`` (functional, differentiable), both with fake kernels for
torch.compile. Python entry points:

- :func:`apply_rope` / :func:`apply_rope_`: the ops with keyword arguments;
- :func:`rope_cuda.hf.apply_rotary_pos_emb`: drop-in for transformers' function;
- :func:`rope_cuda.vllm.rotary_embedding`: drop-in for vLLM's op;
- :mod:`rope_cuda.flashinfer`: drop-ins for FlashInfer's ``flashinfer.rope`` functions;
- :mod:`rope_cuda.sglang`: drop-in for sgl-kernel's ``apply_rope_with_cos_sin_cache_inplace``;
- :func:`rope_cuda.te.apply_rotary_pos_emb`: drop-in for Transformer Engine's (THD, context parallelism);
- :func:`rope_cuda.flash_attn.apply_rotary_emb`: drop-in for FlashAttention's (packed, offsets);
- :func:`check_cu_seqlens`: a host check of packed sequences' cu_seqlens;
- :class:`RotaryEmbedding`: a module built from a transformers config;
- :func:`inv_freq_from_config`: inverse frequencies exactly as transformers computes them.
"""

import torch  # noqa: F401  (first: loads libtorch / libc10, which _C links against)

from . import _C  # noqa: F401  (loads the op library: registers torch.ops.rope_cuda.*)
from . import _registrations  # noqa: F401  (fake kernels and autograd)
from ._api import apply_qk_norm_rope_, apply_rope, apply_rope_, apply_rope_and_cache_, check_cu_seqlens
from .frequencies import inv_freq_from_config
from .module import RotaryEmbedding

__version__ = "0.1.0"
__all__ = ["apply_qk_norm_rope_", "apply_rope", "apply_rope_", "apply_rope_and_cache_", "check_cu_seqlens", "inv_freq_from_config", "RotaryEmbedding", "__version__"]
