"""Multi-axis positions (M-RoPE, 2D vision RoPE) and DeepSeek MLA's trailing rope slice against
transformers' own code.

transformers 5 has no ``apply_multimodal_rotary_pos_emb`` any more: the text rotary embeddings of
Qwen2-VL / Qwen2.5-VL / Qwen3-VL build per-token cos/sin from ``[3, batch, seq]`` position_ids
(``recomposition_frequencies``: contiguous ``mrope_section`` ranges, or Qwen3-VL's interleaved
axes), and the attention applies the plain ``apply_rotary_pos_emb``. The vision towers use
``*VisionRotaryEmbedding`` with ``[patches, 2]`` (row, column) ids and ``apply_rotary_pos_emb_vision``;
DeepSeek-V3 uses ``apply_rotary_pos_emb_interleave`` on the rope slice. Each test runs that
transformers pipeline and ``rope_cuda.apply_rope`` on the same inputs. Every transformers name
is looked up guardedly: a renamed class or function skips its test (with the reason).

Two comparisons per case:
- against a float64 reference built from the definitions (``reference.exact_cos_sin``: each
  frequency's cos/sin from its axis' position, exact angles or the given table's rows) at the
  library's own bounds (``reference.tolerance``); the CPU tests below check that this reference
  reproduces transformers' functions, so it states their conventions;
- against transformers' output in the model dtype, with the bounds of ``hf_bounds``.
"""

import pytest
import torch

import rope_cuda
from reference import assert_close_rel, axis_of_frequency, exact_cos_sin, multi_axis_cos_sin, rotate

transformers = pytest.importorskip("transformers")

DEV = "cuda"
SPATIAL_MERGE = 2


def hf(module, *names):
    """Objects of ``transformers.models.<module>``; skips the test if one is missing."""
    mod = pytest.importorskip(f"transformers.models.{module}")
    found = []
    for name in names:
        obj = getattr(mod, name, None)
        if obj is None:
            pytest.skip(f"transformers {transformers.__version__}: models.{module} has no {name}")
        found.append(obj)
    return found if len(found) > 1 else found[0]


# name: (modeling module, text rotary class, configuration module, text config class, rope_theta,
#        mrope_section, section layout). head_dim 128, as all three ship.
TEXT_MODELS = {
    "qwen2_vl": ("qwen2_vl.modeling_qwen2_vl", "Qwen2VLRotaryEmbedding", "qwen2_vl.configuration_qwen2_vl",
                 "Qwen2VLTextConfig", 1e6, [16, 24, 24], "contiguous"),
    "qwen2_5_vl": ("qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VLRotaryEmbedding", "qwen2_5_vl.configuration_qwen2_5_vl",
                   "Qwen2_5_VLTextConfig", 1e6, [16, 24, 24], "contiguous"),
    "qwen3_vl": ("qwen3_vl.modeling_qwen3_vl", "Qwen3VLTextRotaryEmbedding", "qwen3_vl.configuration_qwen3_vl",
                 "Qwen3VLTextConfig", 5e6, [24, 20, 20], "interleaved"),
}
HEADS, KV_HEADS, HEAD_DIM = 8, 2, 128


def text_rotary(name, device=DEV):
    """(modeling module, transformers' text rotary embedding, mrope_section, layout)."""
    modeling, rotary_cls, configuration, config_cls, theta, sections, layout = TEXT_MODELS[name]
    mod = pytest.importorskip(f"transformers.models.{modeling}")
    rotary_cls = hf(modeling, rotary_cls)
    hf(modeling, "apply_rotary_pos_emb")
    config_cls = hf(configuration, config_cls)
    config = config_cls(hidden_size=HEADS * HEAD_DIM, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                        head_dim=HEAD_DIM,
                        rope_parameters={"rope_type": "default", "rope_theta": theta, "mrope_section": sections})
    rotary = rotary_cls(config).to(device)
    assert list(rotary.mrope_section) == sections, "the rotary embedding did not take the config's mrope_section"
    return mod, rotary, sections, layout


def grid_position_ids(segments, device=DEV):
    """[3, seq] M-RoPE position_ids of one sequence, as Qwen2-VL's get_rope_index builds them.

    ``segments``: ("text", n) or ("image", (t, h, w)) in patches (merged 2x2 for the LLM). A text
    token has t = h = w = its index; a grid starts at the running position p: t = p + frame,
    h = p + row, w = p + column; the next segment starts max(h, w) later. test_grid_position_ids
    checks this against transformers' own get_rope_index.
    """
    parts, p = [], 0
    for kind, size in segments:
        if kind == "text":
            parts.append(torch.arange(p, p + size).expand(3, size))
            p += size
        else:
            t, h, w = size[0], size[1] // SPATIAL_MERGE, size[2] // SPATIAL_MERGE
            grid = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
            parts.append(torch.stack(grid).reshape(3, -1) + p)
            p += max(h, w)
    return torch.cat(parts, dim=1).to(device)


# Two sequences of one length (60 tokens): text, an image, text; text, a grid of two temporal
# patches, text.
BATCH_SEGMENTS = [[("text", 6), ("image", (1, 12, 16)), ("text", 6)],
                  [("text", 3), ("image", (2, 8, 12)), ("text", 9)]]


def batch_position_ids(offset=0, device=DEV):
    """[3, 2, 60] int64: the two sequences above, shifted by ``offset`` (a later decode step)."""
    return torch.stack([grid_position_ids(s, device) for s in BATCH_SEGMENTS], dim=1) + offset


def hf_bounds(dtype, max_position=0):
    """(relative L2, max abs relative to max|x|) for ours against transformers in the model dtype.

    transformers rounds cos/sin to the model dtype (unit roundoff u) and computes
    q * cos + rotate_half(q) * sin in it: two rounded products and a rounded sum, so per element
    |error| <= 2u(|x1| + |x2|) + u|y| <= ~5.5u max|x|; ours computes in fp32 and rounds once
    (u|y|). Both together stay under 8u max|x|; the L2 error of independent roundings is ~1.5u.
    In fp32 with identical cos/sin only the order of the fp32 operations differs: the library's
    fp32 bound. With computed cos/sin (max_position > 0), transformers' fp32 angle fl(p * f) is
    off the exact one by up to p 2^-24 (f <= 1), which moves each output by that times |x1| + |x2|.
    """
    u = {torch.float32: 0.0, torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}[dtype]
    angle = max_position * 2.0 ** -24
    if dtype == torch.float32:
        return 1e-6 + angle, 1e-5 + 2 * angle
    return 3 * u + angle, 8 * u + 2 * angle


def assert_close_bounds(actual, expected, bounds):
    rel_bound, abs_bound = bounds
    a, e = actual.double(), expected.double()
    assert not torch.isnan(a).any(), "NaN in the output"
    rel = ((a - e).norm() / e.norm().clamp_min(1e-30)).item()
    err = (a - e).abs().max().item()
    scale = e.abs().max().item()
    assert rel <= rel_bound and err <= abs_bound * scale, \
        f"relative L2 {rel:.3g} (bound {rel_bound:.3g}), max abs {err:.3g} (bound {abs_bound * scale:.3g})"


def text_source(rotary, source, rows):
    """apply_rope's cos/sin arguments from transformers' rotary embedding: its fp32 table (rows
    0..rows-1, made by the rotary embedding itself from text positions, where every axis is the
    position) as a strided [rows, rot/2] view of its [rows, rot] output, or its inv_freq."""
    if source == "computed":
        return dict(inv_freq=rotary.inv_freq.float(), attention_scaling=rotary.attention_scaling)
    ids = torch.arange(rows, device=DEV).expand(3, 1, rows)
    cos, sin = rotary(torch.zeros(1, device=DEV), ids)  # fp32, attention_scaling included
    half = cos.shape[-1] // 2
    return dict(cos=cos[0, :, :half], sin=sin[0, :, :half])


def qk(batch, seq, dtype, heads=HEADS, kv_heads=KV_HEADS, head_dim=HEAD_DIM):
    q = torch.randn(batch, seq, heads, head_dim, device=DEV).to(dtype)
    k = torch.randn(batch, seq, kv_heads, head_dim, device=DEV).to(dtype)
    return q, k


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(TEXT_MODELS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("source", ["table", "computed"])
@pytest.mark.parametrize("offset", [0, 3000])
def test_text_mrope_matches_transformers(name, dtype, source, offset):
    mod, rotary, sections, layout = text_rotary(name)
    positions = batch_position_ids(offset)
    q, k = qk(2, positions.shape[-1], dtype)  # [B, S, H, D]
    # transformers: per-token cos/sin from [3, B, S] ids, then the plain apply on [B, H, S, D].
    cos, sin = rotary(q, positions)
    expected = [e.transpose(1, 2) for e in mod.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)]

    max_position = int(positions.max())
    args = text_source(rotary, source, max_position + 1)
    actual = rope_cuda.apply_rope(q, k, positions=positions, mrope_section=sections, mrope_layout=layout, **args)
    exact_cos, exact_sin = exact_cos_sin(args, positions, sections, layout)
    bounds = hf_bounds(dtype, max_position if source == "computed" else 0)
    for a, e, x in zip(actual, expected, (q, k)):
        assert a.shape == x.shape and a.dtype == dtype
        assert_close_rel(a, rotate(x, exact_cos[:, :, None], exact_sin[:, :, None]), dtype)
        assert_close_bounds(a, e, bounds)


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(TEXT_MODELS))
def test_transposed_views_int32_and_in_place(name):
    # transformers' own layout: q/k [B, H, S, D], given to us as [B, S, H, D] views (their batch
    # does not merge with the sequence, so one launch per batch entry); int32 ids; in place.
    mod, rotary, sections, layout = text_rotary(name)
    positions = batch_position_ids(17)
    seq = positions.shape[-1]
    q = torch.randn(2, HEADS, seq, HEAD_DIM, device=DEV).bfloat16()
    k = torch.randn(2, KV_HEADS, seq, HEAD_DIM, device=DEV).bfloat16()
    cos, sin = rotary(q, positions)
    expected = mod.apply_rotary_pos_emb(q, k, cos, sin)
    source = text_source(rotary, "table", int(positions.max()) + 1)
    q_in, k_in = q.clone(), k.clone()
    rope_cuda.apply_rope_(q_in.transpose(1, 2), k_in.transpose(1, 2), positions=positions.int(),
                          mrope_section=sections, mrope_layout=layout, **source)
    out = rope_cuda.apply_rope(q.transpose(1, 2), k.transpose(1, 2), positions=positions,
                               mrope_section=tuple(sections), mrope_layout=layout, **source)
    for a, b, e in zip((q_in, k_in), out, expected):
        assert torch.equal(a, b.transpose(1, 2))
        assert_close_bounds(a, e, hf_bounds(torch.bfloat16))


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["contiguous", "interleaved"])
@pytest.mark.parametrize("source", ["table", "computed"])
def test_text_only_tokens_equal_the_one_axis_result(layout, source):
    # Text-only tokens have t = h = w: bit for bit the one-axis rotation. The ids are an expanded
    # view (axis and batch strides 0), as arange(...).expand(3, B, -1) gives them.
    _, rotary, sections, _ = text_rotary("qwen2_vl")
    seq = 45
    ids = torch.arange(100, 100 + seq, device=DEV)
    q, k = qk(2, seq, torch.float16)
    source_args = text_source(rotary, source, 100 + seq)
    multi = rope_cuda.apply_rope(q, k, positions=ids.expand(3, 2, seq), mrope_section=sections, mrope_layout=layout,
                                 **source_args)
    single = rope_cuda.apply_rope(q, k, positions=ids.expand(2, seq), **source_args)
    assert all(torch.equal(m, s) for m, s in zip(multi, single))


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["qwen2_vl", "qwen3_vl"])
def test_backward_matches_transformers_autograd(name):
    mod, rotary, sections, layout = text_rotary(name)
    positions = batch_position_ids()
    q, k = qk(2, positions.shape[-1], torch.float32)
    cos, sin = rotary(q, positions)
    source = text_source(rotary, "table", int(positions.max()) + 1)
    grads = []
    for ours in (False, True):
        q1, k1 = q.clone().requires_grad_(), k.clone().requires_grad_()
        if ours:
            out_q, out_k = rope_cuda.apply_rope(q1, k1, positions=positions, mrope_section=sections,
                                                mrope_layout=layout, **source)
        else:
            out_q, out_k = (o.transpose(1, 2) for o in
                            mod.apply_rotary_pos_emb(q1.transpose(1, 2), k1.transpose(1, 2), cos, sin))
        w = torch.arange(out_q.numel(), device=DEV).reshape(out_q.shape).sin()
        ((out_q * w).sum() + (out_k ** 2).sum()).backward()
        grads.append((q1.grad, k1.grad))
    for a, e in zip(grads[1], grads[0]):
        assert_close_rel(a, e, torch.float32)


@pytest.mark.gpu
@pytest.mark.parametrize("max_positions", [None, 4096])
def test_module(max_positions):
    _, rotary, sections, layout = text_rotary("qwen3_vl")
    module = rope_cuda.RotaryEmbedding.from_inv_freq(rotary.inv_freq, rotary.attention_scaling,
                                                     max_positions=max_positions, mrope_section=sections,
                                                     mrope_layout=layout)
    assert "mrope_section=[24, 20, 20], mrope_layout='interleaved'" in repr(module)
    positions = batch_position_ids(100)
    q, k = qk(2, positions.shape[-1], torch.float32)
    actual = module(positions, q, k)
    args = dict(inv_freq=rotary.inv_freq.float()) if max_positions is None else dict(cos=module.cos, sin=module.sin)
    exact_cos, exact_sin = exact_cos_sin(args, positions, sections, layout)
    for a, x in zip(actual, (q, k)):
        assert_close_rel(a, rotate(x, exact_cos[:, :, None], exact_sin[:, :, None]), torch.float32)


@pytest.mark.gpu
def test_compiles_without_graph_breaks():
    from torch._dynamo.testing import CompileCounterWithBackend
    _, rotary, sections, layout = text_rotary("qwen3_vl")
    inv_freq = rotary.inv_freq.float()

    def step(q, k, positions):
        out_q, out_k = rope_cuda.apply_rope(q, k, positions=positions, inv_freq=inv_freq, mrope_section=sections,
                                            mrope_layout=layout)
        return out_q * 2, out_k

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")
    fn = torch.compile(step, backend=counter, fullgraph=True, dynamic=True)
    for seq in (7, 33, 90):
        q, k = qk(1, seq, torch.bfloat16)
        positions = torch.randint(0, 5000, (3, 1, seq), device=DEV)
        for a, e in zip(fn(q, k, positions), step(q, k, positions)):
            assert torch.equal(a, e)
    assert counter.frame_count <= 2  # one graph, at most one recompile to a dynamic shape


# --- 2D vision RoPE: Qwen2-VL's vision tower -------------------------------------------------

VISION_HEADS, VISION_HEAD_DIM = 16, 80  # Qwen2-VL's ViT: embed_dim 1280, 16 heads
GRIDS = [[1, 16, 20], [2, 8, 12]]  # (t, h, w) patch grids of an image and a two-frame video


def vision_rotary(device=DEV):
    modeling = "qwen2_vl.modeling_qwen2_vl"
    rotary_cls, apply_vision = hf(modeling, "Qwen2VLVisionRotaryEmbedding", "apply_rotary_pos_emb_vision")
    config_cls = hf("qwen2_vl.configuration_qwen2_vl", "Qwen2VLVisionConfig")
    vision_utils = pytest.importorskip("transformers.vision_utils")
    position_ids = getattr(vision_utils, "get_vision_position_ids", None)
    if position_ids is None:
        pytest.skip(f"transformers {transformers.__version__} has no vision_utils.get_vision_position_ids")
    config = config_cls(embed_dim=VISION_HEADS * VISION_HEAD_DIM, num_heads=VISION_HEADS)
    return rotary_cls(config).to(device), apply_vision, position_ids


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("source", ["table", "computed"])
def test_vision_2d_matches_transformers(dtype, source):
    # transformers: ids [patches, 2] = (row, column), frequencies inv_freq (head_dim / 4 of them)
    # used twice, cos/sin rows [row freqs | column freqs] duplicated over both halves, half-split
    # pairs: exactly two axes with sections [head_dim / 4, head_dim / 4] over the frequencies
    # cat(inv_freq, inv_freq). The kernel reads positions per axis, so the ids are transposed to
    # [2, patches] (and made contiguous: the library reads each axis' positions consecutively).
    rotary, apply_vision, vision_position_ids = vision_rotary()
    ids = vision_position_ids(torch.tensor(GRIDS, device=DEV), SPATIAL_MERGE)  # [N, 2]
    n = ids.shape[0]
    q = torch.randn(n, VISION_HEADS, VISION_HEAD_DIM, device=DEV).to(dtype)
    k = torch.randn(n, VISION_HEADS, VISION_HEAD_DIM, device=DEV).to(dtype)
    cos, sin = rotary(q, ids)
    expected = apply_vision(q, k, cos, sin)

    quarter = rotary.inv_freq.numel()
    assert 4 * quarter == VISION_HEAD_DIM
    inv_freq = torch.cat((rotary.inv_freq, rotary.inv_freq)).float()
    if source == "computed":
        args = dict(inv_freq=inv_freq)
    else:  # the rotary embedding's own fp32 rows for ids (p, p): [p freqs | p freqs] = cos(p * inv_freq)
        rows = int(ids.max()) + 1
        same_row_and_column = torch.arange(rows, device=DEV)[:, None].expand(rows, 2)
        table_cos, table_sin = rotary(torch.zeros(1, device=DEV), same_row_and_column)
        args = dict(cos=table_cos[:, : 2 * quarter], sin=table_sin[:, : 2 * quarter])
    positions = ids.T.contiguous()
    actual = rope_cuda.apply_rope(q, k, positions=positions, mrope_section=[quarter, quarter], **args)

    exact_cos, exact_sin = exact_cos_sin(args, positions, [quarter, quarter], "contiguous")
    # transformers' vision apply computes in fp32 and rounds once, as we do: in fp16/bf16 the two
    # differ only where fp32 values a few ulp apart round to neighbours (one ulp, <= 2u|y|).
    u = {torch.float32: 0.0, torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}[dtype]
    angle = int(ids.max()) * 2.0 ** -24 if source == "computed" else 0.0
    bounds = (1e-6 + u + angle, 1e-5 + 2 * u + 2 * angle)
    for a, e, x in zip(actual, expected, (q, k)):
        assert a.dtype == e.dtype == dtype
        assert_close_rel(a, rotate(x, exact_cos[:, None], exact_sin[:, None]), dtype)
        assert_close_bounds(a, e, bounds)


# --- DeepSeek-V3 MLA: the trailing rope slice, interleaved pairs ------------------------------

MLA = dict(heads=16, nope=128, rope=64, kv_lora_rank=512)


def deepseek_rotary(device=DEV):
    modeling = "deepseek_v3.modeling_deepseek_v3"
    rotary_cls, apply_interleave = hf(modeling, "DeepseekV3RotaryEmbedding", "apply_rotary_pos_emb_interleave")
    config_cls = hf("deepseek_v3.configuration_deepseek_v3", "DeepseekV3Config")
    # DeepSeek-V3's rope: YaRN x40 over 4096 positions, mscale 1 / mscale_all_dim 1.
    config = config_cls(hidden_size=1024, num_attention_heads=MLA["heads"], qk_nope_head_dim=MLA["nope"],
                        qk_rope_head_dim=MLA["rope"], kv_lora_rank=MLA["kv_lora_rank"], v_head_dim=128,
                        max_position_embeddings=163840,
                        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                                         "original_max_position_embeddings": 4096, "beta_fast": 32.0,
                                         "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0})
    return rotary_cls(config).to(device), apply_interleave


def deinterleave(x):
    """transformers' DeepSeek output order: rotated even elements, then odd ones."""
    return torch.cat((x[..., 0::2], x[..., 1::2]), dim=-1)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("source", ["table", "computed"])
def test_deepseek_mla_slice_matches_transformers(dtype, source):
    rotary, apply_interleave = deepseek_rotary()
    batch, seq, heads, nope, rope, lora = 2, 37, MLA["heads"], MLA["nope"], MLA["rope"], MLA["kv_lora_rank"]
    positions = torch.randint(0, 8192, (batch, seq), device=DEV)
    q = torch.randn(batch, seq, heads, nope + rope, device=DEV).to(dtype)  # q_b_proj output viewed per head
    ckv = torch.randn(batch, seq, lora + rope, device=DEV).to(dtype)  # kv_a_proj_with_mqa output
    cos, sin = rotary(q, positions)
    expected = apply_interleave(q.transpose(1, 2)[..., nope:], ckv[..., lora:].unsqueeze(1), cos, sin)

    if source == "computed":
        args = dict(inv_freq=rotary.inv_freq.float(), attention_scaling=rotary.attention_scaling)
    else:
        rows = int(positions.max()) + 1
        table_cos, table_sin = rotary(torch.zeros(1, device=DEV), torch.arange(rows, device=DEV)[None])
        args = dict(cos=table_cos[0, :, : rope // 2], sin=table_sin[0, :, : rope // 2])
    q_out, ckv_out = q.clone(), ckv.clone()
    # In place on views of the rope slices: q [B, S, H, 64] (head stride 192), k one head per token.
    rope_cuda.apply_rope_(q_out[..., nope:], ckv_out[..., lora:].unsqueeze(2), positions=positions,
                          interleaved=True, **args)
    assert torch.equal(q_out[..., :nope], q[..., :nope]) and torch.equal(ckv_out[..., :lora], ckv[..., :lora])

    exact_cos, exact_sin = (c[:, :, None] for c in exact_cos_sin(args, positions[None], [rope // 2], "contiguous"))
    bounds = hf_bounds(dtype, int(positions.max()) if source == "computed" else 0)
    actual = (q_out[..., nope:], ckv_out[..., lora:].unsqueeze(2))
    for a, e, x in zip(actual, expected, (q[..., nope:], ckv[..., lora:].unsqueeze(2))):
        assert_close_rel(a, rotate(x, exact_cos, exact_sin, interleaved=True), dtype)
        # Same pairs, transformers' output order (attention scores are equal either way).
        assert_close_bounds(deinterleave(a), e.transpose(1, 2), bounds)


# --- CPU: the reference above states transformers' conventions ---------------------------------

def cpu_bounds(max_position):
    # fp32 transformers against the float64 definitions: its fp32 angle (p 2^-24 off) and the
    # fp32 arithmetic (a few 1e-7).
    return 1e-6 + max_position * 2.0 ** -24, 1e-5 + 2 * max_position * 2.0 ** -24


@pytest.mark.parametrize("name", list(TEXT_MODELS))
def test_reference_matches_transformers_text_mrope(name):
    mod, rotary, sections, layout = text_rotary(name, device="cpu")
    positions = batch_position_ids(device="cpu")
    q = torch.randn(2, positions.shape[-1], 4, HEAD_DIM)
    cos, sin = rotary(q, positions)
    hf_q, _ = mod.apply_rotary_pos_emb(q.transpose(1, 2), q.transpose(1, 2), cos, sin)
    exact_cos, exact_sin = multi_axis_cos_sin(positions, rotary.inv_freq, sections, layout)
    assert_close_bounds(hf_q.transpose(1, 2), rotate(q, exact_cos[:, :, None], exact_sin[:, :, None]),
                        cpu_bounds(int(positions.max())))
    # A wrong layout is caught: the test distinguishes the two.
    other = "interleaved" if layout == "contiguous" else "contiguous"
    wrong_cos, _ = multi_axis_cos_sin(positions, rotary.inv_freq, sections, other)
    assert axis_of_frequency(sections, other) != axis_of_frequency(sections, layout)
    assert (wrong_cos - exact_cos).abs().max() > 0.1


def test_reference_matches_transformers_vision():
    rotary, apply_vision, vision_position_ids = vision_rotary(device="cpu")
    ids = vision_position_ids(torch.tensor(GRIDS), SPATIAL_MERGE)
    q = torch.randn(ids.shape[0], 2, VISION_HEAD_DIM)
    cos, sin = rotary(q, ids)
    hf_q, _ = apply_vision(q, q, cos, sin)
    quarter = rotary.inv_freq.numel()
    exact_cos, exact_sin = multi_axis_cos_sin(ids.T, torch.cat((rotary.inv_freq, rotary.inv_freq)),
                                              [quarter, quarter], "contiguous")
    assert_close_bounds(hf_q, rotate(q, exact_cos[:, None], exact_sin[:, None]), cpu_bounds(int(ids.max())))


def test_reference_matches_transformers_deepseek():
    rotary, apply_interleave = deepseek_rotary(device="cpu")
    positions = torch.randint(0, 200, (2, 9))
    x = torch.randn(2, 9, 3, MLA["rope"])
    cos, sin = rotary(x, positions)
    hf_x, _ = apply_interleave(x.transpose(1, 2), x.transpose(1, 2), cos, sin)
    exact_cos, exact_sin = multi_axis_cos_sin(positions[None], rotary.inv_freq, [MLA["rope"] // 2], "contiguous",
                                              rotary.attention_scaling)
    expected = rotate(x, exact_cos[:, :, None], exact_sin[:, :, None], interleaved=True)
    assert_close_bounds(hf_x.transpose(1, 2), deinterleave(expected), cpu_bounds(200))


@pytest.mark.parametrize("model", ["Qwen2VLModel", "Qwen3VLModel"])
def test_grid_position_ids_match_get_rope_index(model):
    # The position ids the GPU tests use are what the models' own get_rope_index returns.
    name = {"Qwen2VLModel": "qwen2_vl", "Qwen3VLModel": "qwen3_vl"}[model]
    model_cls = hf(f"{name}.modeling_{name}", model)
    config_cls = hf(f"{name}.configuration_{name}", model.replace("Model", "Config"))
    text = dict(hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1,
                num_key_value_heads=1, head_dim=64, vocab_size=128,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]})
    vision = dict(depth=1, hidden_size=32, num_heads=1, spatial_merge_size=SPATIAL_MERGE)
    vision.update(dict(embed_dim=32) if name == "qwen2_vl" else dict(intermediate_size=32, out_hidden_size=64))
    try:
        m = model_cls(config_cls(text_config=text, vision_config=vision, image_token_id=120, video_token_id=121,
                                 vision_start_token_id=122))
    except (TypeError, ValueError) as e:
        pytest.skip(f"transformers {transformers.__version__}: cannot build a tiny {model}: {e}")
    for segments in BATCH_SEGMENTS:
        lengths = [size if kind == "text" else size[0] * size[1] * size[2] // SPATIAL_MERGE ** 2
                   for kind, size in segments]
        types = torch.cat([torch.full((n,), 0 if kind == "text" else 1) for (kind, _), n in zip(segments, lengths)])
        grids = torch.tensor([size for kind, size in segments if kind == "image"])
        ids = torch.zeros(1, types.numel(), dtype=torch.long)
        try:
            expected, _ = m.get_rope_index(ids, types[None], image_grid_thw=grids)
        except TypeError as e:
            pytest.skip(f"transformers {transformers.__version__}: {model}.get_rope_index has another signature: {e}")
        assert torch.equal(grid_position_ids(segments, device="cpu"), expected[:, 0])
