"""Checks shared by the GPU test files: CUDA-graph capture of a call and opcheck of both ops."""

import torch


def captured(body):
    """A CUDA graph of `body()` and what the captured call returned. It first runs once on a side
    stream (which loads the kernels), as torch's graph docs ask."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = body()
    return graph, out


def opcheck_both_ops(args):
    """torch.library.opcheck of rope_ on `args`, and of rope on them with and without q and k
    requiring grad (the positional arguments of the ops' schema)."""
    torch.library.opcheck(torch.ops.rope_cuda.rope_.default, args)
    grad_args = tuple(a.clone().requires_grad_() if i < 2 and a is not None and a.is_floating_point() else a
                      for i, a in enumerate(args))
    torch.library.opcheck(torch.ops.rope_cuda.rope.default, grad_args)
    torch.library.opcheck(torch.ops.rope_cuda.rope.default, args)
