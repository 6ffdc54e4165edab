"""A real client of rope_cuda.apply_rope_and_cache_: a small paged-KV-cache engine loop over transformers models.

Two tiny random-weight models (Llama, and Qwen3 with its per-head q_norm / k_norm) run through an engine that
owns paged caches per layer, [num_blocks, block_size, kv_heads, head_dim], filled only by apply_rope_and_cache_
(RoPE of q and k plus the cache write in one launch, computed mode from the model's own inv_freq), with a block
table per sequence (blocks handed out on demand from a shuffled free list, so the sequences' pages interleave)
and the slot mapping the engine computes. Attention reads each sequence's pages back (eager softmax attention,
as transformers' "eager" implementation computes it, with GQA). Everything else is the model's own modules.

Two prompts of different lengths are prefilled together (packed tokens), then decoded greedily for 8 steps, both
sequences in every step. The reference is transformers' own forward with a DynamicCache, one prompt at a time.
The logits of every step and the greedy tokens must match.
"""

import pytest
import torch

import rope_cuda

transformers = pytest.importorskip("transformers")
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEV = "cuda"

PROMPT_LENGTHS = (7, 11)
DECODE_STEPS = 8
BLOCK_SIZE = 4
NUM_BLOCKS = 12  # the two sequences need 4 + 5 blocks of 4 rows (15 and 19 tokens)
MODELS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen3": (Qwen3Config, Qwen3ForCausalLM)}


def tiny_model(name, dtype):
    config_cls, model_cls = MODELS[name]
    config = config_cls(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
                        rope_theta=10000.0, attn_implementation="eager")
    torch.manual_seed(0)
    model = model_cls(config)
    if name == "llama":
        # Sharper attention: with the default initialisation Llama's q.k scores are close to 0, attention is nearly
        # uniform and the logits hardly depend on the rotation (skipping RoPE altogether moved them by 2% only,
        # inside the bfloat16 bound below). Three times the q / k projections make that 27%. Qwen3's q_norm /
        # k_norm already give scores of order 1.
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.weight.mul_(3)
                layer.self_attn.k_proj.weight.mul_(3)
    return model.to(DEV, dtype).eval()


def prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


class PagedEngine:
    """Runs `model` token-packed over several sequences with its own paged KV caches.

    kv_cache_dtype "auto": caches in the model's dtype; "fp8": uint8 caches of FP8 E4M3 bytes written with
    `scale` (k and v), dequantized (bytes -> float8_e4m3fn -> float * scale) when attention reads them."""

    def __init__(self, model, kv_cache_dtype="auto", scale=1.0, num_blocks=NUM_BLOCKS, block_size=BLOCK_SIZE):
        self.model = model
        config = model.config
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.dtype = model.dtype
        self.kv_cache_dtype, self.scale, self.block_size = kv_cache_dtype, scale, block_size
        cache_dtype = self.dtype if kv_cache_dtype == "auto" else torch.uint8
        shape = (num_blocks, block_size, self.kv_heads, self.head_dim)
        self.caches = []
        for _ in model.model.layers:
            pair = tuple(torch.empty(shape, dtype=cache_dtype, device=DEV) for _ in range(2))
            for cache in pair:  # NaN everywhere (0x7F is NaN in FP8 E4M3): a row read before it is written shows
                if kv_cache_dtype == "auto":
                    cache.fill_(float("nan"))
                else:
                    cache.fill_(0x7F)
            self.caches.append(pair)
        rotary = model.model.rotary_emb
        # The frequencies transformers' own rotary module uses (it casts them to float32 itself: after
        # model.to(bfloat16) the buffer holds bfloat16 values).
        self.inv_freq = rotary.inv_freq.float().contiguous()
        self.attention_scaling = float(rotary.attention_scaling)
        self.free_blocks = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(2)).tolist()
        self.block_tables = {}  # sequence -> its blocks, in order
        self.lengths = {}  # sequence -> tokens in the cache

    def _slots(self, seq, start, count):
        table = self.block_tables.setdefault(seq, [])
        while len(table) * self.block_size < start + count:
            table.append(self.free_blocks.pop())
        size = self.block_size
        return [table[p // size] * size + p % size for p in range(start, start + count)]

    def _gather(self, cache, seq, length):
        """The sequence's first `length` cache rows [length, kv_heads, head_dim] in the model's dtype."""
        blocks = torch.tensor(self.block_tables[seq], device=DEV)
        rows = cache[blocks].reshape(-1, self.kv_heads, self.head_dim)[:length]
        if self.kv_cache_dtype != "auto":
            rows = (rows.view(torch.float8_e4m3fn).float() * self.scale).to(self.dtype)
        return rows

    def _attend(self, q, keys, values, q_positions, scaling):
        """Eager attention of q [n, heads, D] over keys / values [context, kv_heads, D]: a query at position p sees
        the keys at positions <= p (causal in a prefill, everything in a decode step)."""
        groups = self.heads // self.kv_heads
        keys = keys.repeat_interleave(groups, dim=1).transpose(0, 1)  # [heads, context, D]
        values = values.repeat_interleave(groups, dim=1).transpose(0, 1)
        scores = torch.matmul(q.transpose(0, 1), keys.transpose(1, 2)) * scaling  # [heads, n, context]
        future = torch.arange(keys.shape[1], device=DEV)[None, :] > q_positions[:, None]
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(probs, values).transpose(0, 1).reshape(q.shape[0], -1)  # [n, heads * D]

    @torch.no_grad()
    def step(self, requests):
        """requests: [(sequence, new token ids)]. Returns {sequence: logits [new tokens, vocab]}."""
        ids, positions, slots, spans = [], [], [], []
        for seq, tokens in requests:
            start = self.lengths.get(seq, 0)
            spans.append((seq, len(ids), len(tokens), start))
            ids += tokens
            positions += range(start, start + len(tokens))
            slots += self._slots(seq, start, len(tokens))
            self.lengths[seq] = start + len(tokens)
        count = len(ids)
        positions = torch.tensor(positions, device=DEV)
        slots = torch.tensor(slots, device=DEV)
        inner = self.model.model
        hidden = inner.embed_tokens(torch.tensor(ids, device=DEV))
        for layer, (k_cache, v_cache) in zip(inner.layers, self.caches):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            q = attn.q_proj(x).view(count, self.heads, self.head_dim)
            k = attn.k_proj(x).view(count, self.kv_heads, self.head_dim)
            v = attn.v_proj(x).view(count, self.kv_heads, self.head_dim)
            if hasattr(attn, "q_norm"):  # Qwen3: per-head RMSNorm before RoPE
                q, k = attn.q_norm(q), attn.k_norm(k)
            rope_cuda.apply_rope_and_cache_(q, k, v, k_cache, v_cache, slots, kv_cache_dtype=self.kv_cache_dtype,
                                            k_scale=self.scale, v_scale=self.scale, positions=positions,
                                            inv_freq=self.inv_freq, attention_scaling=self.attention_scaling)
            out = torch.empty(count, self.heads * self.head_dim, device=DEV, dtype=self.dtype)
            for seq, first, n, start in spans:
                keys = self._gather(k_cache, seq, start + n)
                values = self._gather(v_cache, seq, start + n)
                out[first:first + n] = self._attend(q[first:first + n], keys, values, positions[first:first + n],
                                                    attn.scaling)
            hidden = hidden + attn.o_proj(out)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        logits = self.model.lm_head(inner.norm(hidden))
        return {seq: logits[first:first + n] for seq, first, n, _ in spans}


def engine_generate(engine, prompt_ids, steps=DECODE_STEPS, forced=None):
    """Prefill of all prompts in one step, then `steps` decode steps with every sequence in each. Each step feeds
    the engine's own greedy token, or forced[seq][i] (teacher forcing). Returns per sequence the logits of every
    step (prefill: all its tokens) and the greedy tokens (one per step, steps + 1)."""
    out = engine.step(list(enumerate(prompt_ids)))
    logits = {s: [out[s]] for s in out}
    tokens = {s: [int(out[s][-1].argmax())] for s in out}
    for i in range(steps):
        feed = {s: (forced[s][i] if forced is not None else tokens[s][-1]) for s in out}
        out = engine.step([(s, [feed[s]]) for s in feed])
        for s in out:
            logits[s].append(out[s])
            tokens[s].append(int(out[s][-1].argmax()))
    return logits, tokens


@torch.no_grad()
def transformers_generate(model, prompt, steps=DECODE_STEPS, forced=None):
    """transformers' own forward with its DynamicCache, one prompt: prefill, then `steps` greedy decode steps."""
    cache = DynamicCache(config=model.config)
    out = model(input_ids=torch.tensor([prompt], device=DEV), past_key_values=cache, use_cache=True)
    logits = [out.logits[0]]
    tokens = [int(logits[-1][-1].argmax())]
    for i in range(steps):
        feed = forced[i] if forced is not None else tokens[-1]
        out = model(input_ids=torch.tensor([[feed]], device=DEV), past_key_values=cache, use_cache=True)
        logits.append(out.logits[0])
        tokens.append(int(logits[-1][-1].argmax()))
    return logits, tokens


def top2_margin(logits):
    top = logits[-1].float().topk(2).values
    return float(top[0] - top[1])


@pytest.mark.parametrize("name", list(MODELS))
def test_float32_engine_matches_transformers(name):
    model = tiny_model(name, torch.float32)
    prompt_ids = prompts()
    engine = PagedEngine(model)
    logits, tokens = engine_generate(engine, prompt_ids)
    for seq, prompt in enumerate(prompt_ids):
        ref_logits, ref_tokens = transformers_generate(model, prompt)
        for step, (a, e) in enumerate(zip(logits[seq], ref_logits)):
            assert a.shape == e.shape
            torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4, msg=lambda m: f"sequence {seq} step {step}: {m}")
            # the whole-model bound of test_hf_gpu.py's float32 logits
            assert (a - e).norm() / e.norm() < 1e-5, f"sequence {seq} step {step}"
        assert tokens[seq] == ref_tokens, (
            f"sequence {seq}: greedy tokens {tokens[seq]} vs transformers' {ref_tokens} (top-2 margins "
            f"{[round(top2_margin(x), 6) for x in ref_logits]})")
    # Each sequence used its own pages and nothing else: 4 and 5 blocks of 4 rows.
    assert sorted(len(t) for t in engine.block_tables.values()) == [4, 5]
    assert not set(engine.block_tables[0]) & set(engine.block_tables[1])


@pytest.mark.parametrize("name", list(MODELS))
def test_bfloat16_engine_matches_transformers(name):
    # bfloat16: transformers rotates in bfloat16 with bfloat16 cos / sin, the library in float32 rounded once, so
    # the logits agree at bfloat16's scale only (test_hf_gpu.py's whole-model bound). Both sides are fed
    # transformers' greedy tokens so that every step compares the same inputs; the engine's own greedy token must
    # agree wherever transformers' top-2 margin is clearly above that difference.
    model = tiny_model(name, torch.bfloat16)
    prompt_ids = prompts()
    refs = [transformers_generate(model, p) for p in prompt_ids]
    logits, tokens = engine_generate(PagedEngine(model), prompt_ids, forced=[r[1] for r in refs])
    for seq, (ref_logits, ref_tokens) in enumerate(refs):
        for step, (a, e) in enumerate(zip(logits[seq], ref_logits)):
            a, e = a.float(), e.float()
            assert (a - e).norm() / e.norm() < 3e-2, f"sequence {seq} step {step}"
            if top2_margin(e) > 4 * (a[-1] - e[-1]).abs().max():
                assert tokens[seq][step] == ref_tokens[step], f"sequence {seq} step {step}"


def test_fp8_cache_engine_tracks_the_float32_engine():
    # FP8 E4M3 caches are lossy (3 mantissa bits): the FP8 engine's logits follow the float32 engine's only
    # loosely. It is fed the float32 engine's tokens so that both see the same inputs at every step; its own greedy
    # token must agree wherever the float32 engine's top-2 margin exceeds twice the tolerance (a logits error below
    # the tolerance cannot flip those).
    model = tiny_model("llama", torch.float32)
    prompt_ids = prompts()
    exact_logits, exact_tokens = engine_generate(PagedEngine(model), prompt_ids)
    scale = 1.0 / 64  # |k| <= 2.5 and |v| <= 1 here, well below 448 / 64 = 7; values down to 2^-12 stay normal
    atol = 5e-2
    fp8_logits, fp8_tokens = engine_generate(PagedEngine(model, "fp8", scale), prompt_ids, forced=exact_tokens)
    decided = 0
    for seq in range(len(prompt_ids)):
        for step, (a, e) in enumerate(zip(fp8_logits[seq], exact_logits[seq])):
            assert torch.isfinite(a).all()
            assert (a - e).abs().max() < atol, f"sequence {seq} step {step}: {(a - e).abs().max():.3g}"
            if top2_margin(e) > 2 * atol:
                decided += 1
                assert fp8_tokens[seq][step] == exact_tokens[seq][step], f"sequence {seq} step {step}"
    assert decided >= DECODE_STEPS, "too few steps with a clear greedy token to compare"
    # and the FP8 bytes are not the float32 ones: the caches really are FP8
    assert not torch.equal(torch.cat(fp8_logits[0]), torch.cat(exact_logits[0]))
