"""CUDA graph capture and replay: the ops launch on the current stream and never synchronize."""

import pytest
import torch

import rope_cuda
from rope_cuda import vllm
from gpu_checks import captured

pytestmark = pytest.mark.gpu
DEV = "cuda"


def test_capture_and_replay_in_place_and_functional():
    tokens, d = 64, 128
    qkv = torch.randn(tokens, 12 * d, device=DEV, dtype=torch.bfloat16)
    positions = torch.randint(0, 4096, (tokens,), device=DEV)
    cache = torch.rand(4096, d, device=DEV)
    inv_freq = (1.0 / 10000.0 ** (torch.arange(0, d, 2, device=DEV).float() / d))
    q_in = torch.randn(tokens, 8, d, device=DEV)

    def body():
        vllm.rotary_embedding(positions, qkv[:, : 8 * d], qkv[:, 8 * d: 10 * d], d, cache, True)
        return rope_cuda.apply_rope(q_in, positions=positions, inv_freq=inv_freq)[0]

    graph, out = captured(body)

    for _ in range(3):  # fresh inputs each replay, checked against eager calls
        qkv.copy_(torch.randn_like(qkv))
        positions.copy_(torch.randint(0, 4096, (tokens,), device=DEV))
        q_in.copy_(torch.randn_like(q_in))
        expected_qkv = qkv.clone()
        vllm.rotary_embedding(positions, expected_qkv[:, : 8 * d], expected_qkv[:, 8 * d: 10 * d], d, cache, True)
        expected_out = rope_cuda.apply_rope(q_in, positions=positions, inv_freq=inv_freq)[0]
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(qkv, expected_qkv)
        assert torch.equal(out, expected_out)


def test_programmatic_launch_after_a_producer_in_a_graph():
    # enable_pdl: rope may start while the kernel before it (here the copy that writes q) ends,
    # and must read q only after it: every replay matches an eager launch without the option.
    tokens, d = 32, 128
    src = torch.randn(tokens, 8, d, device=DEV, dtype=torch.bfloat16)
    q = torch.empty_like(src)
    positions = torch.randint(0, 4096, (tokens,), device=DEV)
    inv_freq = (1.0 / 10000.0 ** (torch.arange(0, d, 2, device=DEV).float() / d))

    def body():
        q.copy_(src * 2)
        rope_cuda.apply_rope_(q, positions=positions, inv_freq=inv_freq, enable_pdl=True)
        return rope_cuda.apply_rope(q, positions=positions, inv_freq=inv_freq, enable_pdl=True)[0]

    graph, out = captured(body)

    for _ in range(3):
        src.copy_(torch.randn_like(src))
        positions.copy_(torch.randint(0, 4096, (tokens,), device=DEV))
        expected_q = src * 2
        rope_cuda.apply_rope_(expected_q, positions=positions, inv_freq=inv_freq)
        expected_out = rope_cuda.apply_rope(expected_q, positions=positions, inv_freq=inv_freq)[0]
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(q, expected_q)
        assert torch.equal(out, expected_out)
