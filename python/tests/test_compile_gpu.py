"""torch.compile(fullgraph=True, dynamic=True): no graph break (fullgraph raises on one) and no
recompilation across token counts (the backend is not called again after the first count)."""

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import rope_cuda
from rope_cuda import hf, vllm
from reference import assert_close_rel

pytestmark = pytest.mark.gpu
DEV = "cuda"
TOKEN_COUNTS = [5, 17, 64, 300]


def compiled(fn):
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    return torch.compile(fn, backend=counter, fullgraph=True, dynamic=True), counter


@pytest.mark.parametrize("enable_pdl", [False, True])
def test_functional_op_and_backward(enable_pdl):
    inv_freq = (1.0 / 10000.0 ** (torch.arange(0, 64, 2, device=DEV).float() / 64))

    def step(q, k, positions):
        out_q, out_k = rope_cuda.apply_rope(q, k, positions=positions, inv_freq=inv_freq, enable_pdl=enable_pdl)
        return (out_q * 2).sum() + out_k.sum()

    fn, counter = compiled(step)
    first = None
    for t in TOKEN_COUNTS:
        q = torch.randn(t, 4, 64, device=DEV, requires_grad=True)
        k = torch.randn(t, 2, 64, device=DEV, requires_grad=True)
        positions = torch.randint(0, 10000, (t,), device=DEV)
        fn(q, k, positions).backward()
        q2, k2 = q.detach().requires_grad_(), k.detach().requires_grad_()
        step(q2, k2, positions).backward()
        assert_close_rel(q.grad, q2.grad)
        assert_close_rel(k.grad, k2.grad)
        first = first or counter.frame_count
    assert counter.frame_count == first


def test_vllm_in_place_on_graph_inputs():
    cache = torch.rand(4096, 128, device=DEV)

    def step(positions, qkv):
        vllm.rotary_embedding(positions, qkv[:, : 4 * 128], qkv[:, 4 * 128: 6 * 128], 128, cache, True)
        return qkv

    fn, counter = compiled(step)
    first = None
    for t in TOKEN_COUNTS:
        qkv = torch.randn(t, 8 * 128, device=DEV, dtype=torch.bfloat16)
        expected = qkv.clone()
        positions = torch.randint(0, 4096, (t,), device=DEV)
        step(positions, expected)
        fn(positions, qkv)
        assert torch.equal(qkv, expected)  # same kernel, same inputs: bit-identical
        first = first or counter.frame_count
    assert counter.frame_count == first


def test_hf_drop_in():
    def attention_inputs(q, k, cos, sin):
        q_embed, k_embed = hf.apply_rotary_pos_emb(q, k, cos, sin)
        return q_embed * 0.5, k_embed

    fn, counter = compiled(attention_inputs)
    first = None
    for s in TOKEN_COUNTS:
        q = torch.randn(2, s, 8, 64, device=DEV, dtype=torch.bfloat16).transpose(1, 2)
        k = torch.randn(2, s, 2, 64, device=DEV, dtype=torch.bfloat16).transpose(1, 2)
        angles = torch.rand(2, s, 32, device=DEV) * 6
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos().bfloat16(), emb.sin().bfloat16()
        for a, e in zip(fn(q, k, cos, sin), attention_inputs(q, k, cos, sin)):
            assert torch.equal(a, e)
        first = first or counter.frame_count
    assert counter.frame_count == first
