"""What runs without a GPU: the package imports, the ops' schemas, and their fake kernels."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import rope_cuda


def test_import_and_exports():
    assert rope_cuda.__version__ == "0.1.0"
    for name in ("apply_qk_norm_rope_", "apply_rope", "apply_rope_", "apply_rope_and_cache_", "check_cu_seqlens", "inv_freq_from_config", "RotaryEmbedding"):
        assert hasattr(rope_cuda, name)
    from rope_cuda import flash_attn, flashinfer, hf, sglang, te, vllm  # noqa: F401


def test_schemas():
    inplace = str(torch.ops.rope_cuda.rope_.default._schema)
    functional = str(torch.ops.rope_cuda.rope.default._schema)
    assert inplace.startswith("rope_cuda::rope_(Tensor(a!) q, Tensor(b!)? k, Tensor? positions=None,")
    tail = ('bool inverse=False, int[]? mrope_section=None, str mrope_layout="contiguous", bool enable_pdl=False, '
            'Tensor? cu_seqlens=None, Tensor? seqlen_offsets=None, int cp_size=1, int cp_rank=0, '
            'str cp_layout="load_balanced")')
    assert inplace.endswith(tail + " -> ()")
    assert functional.endswith(tail + " -> Tensor[]")
    assert functional.startswith("rope_cuda::rope(Tensor q, Tensor? k, Tensor? positions=None,")
    assert functional.endswith("-> Tensor[]")
    norm = str(torch.ops.rope_cuda.rope_qk_norm_.default._schema)
    assert norm.startswith("rope_cuda::rope_qk_norm_(Tensor(a!) q, Tensor(b!)? k, Tensor? q_weight, Tensor? k_weight,")
    assert norm.endswith("Tensor? cu_seqlens=None, Tensor? seqlen_offsets=None) -> ()")
    append = str(torch.ops.rope_cuda.rope_append_.default._schema)
    assert append.startswith("rope_cuda::rope_append_(Tensor(a!) q, Tensor(b!) k, Tensor v, Tensor(c!) k_cache, "
                             "Tensor(d!) v_cache, Tensor slot_mapping,")
    assert torch.ops.rope_cuda.rope_.default._schema.is_mutable
    assert not torch.ops.rope_cuda.rope.default._schema.is_mutable


def test_kernels_registered_for_cuda_and_cpu():
    for op in ("rope_cuda::rope_", "rope_cuda::rope"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "Meta")  # from register_fake
    assert torch._C._dispatch_has_kernel_for_dispatch_key("rope_cuda::rope", "Autograd")


@pytest.mark.parametrize("shape_q,shape_k", [((7, 4, 64), (7, 2, 64)), ((2, 5, 4, 64), (2, 5, 1, 64))])
def test_fake_functional_shapes_on_meta(shape_q, shape_k):
    q = torch.empty(shape_q, dtype=torch.bfloat16, device="meta").transpose(-2, -2)
    k = torch.empty(shape_k, dtype=torch.bfloat16, device="meta")
    inv_freq = torch.empty(16, device="meta")
    out = torch.ops.rope_cuda.rope(q, k, inv_freq=inv_freq)
    assert [o.shape for o in out] == [q.shape, k.shape]
    assert all(o.dtype == torch.bfloat16 and o.is_contiguous() for o in out)
    (only_q,) = torch.ops.rope_cuda.rope(q, None, inv_freq=inv_freq)
    assert only_q.shape == q.shape


def test_fake_under_fake_tensor_mode():
    with FakeTensorMode():
        qkv = torch.empty(9, 6 * 128, dtype=torch.float16)
        q = qkv[:, : 4 * 128].view(9, 4, 128)
        cache = torch.empty(100, 128)
        positions = torch.empty(9, dtype=torch.int64)
        assert torch.ops.rope_cuda.rope_(q, None, positions, cos_sin_cache=cache) is None
        (out,) = torch.ops.rope_cuda.rope(q, None, positions, cos_sin_cache=cache)
        assert out.shape == (9, 4, 128) and out.stride() == (512, 128, 1)


def test_fake_with_multi_axis_positions():
    with FakeTensorMode():
        q = torch.empty(2, 9, 4, 128, dtype=torch.bfloat16)
        k = torch.empty(2, 9, 1, 128, dtype=torch.bfloat16)
        positions = torch.empty(3, 2, 9, dtype=torch.int64)
        inv_freq = torch.empty(64)
        out = torch.ops.rope_cuda.rope(q, k, positions, inv_freq=inv_freq, mrope_section=[24, 20, 20],
                                       mrope_layout="interleaved")
        assert [o.shape for o in out] == [q.shape, k.shape]
        assert torch.ops.rope_cuda.rope_(q, k, positions, inv_freq=inv_freq, mrope_section=[16, 24, 24]) is None


def test_backward_passes_the_multi_axis_arguments_on():
    # On meta tensors the autograd formula runs through the fake kernel; the recorded calls show
    # the backward is the inverse rotation with the same sections and layout.
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.rope_cuda.rope.default:
                calls.append((args, kwargs))
            return func(*args, **(kwargs or {}))

    q = torch.empty(2, 9, 4, 128, device="meta", requires_grad=True)
    k = torch.empty(2, 9, 1, 128, device="meta", requires_grad=True)
    positions = torch.empty(3, 2, 9, dtype=torch.int64, device="meta")
    with Record():
        out_q, out_k = rope_cuda.apply_rope(q, k, positions=positions, inv_freq=torch.empty(64, device="meta"),
                                            mrope_section=[24, 20, 20], mrope_layout="interleaved")
        (out_q.sum() + out_k.sum()).backward()
    assert q.grad.shape == q.shape and k.grad.shape == k.shape
    (forward, _), (backward, _) = calls

    def options(args):  # (inverse, mrope_section, mrope_layout), defaults filled in
        full = tuple(args) + (None,) * 12
        return bool(full[9]), full[10], full[11] if full[11] is not None else "contiguous"

    assert options(forward) == (False, [24, 20, 20], "interleaved")
    assert options(backward) == (True, [24, 20, 20], "interleaved")


def test_backward_launches_as_the_forward_did():
    # enable_pdl reaches the forward op and the backward's inverse rotation alike.
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.rope_cuda.rope.default:
                calls.append(tuple(args) + (None,) * 13)
            return func(*args, **(kwargs or {}))

    q = torch.empty(5, 4, 64, device="meta", requires_grad=True)
    with Record():
        out_q, _ = rope_cuda.apply_rope(q, positions=torch.empty(5, dtype=torch.int64, device="meta"),
                                        inv_freq=torch.empty(32, device="meta"), enable_pdl=True)
        out_q.sum().backward()
    (forward, backward) = calls
    assert forward[12] is True and backward[12] is True
    assert bool(forward[9]) is False and bool(backward[9]) is True


def test_fake_kernels_take_enable_pdl():
    with FakeTensorMode():
        q = torch.empty(9, 4, 128, dtype=torch.bfloat16)
        positions = torch.empty(9, dtype=torch.int64)
        inv_freq = torch.empty(64)
        (out,) = torch.ops.rope_cuda.rope(q, None, positions, inv_freq=inv_freq, enable_pdl=True)
        assert out.shape == q.shape
        assert torch.ops.rope_cuda.rope_(q, None, positions, inv_freq=inv_freq, enable_pdl=True) is None
