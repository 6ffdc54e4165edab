"""rope_cuda.hf.apply_rotary_pos_emb against transformers' own functions and models."""

import pytest
import torch

from rope_cuda import hf
from reference import assert_close_rel

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig, Qwen2Config, Qwen2ForCausalLM, LlamaForCausalLM  # noqa: E402
from transformers.models.gemma import modeling_gemma  # noqa: E402
from transformers.models.gpt_neox import modeling_gpt_neox  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402
from transformers.models.mistral import modeling_mistral  # noqa: E402
from transformers.models.phi3 import modeling_phi3  # noqa: E402
from transformers.models.qwen2 import modeling_qwen2  # noqa: E402

DEV = "cuda"
# (model file, rotary dims of a 64-dim head): NeoX and Phi-3 rotate only part of each head.
FAMILIES = {"llama": (modeling_llama, 64), "mistral": (modeling_mistral, 64), "qwen2": (modeling_qwen2, 64),
            "gemma": (modeling_gemma, 64), "gpt_neox": (modeling_gpt_neox, 16), "phi3": (modeling_phi3, 32)}


def hf_cos_sin(batch, seq, rot, dtype, per_batch=True, max_pos=4096):
    """cos/sin as transformers' rotary modules return them: [B or 1, S, rot], duplicated halves."""
    positions = torch.randint(0, max_pos, (batch if per_batch else 1, seq), device=DEV)
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, rot, 2, device=DEV).float() / rot)
    freqs = positions[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def qk(batch, seq, heads, kv_heads, d, dtype, layout):
    q = torch.randn(batch, seq, heads, d, device=DEV).to(dtype)
    k = torch.randn(batch, seq, kv_heads, d, device=DEV).to(dtype)
    return (q.transpose(1, 2), k.transpose(1, 2)) if layout == "bhsd" else (q, k)


@pytest.mark.gpu
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("per_batch", [True, False])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
def test_matches_transformers(family, dtype, per_batch, layout):
    module, rot = FAMILIES[family]
    batch, seq = 3, 17
    q, k = qk(batch, seq, 8, 2, 64, dtype, layout)
    cos, sin = hf_cos_sin(batch, seq, rot, dtype, per_batch)
    unsqueeze_dim = 1 if layout == "bhsd" else 2
    expected = module.apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim)
    exact = module.apply_rotary_pos_emb(q.double(), k.double(), cos.double(), sin.double(), unsqueeze_dim=unsqueeze_dim)
    actual = hf.apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=unsqueeze_dim)
    for a, e, x in zip(actual, expected, exact):
        assert a.shape == e.shape and a.dtype == e.dtype
        assert_close_rel(a, x, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("q_dtype", [torch.bfloat16, torch.float16])
def test_mixed_dtypes_promote_like_transformers(q_dtype):
    # bf16 q/k with fp32 cos/sin (what autocast code hands over): transformers returns fp32.
    q, k = qk(2, 11, 4, 2, 64, q_dtype, "bhsd")
    cos, sin = hf_cos_sin(2, 11, 64, torch.float32)
    with torch.autocast("cuda", dtype=q_dtype):
        expected = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
        actual = hf.apply_rotary_pos_emb(q, k, cos, sin)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype == torch.float32
        assert_close_rel(a, e, torch.float32)


@pytest.mark.gpu
@pytest.mark.parametrize("q_dtype,k_dtype", [(torch.bfloat16, torch.float16), (torch.float16, torch.bfloat16)])
def test_q_and_k_promote_each_on_its_own(q_dtype, k_dtype):
    # transformers' q * cos and k * cos promote per tensor: with bf16 cos/sin, a bf16 q stays bf16
    # while an fp16 k goes to fp32 (and the other way round).
    q, _ = qk(2, 11, 4, 2, 64, q_dtype, "bhsd")
    _, k = qk(2, 11, 4, 2, 64, k_dtype, "bhsd")
    cos, sin = hf_cos_sin(2, 11, 64, torch.bfloat16)
    expected = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
    actual = hf.apply_rotary_pos_emb(q, k, cos, sin)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape
        assert_close_rel(a, e, a.dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_backward_matches_transformers_autograd(family):
    module, rot = FAMILIES[family]
    q, k = qk(2, 13, 4, 2, 64, torch.float32, "bhsd")
    cos, sin = hf_cos_sin(2, 13, rot, torch.float32)
    grads = []
    for fn in (module.apply_rotary_pos_emb, hf.apply_rotary_pos_emb):
        q1, k1 = q.clone().requires_grad_(), k.clone().requires_grad_()
        out_q, out_k = fn(q1, k1, cos, sin)
        w = torch.arange(out_q.numel(), device=DEV).reshape(out_q.shape).sin()
        ((out_q * w).sum() + (out_k ** 2).sum()).backward()
        grads.append((q1.grad, k1.grad))
    for a, e in zip(grads[1], grads[0]):
        assert_close_rel(a, e, torch.float32)


def test_cpu_falls_back_to_transformers_math_exactly():
    for module, rot in (FAMILIES["llama"][0], 64), (FAMILIES["gpt_neox"][0], 16):
        q, k = torch.randn(2, 4, 9, 64), torch.randn(2, 2, 9, 64)
        angles = torch.rand(2, 9, rot // 2) * 6
        emb = torch.cat((angles, angles), dim=-1)
        expected = module.apply_rotary_pos_emb(q, k, emb.cos(), emb.sin())
        actual = hf.apply_rotary_pos_emb(q, k, emb.cos(), emb.sin())
        assert all(torch.equal(a, e) for a, e in zip(actual, expected))


@pytest.mark.gpu
def test_float64_falls_back():
    q, k = qk(1, 5, 2, 2, 32, torch.float64, "bhsd")
    cos, sin = hf_cos_sin(1, 5, 32, torch.float64)
    expected = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
    actual = hf.apply_rotary_pos_emb(q, k, cos, sin)
    assert all(torch.equal(a, e) for a, e in zip(actual, expected))


def tiny(config_cls, model_cls, dtype):
    config = config_cls(vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                        attn_implementation="eager")
    torch.manual_seed(0)
    return model_cls(config).to(DEV, dtype).eval()


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["llama", "qwen2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_logits_with_the_drop_in(name, dtype, monkeypatch):
    module = FAMILIES[name][0]
    model = tiny(LlamaConfig, LlamaForCausalLM, dtype) if name == "llama" else tiny(Qwen2Config, Qwen2ForCausalLM, dtype)
    ids = torch.randint(0, 256, (2, 48), device=DEV)
    position_ids = torch.stack([torch.arange(48), torch.arange(48) + 100]).to(DEV)  # per-row positions
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return hf.apply_rotary_pos_emb(*args, **kwargs)

    def no_fallback(*args, **kwargs):
        raise AssertionError("the drop-in fell back to PyTorch math")

    with torch.no_grad():
        expected = [model(ids).logits, model(ids, position_ids=position_ids).logits]
        monkeypatch.setattr(module, "apply_rotary_pos_emb", counted)
        monkeypatch.setattr(hf, "reference_apply_rotary_pos_emb", no_fallback)
        actual = [model(ids).logits, model(ids, position_ids=position_ids).logits]
    assert len(calls) == 2 * model.config.num_hidden_layers
    for a, e in zip(actual, expected):
        # Whole-model logits: the rounding of each layer compounds; compare at the dtype's scale.
        bound = 1e-5 if dtype == torch.float32 else 3e-2
        assert (a.float() - e.float()).norm() / e.float().norm() < bound


def test_patched_context_restores():
    original = modeling_llama.apply_rotary_pos_emb
    with hf.patched(modeling_llama, modeling_qwen2):
        assert modeling_llama.apply_rotary_pos_emb is hf.apply_rotary_pos_emb
        assert modeling_qwen2.apply_rotary_pos_emb is hf.apply_rotary_pos_emb
    assert modeling_llama.apply_rotary_pos_emb is original
