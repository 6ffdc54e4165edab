"""GPU time per call of back-to-back calls, shared by the benchmark scripts in this folder."""

import statistics

import torch


def time_graph(call, calls, samples=7, warmup=3):
    """Median over `samples` of CUDA events around a CUDA-graph replay of `calls` back-to-back
    calls, per call, in us. `call(i)` makes call number i (so a script can give each call its own
    inputs); `warmup` calls run first, outside the graph, and one untimed replay uploads it."""
    for i in range(warmup):
        call(i)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            call(i)
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(samples):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / calls)
    return statistics.median(times)
