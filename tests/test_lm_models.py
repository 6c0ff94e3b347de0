"""Causal LMs: the gpt zoo model (causal mask, KV cache, tied embeddings), batched generation, a Hugging Face
causal LM folder, and the vocabulary checks between teacher, student and tokenizer."""

import pytest
import torch

from distil.errors import ModelError
from distil.models.causal_lm import build_causal_lm, check_same_vocabulary
from distil.models.generate import generate
from distil.weights import load_weights, save_weights


def tiny(vocab=40, length=12, seed=0, **kw):
    return build_causal_lm("gpt", vocab_size=vocab, context_length=length, seed=seed, **{"width": 16, "depth": 2, "heads": 2, **kw}).eval()


def test_causal_mask_future_tokens_do_not_change_earlier_logits():
    model = tiny()
    x = torch.randint(1, 40, (2, 10))
    y = x.clone()
    y[:, 6:] = torch.randint(1, 40, (2, 4))
    assert torch.allclose(model(x)[:, :6], model(y)[:, :6], atol=1e-6)
    assert not torch.allclose(model(x)[:, 6:], model(y)[:, 6:])


def test_kv_cache_steps_give_the_full_forward():
    model = tiny()
    x = torch.randint(1, 40, (3, 11))
    a, past = model.step(x[:, :5])
    b, past = model.step(x[:, 5:6], past)
    c, _ = model.step(x[:, 6:], past)  # several new tokens against a cache
    assert torch.allclose(torch.cat([a, b, c], 1), model(x), atol=1e-5)


def test_tied_embeddings_one_matrix_in_the_file(tmp_path):
    model = tiny()
    names = list(model.state_dict())
    assert "embedding.weight" in names and not any("head" in n or n.startswith("fc") for n in names)
    save_weights(model, tmp_path / "m.safetensors")
    other = load_weights(tiny(seed=1), tmp_path / "m.safetensors")
    x = torch.randint(1, 40, (1, 5))
    assert torch.equal(other(x), model(x))


def test_generate_greedy_is_the_argmax_chain_and_sampling_is_seeded():
    model = tiny()
    prompts = torch.randint(1, 40, (4, 3))
    out = generate(model, prompts, 6)
    assert out.shape == (4, 9) and torch.equal(out[:, :3], prompts)
    manual = prompts
    for _ in range(6):  # no cache: the whole prefix each time
        manual = torch.cat([manual, model(manual)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, manual)
    draw = lambda seed: generate(model, prompts, 6, temperature=1.0, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))


def test_generate_refuses_more_than_the_context():
    model = tiny(length=12)
    generate(model, torch.ones(1, 4, dtype=torch.long), 9)  # 4 + 9 − 1 = 12 positions: fits
    with pytest.raises(ModelError, match="context of 12"):
        generate(model, torch.ones(1, 4, dtype=torch.long), 10)


def test_vocabularies_must_match():
    with pytest.raises(ModelError, match="teacher 40 tokens, student 50"):
        check_same_vocabulary(tiny(40), tiny(50))
    with pytest.raises(ModelError, match="width 30 is not divisible by heads 4"):
        build_causal_lm("gpt", vocab_size=40, context_length=8, width=30, heads=4)


def test_hf_causal_lm_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "lm")
    model = build_causal_lm(f"hf:{tmp_path / 'lm'}", vocab_size=40, context_length=16).eval()
    x = torch.randint(1, 40, (2, 7))
    a, past = model.step(x[:, :4])
    b, _ = model.step(x[:, 4:], past)
    assert torch.allclose(torch.cat([a, b], 1), model(x), atol=1e-5)
    assert generate(model, x[:, :3], 5).shape == (2, 8)
    check_same_vocabulary(model, tiny(40))
    with pytest.raises(ModelError, match="predicts 40 tokens but the tokenizer has 41"):
        build_causal_lm(f"hf:{tmp_path / 'lm'}", vocab_size=41, context_length=16)
    with pytest.raises(ModelError, match="16 positions, fewer than the data's context_length 32"):
        build_causal_lm(f"hf:{tmp_path / 'lm'}", vocab_size=40, context_length=32)
