"""What runs without a GPU: the package imports, the ops' schemas, and their fake kernels."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import rope_cuda


def test_import_and_exports():
    assert rope_cuda.__version__ == "0.1.0"
    for name in ("apply_rope", "apply_rope_", "inv_freq_from_config", "RotaryEmbedding"):
        assert hasattr(rope_cuda, name)
    from rope_cuda import hf, vllm  # noqa: F401


def test_schemas():
    inplace = str(torch.ops.rope_cuda.rope_.default._schema)
    functional = str(torch.ops.rope_cuda.rope.default._schema)
    assert inplace.startswith("rope_cuda::rope_(Tensor(a!) q, Tensor(b!)? k, Tensor? positions=None,")
    assert inplace.endswith("-> ()")
    assert functional.startswith("rope_cuda::rope(Tensor q, Tensor? k, Tensor? positions=None,")
    assert functional.endswith("-> Tensor[]")
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
