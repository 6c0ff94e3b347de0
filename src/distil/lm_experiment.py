"""``distil run`` on a ``kind: lm`` config: a causal LM teacher distilled into smaller students, one per method.

The steps, top to bottom (each a function below):

1. data — :func:`distil.data.text.lm.load_lm_text`: whole books held out, BPE learnt on the training books;
2. models — every model is built (and the teacher's weights checked) before the run directory is touched;
   teacher, student and tokenizer must share one vocabulary;
3. teacher — loaded (``teacher.weights``, ``hf:PATH``) or trained on the data;
4. teacher outputs — the top-k token-logit cache (methods with a token loss) and the teacher's samples
   (sequence-level KD), both in the teacher store;
5. one student per method, all from the same initial weights and batch order (``seed``), by
   :func:`~distil.engine.lm_trainer.fit_lm`;
6. record — perplexity on the validation and held-out books, mean per-token KL(teacher ‖ student) on the
   held-out books, parameters, generation speed (greedy, batch 1 and 32; sampling at batch 1) and the
   continuations of fixed prompts; ``summary.json`` last.

Why not the classification run loop (:mod:`distil.experiment`): its unit is an indexed sample with one
teacher output row cached exactly and a validation accuracy that picks the best epoch; an LM step may
replace its batch by the student's own samples (on-policy), needs per-token top-k teacher logits (exact
ones would be ``N·L·V`` floats) and is measured by perplexity and generation speed. Extending that loop
would add branches on "generative" to the trainer, the cache planner, the measure and the table; this
module instead reuses the layers below it (run directory, teacher store, losses, models, hardware).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from distil.compress.lm_export import OnnxLM, export_lm_onnx
from distil.config.lm import LMExperimentConfig
from distil.data.text.lm import LMData, load_lm_text
from distil.engine.lm_teacher import TokenLogitCache, teacher_samples
from distil.engine.lm_trainer import LMMethod, fit_lm, generation_speed, mean_token_kl, perplexity, token_nll
from distil.engine.teacher_store import TeacherStore
from distil.hardware import machine, resolve_device
from distil.models.causal_lm import HFCausalLM, build_causal_lm, check_same_vocabulary
from distil.models.generate import generate
from distil.models.gpt import GPT
from distil.models.registry import count_parameters
from distil.pretrained import is_pretrained_spec
from distil.session.run_dir import RunDir
from distil.weights import atomic_write, load_weights, save_weights


def load_data(config: LMExperimentConfig) -> LMData:
    d = config.data
    return load_lm_text(
        d.source,
        context_length=d.context_length,
        test_books=d.test_books,
        val_books=d.val_books,
        books=d.books,
        max_verses=d.max_verses,
        tokenizer=d.tokenizer,
        vocab_size=d.vocab_size,
        seed=config.seed,
    )


def build(section: Any, data: LMData, seed: int) -> nn.Module:
    return build_causal_lm(section.model, vocab_size=data.vocab_size, context_length=data.context_length, seed=seed, **section.kwargs)


def run_lm_experiment(config: LMExperimentConfig, out_dir: str | Path, console: Console | None = None) -> dict[str, Any]:
    """Run the experiment into ``out_dir``; returns the summary (also ``out_dir/summary.json``)."""
    console = console or Console(stderr=True)
    device = resolve_device(config.device)
    data = load_data(config)
    teacher = build(config.teacher, data, config.seed)
    if config.teacher.weights:
        load_weights(teacher, config.teacher.weights)
    methods = [m.method() for m in config.methods]
    students = {m.name: build(config.student, data, config.seed) for m in methods}
    for student in students.values():
        check_same_vocabulary(teacher, student)
    run = RunDir(out_dir)
    run.start(config.model_dump(mode="json"))
    tokenizer_file = (data.tokenizer.folder / "tokenizer.json").read_bytes()
    atomic_write(run.path / "tokenizer.json", lambda tmp: tmp.write_bytes(tokenizer_file))  # the served model's tokenizer
    train, val, test = (t.to(device) for t in (data.train, data.val, data.test))
    teacher.to(device)
    gen = config.generation
    log = lambda name: lambda record: run.log_epoch(name, record)
    evaluate = lambda model: {"val_ppl": perplexity(model, val)}
    fits: dict[str, dict[str, Any]] = {}
    if not config.teacher.weights and not is_pretrained_spec(config.teacher.model):
        console.print(f"teacher: training {config.teacher.model} ({count_parameters(teacher):,} parameters)", highlight=False)
        settings = config.teacher.train.settings(gen.prompt_tokens, gen.sample_temperature)
        fits["teacher"] = fit_lm(teacher, subset(train, config.teacher.train.blocks, config.seed), LMMethod("data"), settings, seed=config.seed, log=log("teacher"), evaluate=evaluate)
    if not (is_pretrained_spec(config.teacher.model) and "teacher" not in fits):  # a folder as given is its own record
        save_model(teacher, run.path, "teacher")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    store = TeacherStore(config.cache.dir)
    text = subset(train, config.student.train.blocks, config.seed)
    outputs: dict[str, Any] = {}
    samples = None
    if any(m.sequence_level for m in methods):
        started = time.perf_counter()
        seq = config.sequence_level
        samples, from_disk = teacher_samples(
            teacher, text, n=seq.samples, prompt_tokens=gen.prompt_tokens, temperature=seq.temperature, seed=config.seed, store=store
        )
        samples = samples.to(device)  # from disk they come on the CPU: the samples' cache key and the teacher need them here
        outputs["teacher_samples"] = {"blocks": seq.samples, "temperature": seq.temperature, "from_disk": from_disk, "seconds": time.perf_counter() - started}
    # one top-k cache per text a token loss reads: the training blocks, and the teacher's samples when a
    # sequence-level method also has a token loss (Kim & Rush's seq-KD + word-KD); a cache is indexed by
    # the positions of its own text.
    caches: dict[bool, TokenLogitCache] = {}
    for sequence_level, source, label in ((False, text, "token_logits"), (True, samples, "sample_token_logits")):
        if source is not None and any(m.loss and m.sequence_level == sequence_level for m in methods):
            started = time.perf_counter()
            caches[sequence_level] = TokenLogitCache(teacher, source, vocab_size=data.vocab_size, top_k=config.cache.top_k, store=store)
            outputs[label] = {**caches[sequence_level].describe(), "seconds": time.perf_counter() - started}
            warn_if_lossy(caches[sequence_level], console)
    settings = config.student.train.settings(gen.prompt_tokens, gen.sample_temperature)
    for method in methods:
        student = students[method.name].to(device)
        student_text = samples if method.sequence_level else text
        console.print(f"student {method.name}: {method.description or method.loss}", highlight=False)
        fits[method.name] = fit_lm(
            student,
            student_text,
            method,
            settings,
            seed=config.seed,
            teacher=teacher,
            teacher_logits=(lambda index, x, cache=caches[method.sequence_level]: cache[index]) if method.loss else None,
            log=log(method.name),
            evaluate=evaluate,
        )
        save_model(student, run.path, f"student_{method.name}")
    models = {"teacher": teacher, **{f"student_{m.name}": students[m.name] for m in methods}}
    if config.onnx:
        (run.path / "onnx").mkdir(exist_ok=True)
    rows = [
        record(name, model, teacher, data, val, test, config, fits.get(name.removeprefix("student_")), methods, run.path)
        for name, model in models.items()
    ]
    teacher_nll = rows[0]["test_nll"]
    scratch = next((r for r in rows if r["method"] == "data"), None)
    for row in rows:
        if scratch is not None and row is not scratch and row["role"] == "student":
            gap = scratch["test_nll"] - teacher_nll
            row["gap_recovered"] = (scratch["test_nll"] - row["test_nll"]) / gap if gap > 0 else None
        row["speedup_b1"] = row["tokens_per_s"].get("greedy_b1", 0) / max(1e-9, rows[0]["tokens_per_s"].get("greedy_b1", 0))
    summary = {
        "kind": "lm",
        "name": config.name,
        "seed": config.seed,
        "device": str(device),
        "machine": machine(),
        "data": {**data.describe(), "student_blocks": int(text.shape[0])},
        "teacher_outputs": outputs,
        "methods": {m.name: {k: v for k, v in asdict(m).items() if k != "name"} for m in methods},
        "prompts": list(gen.prompts),
        "models": rows,
    }
    run.write_summary(summary)
    return summary


#: Above this mean KL(teacher ‖ cached) per token, a run says that the cache is not the teacher.
LOSSY_CACHE_NATS = 0.05


def warn_if_lossy(cache: TokenLogitCache, console: Console) -> None:
    """Say when the top-k truncation changes the teacher a student learns from by more than
    :data:`LOSSY_CACHE_NATS` per token (the measured KL and the mass kept)."""
    kl, mass = cache.kl_to_exact, cache.mass_kept
    if kl is not None and mass is not None and kl > LOSSY_CACHE_NATS:
        console.print(
            f"[yellow]warning:[/] the top-{cache.top_k} teacher cache keeps {mass:.1%} of the teacher's probability mass; "
            f"KL(teacher ‖ cached) = {kl:.3f} nats per token, so the students learn from a weaker teacher. "
            "Raise cache.top_k (each kept logit costs 4 bytes per token).",
            highlight=False,
        )


def subset(blocks: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    """``n`` training blocks drawn with ``seed`` (all of them when ``n`` is None or not smaller)."""
    if n is None or n >= blocks.shape[0]:
        return blocks
    chosen = torch.randperm(blocks.shape[0], generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return blocks[chosen.to(blocks.device)]


def save_model(model: nn.Module, run_dir: Path, name: str) -> Path:
    """``DIR/NAME.safetensors`` for a zoo model; a Hugging Face one as its own folder ``DIR/NAME/`` (its tied
    embeddings share memory, which a plain safetensors state dict cannot hold)."""
    if isinstance(model, HFCausalLM):
        model.model.save_pretrained(run_dir / name)
        return run_dir / name
    return save_weights(model, run_dir / f"{name}.safetensors")


def record(
    name: str,
    model: nn.Module,
    teacher: nn.Module,
    data: LMData,
    val: torch.Tensor,
    test: torch.Tensor,
    config: LMExperimentConfig,
    fit: dict[str, Any] | None,
    methods: list[LMMethod],
    run_dir: Path,
) -> dict[str, Any]:
    """One row of the table: perplexities, KL to the teacher, size, generation speed, samples."""
    import math

    gen = config.generation
    total, count = token_nll(model, test)
    method = next((m for m in methods if f"student_{m.name}" == name), None)
    speed_prompts = test[:, : gen.prompt_tokens]
    new = min(gen.speed_new_tokens, data.context_length - gen.prompt_tokens)
    speeds = {}
    for b in gen.speed_batches:
        prompts = speed_prompts[torch.arange(b, device=test.device) % speed_prompts.shape[0]]
        speeds[f"greedy_b{b}"] = generation_speed(model, prompts, new, repeats=gen.speed_repeats)
    speeds["sample_b1"] = generation_speed(model, speed_prompts[:1], new, temperature=1.0, repeats=gen.speed_repeats)
    if config.onnx and isinstance(model, GPT):
        onnx = OnnxLM(export_lm_onnx(model, run_dir / "onnx" / f"{name}.onnx"))
        speeds["onnx_greedy_b1"] = generation_speed(onnx, speed_prompts[:1].cpu(), new, repeats=gen.speed_repeats)
        model.to(test.device)
    return {
        "name": name,
        "role": "teacher" if name == "teacher" else "student",
        "method": "teacher" if method is None else method.name,
        "arch": config.teacher.model if method is None else config.student.model,
        "params": count_parameters(model),
        "val_ppl": perplexity(model, val),
        "test_ppl": math.exp(total / max(1, count)),
        "test_nll": total / max(1, count),
        "test_tokens": count,
        "kl_to_teacher": 0.0 if model is teacher else mean_token_kl(teacher, model, test),
        "tokens_per_s": speeds,
        "samples": continuations(model, data, gen),
        **({"train": fit} if fit else {}),
    }


def continuations(model: nn.Module, data: LMData, gen: Any) -> list[str]:
    """Each fixed prompt's continuation (greedy unless ``generation.temperature``), the new text only."""
    out = []
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(0)
    for prompt in gen.prompts:
        ids = torch.tensor([data.tokenizer.encode([prompt])[0][-data.context_length + 1 :]], device=device)
        new = min(gen.max_new_tokens, data.context_length - ids.shape[1])
        tokens = generate(model, ids, new, temperature=gen.temperature, generator=generator)
        out.append(data.tokenizer.decode(tokens[0, ids.shape[1] :]))
    return out
