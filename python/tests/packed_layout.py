"""Packed-batch inputs shared by test_packed_gpu.py and the torchrun script dist_context_parallel.py:
cu_seqlens, Megatron-style angle tables, and a rank's load-balanced share of a packed batch."""

import torch


def cu_seqlens_of(lengths, device="cuda"):
    """int32 [batch + 1]: 0, then the running totals of the lengths."""
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    return torch.tensor(cu, dtype=torch.int32, device=device)


def inv_freq_for(rot, base=10000.0, device="cuda"):
    return (1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)).float().to(device)


def megatron_freqs(rows, rot, interleaved, device="cuda"):
    """fp32 angles [rows, 1, 1, rot] as Megatron-Core's / TE's RotaryPositionEmbedding build them:
    cat(f, f) for the halves, each angle twice ([f0, f0, f1, f1, ...]) for interleaved pairs."""
    f = torch.arange(rows, device=device, dtype=torch.float32)[:, None] * inv_freq_for(rot, device=device)[None]
    emb = torch.stack((f, f), dim=-1).flatten(-2) if interleaved else torch.cat((f, f), dim=-1)
    return emb[:, None, None, :]


def shard_rows(lengths, cp_size, cp_rank, device="cpu"):
    """Indices into the full packed batch of rank cp_rank's load-balanced share (chunks r and 2W-1-r
    of each sequence), in the order the rank holds them."""
    rows, start = [], 0
    for n in lengths:
        c = n // (2 * cp_size)
        rows += range(start + cp_rank * c, start + (cp_rank + 1) * c)
        rows += range(start + (2 * cp_size - 1 - cp_rank) * c, start + (2 * cp_size - cp_rank) * c)
        start += n
    return torch.tensor(rows, dtype=torch.long, device=device)
