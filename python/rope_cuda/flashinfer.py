"""Drop-ins for FlashInfer's RoPE functions (``flashinfer.rope``, also exported as ``flashinfer.*``).

The signatures are those of FlashInfer's current ``flashinfer/rope/rope.py``; every call is one
launch of rope_cuda's kernel through :func:`rope_cuda.apply_rope` / :func:`rope_cuda.apply_rope_`.

- ``apply_rope_with_cos_sin_cache[_inplace](positions, query, key, head_size, cos_sin_cache,
  is_neox=True, backend="cuda")``: the vLLM / SGLang contract. query / key are
  ``[nnz, heads * head_size]`` (or ``[nnz, heads, head_size]``), typically slices of the fused QKV
  projection; cos_sin_cache is float32 ``[max_seq_len, rotary_dim]`` rows of ``[cos | sin]``
  (FlashInfer raises ValueError for any other dtype, and so does this module); the first
  rotary_dim elements of each head rotate. ``is_neox``: half-split pairs if True, interleaved if False.
- ``apply_rope_pos_ids[_inplace](q, k, pos_ids, rotary_dim=None, interleave=False, rope_scale=1,
  rope_theta=1e4, backend="cuda")``: q / k ``[nnz, heads, head_dim]``, pos_ids ``[nnz]``; cos/sin are
  computed in the kernel. Frequency i is FlashInfer's ``rope_theta ** (-2i / rotary_dim) / rope_scale``
  (the kernel multiplies each frequency by ``1 / rope_scale``, i.e. positions are divided by rope_scale).
- ``apply_llama31_rope_pos_ids[_inplace](..., rope_scale=8, rope_theta=5e5, low_freq_factor=1,
  high_freq_factor=4, old_context_len=8192, backend="cuda")``: Llama 3.1's frequencies. FlashInfer
  blends ``f / rope_scale`` and ``f`` with the weight ``clamp(f * old_context_len / (2 pi (high - low))
  - low / (high - low), 0, 1)``, which is transformers' "llama3" rule with factor = rope_scale and
  original_max_position_embeddings = old_context_len.
- ``apply_rope[_inplace](q, k, indptr, offsets, ...)`` and ``apply_llama31_rope[_inplace](q, k,
  indptr, offsets, ...)``: ragged batches: token j of segment b (rows ``indptr[b] .. indptr[b+1]``)
  is at position ``offsets[b] + j``. indptr (int32 ``[batch + 1]``) is not read on the host, as in
  FlashInfer (:func:`rope_cuda.check_cu_seqlens` checks it where a batch is built).

The ``_inplace`` functions overwrite q and k and return None; the others return new tensors
``(q_rope, k_rope)`` shaped like q and k, the part of each head past rotary_dim copied.

Differences by construction (results agree within float rounding):

- The frequencies are float32 values computed once on the host per (rotary_dim, parameters,
  device) with transformers' float32 operations (:func:`rope_cuda.inv_freq_from_config`, types
  "linear" and "llama3") and kept; the kernel then takes an exact angle ``position * inv_freq``
  with accurate sin/cos. FlashInfer computes them per thread with ``__powf`` and ``__sincosf``
  (fast approximations), so the two differ by a few ulp of the frequencies and more at large
  angles. Call a pos_ids / indptr function once before capturing it in a CUDA graph (the first
  call on a device copies its frequencies from the host).
- ``backend`` is checked ("cuda" or "cute-dsl") and otherwise ignored: there is one kernel.
- q / k may also be float32 (FlashInfer takes float16 / bfloat16 only); the functional variants
  are differentiable in q and k.
- A token whose position is outside cos_sin_cache passes through unrotated (FlashInfer reads past
  the table).

Inputs are only viewed, never copied: a query or key that cannot be viewed as
``[nnz, heads, head_size]``, positions that do not hold one entry per token, and the other
argument errors FlashInfer's checks catch raise ValueError before anything is written.
"""

import math
import operator
from typing import Literal, Optional, Tuple

import torch

from ._api import apply_rope as _rotate
from ._api import apply_rope_ as _rotate_
from .frequencies import inv_freq_from_config

Tensor = torch.Tensor

_WHERE = "rope_cuda.flashinfer"
_BACKENDS = ("cuda", "cute-dsl")
_FREQUENCIES: dict = {}  # (rule, parameters..., device) -> float32 inv_freq on that device


# ----------------------------------------------------------------------------------------------
# argument checks and views (shared with rope_cuda.sglang)
# ----------------------------------------------------------------------------------------------

def _heads(x: Tensor, nnz: int, head_size: int, name: str, where: str) -> Tensor:
    """x ``[nnz, heads * head_size]`` or ``[nnz, heads, head_size]`` as a ``[nnz, heads, head_size]``
    view (FlashInfer's ``x.view(x.shape[0], -1, head_size)``); never a copy."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{where}: {name} must be a tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] != nnz:
        raise ValueError(f"{where}: {name} of shape {tuple(x.shape)} must be [{nnz}, heads * {head_size}] or "
                         f"[{nnz}, heads, {head_size}] (one row per token)")
    width = math.prod(x.shape[1:])
    if width % head_size or width == 0:
        raise ValueError(f"{where}: {name} of shape {tuple(x.shape)} does not hold whole heads of head_size "
                         f"{head_size}")
    if x.dim() == 3 and x.shape[-1] == head_size:
        return x
    try:
        return x.view(nnz, width // head_size, head_size)
    except RuntimeError as error:  # a view, never a copy: say why it is impossible
        raise ValueError(f"{where}: {name} of shape {tuple(x.shape)} and strides {x.stride()} cannot be viewed "
                         f"as [{nnz}, heads, {head_size}] without a copy: {error}") from None


def _token_positions(positions: Tensor, nnz: int, name: str, where: str) -> Tensor:
    """positions with one entry per token as a 1-D view (FlashInfer reads them as a flat array)."""
    if not isinstance(positions, Tensor):
        raise ValueError(f"{where}: {name} must be a tensor, got {type(positions).__name__}")
    if positions.numel() != nnz:
        raise ValueError(f"{where}: {name} of shape {tuple(positions.shape)} must hold one position per token "
                         f"({nnz})")
    if positions.dim() == 1:
        return positions
    try:
        return positions.view(-1)
    except RuntimeError as error:
        raise ValueError(f"{where}: {name} of shape {tuple(positions.shape)} and strides {positions.stride()} "
                         f"cannot be flattened without a copy: {error}") from None


def _cache_arguments(positions: Tensor, query: Tensor, key: Tensor, head_size: int, cos_sin_cache: Tensor,
                     where: str) -> Tuple[Tensor, Tensor, Tensor]:
    """The checks of FlashInfer's / SGLang's cos_sin_cache entry points; returns (positions, q, k)
    as views: positions ``[nnz]``, q and k ``[nnz, heads, head_size]``."""
    if not isinstance(cos_sin_cache, Tensor) or cos_sin_cache.dtype != torch.float32:
        got = cos_sin_cache.dtype if isinstance(cos_sin_cache, Tensor) else type(cos_sin_cache).__name__
        raise ValueError(f"{where}: cos_sin_cache should be float32, got {got}")
    if key is None:
        raise ValueError(f"{where}: key is required (FlashInfer's and SGLang's functions rotate query and key)")
    try:
        head_size = operator.index(head_size)
    except TypeError:
        raise ValueError(f"{where}: head_size must be an int, got {head_size!r}") from None
    if head_size < 1:
        raise ValueError(f"{where}: head_size must be positive, got {head_size}")
    if not isinstance(query, Tensor) or query.dim() < 2:
        raise ValueError(f"{where}: query must be [nnz, num_q_heads * head_size], got "
                         f"{tuple(query.shape) if isinstance(query, Tensor) else type(query).__name__}")
    nnz = query.shape[0]
    if isinstance(key, Tensor) and key.dim() >= 1 and key.shape[0] != nnz:
        raise ValueError(f"{where}: query ({tuple(query.shape)}) and key ({tuple(key.shape)}) must have the same "
                         f"number of tokens")
    q = _heads(query, nnz, head_size, "query", where)
    k = _heads(key, nnz, head_size, "key", where)
    return _token_positions(positions, nnz, "positions", where), q, k


def _qk(q: Tensor, k: Tensor, where: str) -> None:
    """FlashInfer's checks of q / k for the pos_ids and indptr functions: 3-D, same tokens and head_dim."""
    for name, x in (("q", q), ("k", k)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{where}: {name} must be a tensor, got {type(x).__name__} (FlashInfer rotates q and k)")
        if x.dim() != 3:
            raise ValueError(f"{where}: {name} must be (nnz, num_heads, head_dim), got shape {tuple(x.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"{where}: q {tuple(q.shape)} and k {tuple(k.shape)} must have the same nnz and head_dim")


def _rotary_dim(q: Tensor, rotary_dim: Optional[int], where: str) -> int:
    if rotary_dim is None:
        return q.shape[-1]  # FlashInfer: the whole head
    try:
        rotary_dim = operator.index(rotary_dim)
    except TypeError:
        raise ValueError(f"{where}: rotary_dim must be an int or None, got {rotary_dim!r}") from None
    if rotary_dim < 2 or rotary_dim % 2 or rotary_dim > q.shape[-1]:
        raise ValueError(f"{where}: rotary_dim must be even, >= 2 and <= head_dim ({q.shape[-1]}), got {rotary_dim}")
    return rotary_dim


def _check_backend(backend: str) -> None:
    if backend not in _BACKENDS:
        raise ValueError(f"{_WHERE}: backend must be \"cuda\" or \"cute-dsl\", got {backend!r} "
                         f"(both run rope_cuda's kernel here)")


# ----------------------------------------------------------------------------------------------
# frequencies
# ----------------------------------------------------------------------------------------------

def _cached(key: tuple, device, build) -> Tensor:
    key = key + (torch.device(device) if device is not None else None,)
    inv_freq = _FREQUENCIES.get(key)
    if inv_freq is None:
        if len(_FREQUENCIES) >= 64:
            _FREQUENCIES.clear()
        inv_freq = build().to(device=device, dtype=torch.float32).contiguous()
        _FREQUENCIES[key] = inv_freq
    return inv_freq


def _positive(where: str, **values) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{where}: {name} must be finite and positive, got {value}")


def _inv_freq(rotary_dim: int, rope_scale: float = 1, rope_theta: float = 1e4, device=None) -> Tensor:
    """FlashInfer's frequencies: ``rope_theta ** (-2i / rotary_dim) / rope_scale``, float32 ``[rotary_dim / 2]``."""
    rope_scale, rope_theta = float(rope_scale), float(rope_theta)
    _positive(_WHERE, rope_scale=rope_scale, rope_theta=rope_theta)
    config = {"head_dim": rotary_dim,
              "rope_parameters": {"rope_type": "linear", "factor": rope_scale, "rope_theta": rope_theta}}
    return _cached(("rope", rotary_dim, rope_scale, rope_theta), device, lambda: inv_freq_from_config(config)[0])


def _llama31_inv_freq(rotary_dim: int, rope_scale: float = 8, rope_theta: float = 5e5, low_freq_factor: float = 1,
                      high_freq_factor: float = 4, old_context_len: int = 8192, device=None) -> Tensor:
    """FlashInfer's Llama 3.1 frequencies (transformers' "llama3" rule), float32 ``[rotary_dim / 2]``."""
    values = dict(rope_scale=float(rope_scale), rope_theta=float(rope_theta), low_freq_factor=float(low_freq_factor),
                  high_freq_factor=float(high_freq_factor), old_context_len=float(old_context_len))
    _positive(_WHERE, **values)
    if values["high_freq_factor"] <= values["low_freq_factor"]:
        raise ValueError(f"{_WHERE}: high_freq_factor ({high_freq_factor}) must be larger than low_freq_factor "
                         f"({low_freq_factor})")
    config = {"head_dim": rotary_dim,
              "rope_parameters": {"rope_type": "llama3", "factor": values["rope_scale"],
                                  "rope_theta": values["rope_theta"], "low_freq_factor": values["low_freq_factor"],
                                  "high_freq_factor": values["high_freq_factor"],
                                  "original_max_position_embeddings": values["old_context_len"]}}
    return _cached(("llama31", rotary_dim) + tuple(values.values()), device, lambda: inv_freq_from_config(config)[0])


# ----------------------------------------------------------------------------------------------
# cos_sin_cache (vLLM / SGLang contract)
# ----------------------------------------------------------------------------------------------

def apply_rope_with_cos_sin_cache(positions: Tensor, query: Tensor, key: Tensor, head_size: int,
                                  cos_sin_cache: Tensor, is_neox: bool = True,
                                  backend: Literal["cuda", "cute-dsl"] = "cuda") -> Tuple[Tensor, Tensor]:
    """Returns ``(query_out, key_out)``, query and key rotated, shaped like them (FlashInfer's contract).

    positions: int32/int64 ``(nnz)``; query ``(nnz, num_q_heads * head_size)``, key
    ``(nnz, num_k_heads * head_size)``; cos_sin_cache float32 ``(max_seq_len, rotary_dim)``, cos in the
    first half of each row and sin in the second; is_neox: half-split pairs (True) or interleaved.
    """
    flat, q, k = _cache_arguments(positions, query, key, head_size, cos_sin_cache, _WHERE)
    _check_backend(backend)
    q_out, k_out = _rotate(q, k, positions=flat, cos_sin_cache=cos_sin_cache, interleaved=not is_neox)
    return q_out.view(query.shape), k_out.view(key.shape)


def apply_rope_with_cos_sin_cache_inplace(positions: Tensor, query: Tensor, key: Tensor, head_size: int,
                                          cos_sin_cache: Tensor, is_neox: bool = True,
                                          backend: Literal["cuda", "cute-dsl"] = "cuda") -> None:
    """Rotates query and key in place (FlashInfer's contract); the arguments are those of
    :func:`apply_rope_with_cos_sin_cache`."""
    flat, q, k = _cache_arguments(positions, query, key, head_size, cos_sin_cache, _WHERE)
    _check_backend(backend)
    _rotate_(q, k, positions=flat, cos_sin_cache=cos_sin_cache, interleaved=not is_neox)


# ----------------------------------------------------------------------------------------------
# position ids, frequencies computed in the kernel
# ----------------------------------------------------------------------------------------------

def _pos_ids(q: Tensor, k: Tensor, pos_ids: Tensor, rotary_dim: Optional[int]) -> Tuple[Tensor, int]:
    _qk(q, k, _WHERE)
    return _token_positions(pos_ids, q.shape[0], "pos_ids", _WHERE), _rotary_dim(q, rotary_dim, _WHERE)


def apply_rope_pos_ids_inplace(q: Tensor, k: Tensor, pos_ids: Tensor, rotary_dim: Optional[int] = None,
                               interleave: bool = False, rope_scale: float = 1, rope_theta: float = 1e4,
                               backend: Literal["cuda", "cute-dsl"] = "cuda") -> None:
    """Rotates q ``(nnz, num_q_heads, head_dim)`` and k ``(nnz, num_k_heads, head_dim)`` in place at
    positions ``pos_ids`` ``(nnz)``: the first rotary_dim (default head_dim) elements of each head, with
    frequencies ``rope_theta ** (-2i / rotary_dim) / rope_scale``; interleave: pairs (2i, 2i+1)."""
    flat, rot = _pos_ids(q, k, pos_ids, rotary_dim)
    _check_backend(backend)
    _rotate_(q, k, positions=flat, inv_freq=_inv_freq(rot, rope_scale, rope_theta, q.device),
             interleaved=bool(interleave))


def apply_rope_pos_ids(q: Tensor, k: Tensor, pos_ids: Tensor, rotary_dim: Optional[int] = None,
                       interleave: bool = False, rope_scale: float = 1, rope_theta: float = 1e4,
                       backend: Literal["cuda", "cute-dsl"] = "cuda") -> Tuple[Tensor, Tensor]:
    """:func:`apply_rope_pos_ids_inplace` out of place: returns ``(q_rope, k_rope)``."""
    flat, rot = _pos_ids(q, k, pos_ids, rotary_dim)
    _check_backend(backend)
    return _rotate(q, k, positions=flat, inv_freq=_inv_freq(rot, rope_scale, rope_theta, q.device),
                   interleaved=bool(interleave))


def apply_llama31_rope_pos_ids_inplace(q: Tensor, k: Tensor, pos_ids: Tensor, rotary_dim: Optional[int] = None,
                                       interleave: bool = False, rope_scale: float = 8, rope_theta: float = 5e5,
                                       low_freq_factor: float = 1, high_freq_factor: float = 4,
                                       old_context_len: int = 8192,
                                       backend: Literal["cuda", "cute-dsl"] = "cuda") -> None:
    """:func:`apply_rope_pos_ids_inplace` with Llama 3.1's frequencies (long wavelengths divided by
    rope_scale, short ones kept, the band between ``old_context_len / high_freq_factor`` and
    ``old_context_len / low_freq_factor`` blended)."""
    flat, rot = _pos_ids(q, k, pos_ids, rotary_dim)
    _check_backend(backend)
    inv_freq = _llama31_inv_freq(rot, rope_scale, rope_theta, low_freq_factor, high_freq_factor, old_context_len,
                                 q.device)
    _rotate_(q, k, positions=flat, inv_freq=inv_freq, interleaved=bool(interleave))


def apply_llama31_rope_pos_ids(q: Tensor, k: Tensor, pos_ids: Tensor, rotary_dim: Optional[int] = None,
                               interleave: bool = False, rope_scale: float = 8, rope_theta: float = 5e5,
                               low_freq_factor: float = 1, high_freq_factor: float = 4, old_context_len: int = 8192,
                               backend: Literal["cuda", "cute-dsl"] = "cuda") -> Tuple[Tensor, Tensor]:
    """:func:`apply_llama31_rope_pos_ids_inplace` out of place: returns ``(q_rope, k_rope)``."""
    flat, rot = _pos_ids(q, k, pos_ids, rotary_dim)
    _check_backend(backend)
    inv_freq = _llama31_inv_freq(rot, rope_scale, rope_theta, low_freq_factor, high_freq_factor, old_context_len,
                                 q.device)
    return _rotate(q, k, positions=flat, inv_freq=inv_freq, interleaved=bool(interleave))


# ----------------------------------------------------------------------------------------------
# ragged batches: indptr + offsets
# ----------------------------------------------------------------------------------------------

def _ragged(q: Tensor, k: Tensor, rotary_dim: Optional[int]) -> int:
    _qk(q, k, _WHERE)
    return _rotary_dim(q, rotary_dim, _WHERE)


def apply_rope_inplace(q: Tensor, k: Tensor, indptr: Tensor, offsets: Tensor, rotary_dim: Optional[int] = None,
                       interleave: bool = False, rope_scale: float = 1, rope_theta: float = 1e4,
                       backend: Literal["cuda", "cute-dsl"] = "cuda") -> None:
    """Rotates a ragged batch in place: q ``(nnz, num_q_heads, head_dim)``, k ``(nnz, num_k_heads,
    head_dim)``, segment b in rows ``indptr[b] .. indptr[b+1]`` (int32 ``(batch_size + 1)``), its token j
    at position ``offsets[b] + j`` (``(batch_size)``). Frequencies as :func:`apply_rope_pos_ids_inplace`."""
    rot = _ragged(q, k, rotary_dim)
    _check_backend(backend)
    _rotate_(q, k, cu_seqlens=indptr, seqlen_offsets=offsets,
             inv_freq=_inv_freq(rot, rope_scale, rope_theta, q.device), interleaved=bool(interleave))


def apply_rope(q: Tensor, k: Tensor, indptr: Tensor, offsets: Tensor, rotary_dim: Optional[int] = None,
               interleave: bool = False, rope_scale: float = 1, rope_theta: float = 1e4,
               backend: Literal["cuda", "cute-dsl"] = "cuda") -> Tuple[Tensor, Tensor]:
    """:func:`apply_rope_inplace` out of place: returns ``(q_rope, k_rope)``."""
    rot = _ragged(q, k, rotary_dim)
    _check_backend(backend)
    return _rotate(q, k, cu_seqlens=indptr, seqlen_offsets=offsets,
                   inv_freq=_inv_freq(rot, rope_scale, rope_theta, q.device), interleaved=bool(interleave))


def apply_llama31_rope_inplace(q: Tensor, k: Tensor, indptr: Tensor, offsets: Tensor,
                               rotary_dim: Optional[int] = None, interleave: bool = False, rope_scale: float = 8,
                               rope_theta: float = 5e5, low_freq_factor: float = 1, high_freq_factor: float = 4,
                               old_context_len: int = 8192, backend: Literal["cuda", "cute-dsl"] = "cuda") -> None:
    """:func:`apply_rope_inplace` with Llama 3.1's frequencies."""
    rot = _ragged(q, k, rotary_dim)
    _check_backend(backend)
    inv_freq = _llama31_inv_freq(rot, rope_scale, rope_theta, low_freq_factor, high_freq_factor, old_context_len,
                                 q.device)
    _rotate_(q, k, cu_seqlens=indptr, seqlen_offsets=offsets, inv_freq=inv_freq, interleaved=bool(interleave))


def apply_llama31_rope(q: Tensor, k: Tensor, indptr: Tensor, offsets: Tensor, rotary_dim: Optional[int] = None,
                       interleave: bool = False, rope_scale: float = 8, rope_theta: float = 5e5,
                       low_freq_factor: float = 1, high_freq_factor: float = 4, old_context_len: int = 8192,
                       backend: Literal["cuda", "cute-dsl"] = "cuda") -> Tuple[Tensor, Tensor]:
    """:func:`apply_llama31_rope_inplace` out of place: returns ``(q_rope, k_rope)``."""
    rot = _ragged(q, k, rotary_dim)
    _check_backend(backend)
    inv_freq = _llama31_inv_freq(rot, rope_scale, rope_theta, low_freq_factor, high_freq_factor, old_context_len,
                                 q.device)
    return _rotate(q, k, cu_seqlens=indptr, seqlen_offsets=offsets, inv_freq=inv_freq, interleaved=bool(interleave))
