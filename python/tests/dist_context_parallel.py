"""Two (or more) processes: context parallelism through the Transformer Engine drop-in and tensor
parallelism through rope_cuda.apply_rope, each checked bit for bit against one process' run.

    torchrun --nproc_per_node 2 python/tests/dist_context_parallel.py

Backend "nccl" with one GPU per rank when there are enough GPUs, else "gloo" with every rank on
cuda:0 (the collectives then go through the CPU). Every rank builds the same packed batch from a
fixed seed. Context parallelism: rank r keeps its load-balanced share of every sequence (chunks r
and 2W-1-r of 2W), rotates it forward and backward with cp_size=W, cp_rank=r; the outputs and
input gradients are gathered and put back in sequence order. Tensor parallelism: rank r rotates
heads [r*H/W, (r+1)*H/W) of q and k. Both must equal the single-process run exactly
(torch.equal), in bfloat16 and float32. Rank 0 prints "DIST OK"; a mismatch raises (non-zero exit).
"""

import os

import torch
import torch.distributed as dist

import rope_cuda
from rope_cuda import te
from packed_layout import cu_seqlens_of, megatron_freqs, shard_rows

LENGTHS = [64, 128, 32, 256]  # full sequence lengths, multiples of 2 * world size
HEADS, KV_HEADS, HEAD_DIM, ROWS = 8, 4, 128, 512


class Collectives:
    def __init__(self, backend, device, world):
        self.backend, self.device, self.world = backend, device, world

    def all_gather(self, t):
        """Every rank's t (same shape on every rank), bit for bit."""
        t = t.detach().contiguous()
        if self.backend == "nccl":
            parts = [torch.empty_like(t) for _ in range(self.world)]
            dist.all_gather(parts, t)
            return parts
        # gloo: through the CPU, as raw bytes (gloo gathers uint8 whatever the dtype is)
        cpu = t.cpu().view(torch.uint8)
        parts = [torch.empty_like(cpu) for _ in range(self.world)]
        dist.all_gather(parts, cpu)
        return [p.view(t.dtype).to(self.device) for p in parts]


def check_equal(name, actual, expected):
    if actual.shape != expected.shape or actual.dtype != expected.dtype or not torch.equal(actual, expected):
        diff = (actual.double() - expected.double()).abs().max().item() if actual.shape == expected.shape else None
        raise AssertionError(f"rank {dist.get_rank()}: {name} differs from the single-process run "
                             f"(shapes {tuple(actual.shape)} / {tuple(expected.shape)}, max abs diff {diff})")


def context_parallel(comm, rank, world, dtype, interleaved, device):
    total = sum(LENGTHS)
    cu = cu_seqlens_of(LENGTHS, device)
    freqs = megatron_freqs(ROWS, HEAD_DIM, interleaved, device)
    generator = torch.Generator(device="cpu").manual_seed(1234)
    t_full = torch.randn(total, HEADS, HEAD_DIM, generator=generator).to(device, dtype)
    g_full = torch.randn(total, HEADS, HEAD_DIM, generator=generator).to(device, dtype)

    # One process, the whole batch.
    whole = t_full.clone().requires_grad_()
    out_whole = te.apply_rotary_pos_emb(whole, freqs, "thd", interleaved=interleaved, cu_seqlens=cu)
    out_whole.backward(g_full)

    # This rank's share.
    rows = shard_rows(LENGTHS, world, rank, device)
    local = t_full[rows].clone().requires_grad_()
    out_local = te.apply_rotary_pos_emb(local, freqs, "thd", interleaved=interleaved, cu_seqlens=cu, cp_size=world,
                                        cp_rank=rank)
    out_local.backward(g_full[rows])

    out = torch.empty_like(t_full)
    grad = torch.empty_like(t_full)
    for r, (o, g) in enumerate(zip(comm.all_gather(out_local), comm.all_gather(local.grad))):
        index = shard_rows(LENGTHS, world, r, device)
        out[index] = o
        grad[index] = g
    tag = f"context parallel ({dtype}, interleaved={interleaved})"
    check_equal(f"{tag} output", out, out_whole.detach())
    check_equal(f"{tag} input gradient", grad, whole.grad)


def tensor_parallel(comm, rank, world, dtype, device):
    total = sum(LENGTHS)
    cu = cu_seqlens_of(LENGTHS, device)
    generator = torch.Generator(device="cpu").manual_seed(4321)
    qkv = torch.randn(total, HEADS + 2 * KV_HEADS, HEAD_DIM, generator=generator).to(device, dtype)
    g_q = torch.randn(total, HEADS, HEAD_DIM, generator=generator).to(device, dtype)
    g_k = torch.randn(total, KV_HEADS, HEAD_DIM, generator=generator).to(device, dtype)
    inv_freq = (1.0 / 500000.0 ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)).float().to(device)

    q_whole = qkv[:, :HEADS].clone().requires_grad_()
    k_whole = qkv[:, HEADS: HEADS + KV_HEADS].clone().requires_grad_()
    out_q_whole, out_k_whole = rope_cuda.apply_rope(q_whole, k_whole, inv_freq=inv_freq, cu_seqlens=cu)
    torch.autograd.backward([out_q_whole, out_k_whole], [g_q, g_k])

    hq, hk = HEADS // world, KV_HEADS // world
    # This rank's heads: strided slices of the fused projection, as a column-parallel linear leaves them.
    q = qkv[:, rank * hq: (rank + 1) * hq].detach().requires_grad_()
    k = qkv[:, HEADS + rank * hk: HEADS + (rank + 1) * hk].detach().requires_grad_()
    out_q, out_k = rope_cuda.apply_rope(q, k, inv_freq=inv_freq, cu_seqlens=cu)
    torch.autograd.backward([out_q, out_k], [g_q[:, rank * hq: (rank + 1) * hq], g_k[:, rank * hk: (rank + 1) * hk]])

    tag = f"tensor parallel ({dtype})"
    check_equal(f"{tag} q output", torch.cat(comm.all_gather(out_q), dim=1), out_q_whole.detach())
    check_equal(f"{tag} k output", torch.cat(comm.all_gather(out_k), dim=1), out_k_whole.detach())
    check_equal(f"{tag} q gradient", torch.cat(comm.all_gather(q.grad), dim=1), q_whole.grad)
    check_equal(f"{tag} k gradient", torch.cat(comm.all_gather(k.grad), dim=1), k_whole.grad)


def main(device=None, backend=None):
    if backend is None:
        backend = "nccl" if torch.cuda.device_count() >= 2 else "gloo"
    if device is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if backend == "nccl" else 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before the process group, as NCCL wants
    dist.init_process_group(backend)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        assert all(n % (2 * world) == 0 for n in LENGTHS) and HEADS % world == 0 and KV_HEADS % world == 0
        comm = Collectives(backend, device, world)
        for dtype in (torch.bfloat16, torch.float32):
            for interleaved in (False, True):
                context_parallel(comm, rank, world, dtype, interleaved, device)
            tensor_parallel(comm, rank, world, dtype, device)
        dist.barrier()
        if rank == 0:
            print(f"DIST OK (backend {backend}, world {world})", flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
