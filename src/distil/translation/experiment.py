"""A translation experiment, end to end: pairs → vocabularies → teacher → students (data, word-level KD,
sequence-level KD, both) → BLEU / chrF / latency of every model → ``summary.json``.

Kim & Rush 2016, "Sequence-Level Knowledge Distillation" (EMNLP): a bidirectional-LSTM attention
teacher; one-direction LSTM students trained

* on the references alone (``data``, the baseline);
* with word-level KD (``word_kd``): ``α·T²·KL(p_t(·|y_<j, x)/T ‖ p_s(·|y_<j, x)/T) + (1−α)·NLL(y_j)`` at
  every reference position (padding masked; :mod:`distil.engine.seq2seq`);
* with sequence-level KD (``seq_kd``): NLL of the teacher's beam output ``ŷ`` (computed once, cached:
  :mod:`distil.translation.teacher_translations`);
* with both (``seq_word_kd``): word-level KD along ``ŷ``.

Either model may instead be a pre-norm Transformer encoder–decoder (``arch: transformer``, Vaswani et
al. 2017; :mod:`distil.models.seq2seq_transformer`): the methods read only logits and beam outputs, so
every teacher/student pair of archs works, and the export and the server drive either through the same
``encode`` / ``decode`` interface (:mod:`distil.models.seq2seq_encoded`).

Why not the classification run loop (:class:`distil.experiment.Experiment`): a seq2seq model takes two
inputs (source and target prefix) and is scored by decoding, not by a forward pass and an argmax; the
generic loop's teacher cache would hold ``N × T × V`` logits (11k sentences × 40 tokens × 2k subwords
= 3.5 GB). The run reuses the same layers instead: the run directory (:class:`~distil.session.RunDir`:
config.yaml, metrics.jsonl, weights, summary.json last and atomic), the trainer's optimizers and
schedules, the registered CE/KD losses on per-token rows (as taggers do), the teacher store.
"""

from __future__ import annotations

import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from distil.compress.seq2seq_export import OnnxSeq2Seq, export_seq2seq, seq2seq_parity
from distil.config.translation import TRANSLATION_METHODS, Seq2SeqConfig, TranslationConfig
from distil.data.text.parallel import ParallelData
from distil.engine.seq2seq import fit_seq2seq, token_nll
from distil.engine.trainer import FitResult
from distil.hardware import machine, resolve_device
from distil.losses import LOSSES
from distil.session.run_dir import RunDir
from distil.translation.scores import latency_ms, timing_sentences, translate_scored
from distil.translation.teacher_translations import teacher_targets
from distil.weights import file_sha256, load_weights, save_weights

SOURCE_TOKENIZER, TARGET_TOKENIZER = "source_tokenizer.json", "target_tokenizer.json"


def word_kd_terms(method: str, alpha: float, T: float) -> list:
    """The terms a method trains on: CE alone, or α·KD(T) + (1−α)·CE (word-level KD)."""
    if not TRANSLATION_METHODS[method][1]:
        return [LOSSES["CE"]() * 1.0]
    return [LOSSES["KD"](T=T) * alpha, LOSSES["CE"]() * (1.0 - alpha)]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class TranslationRun:
    """The steps of one translation experiment on one run directory (see the module doc)."""

    def __init__(self, config: TranslationConfig, out: str | Path, console: Console | None = None, command: str | None = None) -> None:
        self.config = config
        self.run_dir = RunDir(out)
        self.console = console or Console(stderr=True)
        self.device = resolve_device(config.device)
        self.command = command or shlex.join(["distil", *sys.argv[1:]])
        self.rows: list[dict[str, Any]] = []
        self.translations: dict[str, list[str]] = {}

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def fit(self, name: str, model: nn.Module, cfg: Seq2SeqConfig, data: ParallelData, targets=None, teacher: nn.Module | None = None, terms=None) -> FitResult:
        src, tgt = data.tensors["train"]
        tgt = targets if targets is not None else tgt
        val = tuple(t.to(self.device) for t in data.tensors["val"])

        def log(record) -> None:
            self.run_dir.log_epoch(name, record.as_dict())
            self.say(f"{name} epoch {record.epoch}/{cfg.epochs}: loss {record.loss:.4f} val nll {-record.val_accuracy:.4f} ({record.seconds:.1f} s)")

        return fit_seq2seq(model, (src.to(self.device), tgt.to(self.device)), val, terms or word_kd_terms("data", 0, 1), cfg.settings(), teacher=teacher, seed=self.config.seed, on_epoch=log)

    def record(self, name: str, role: str, method: str, model: nn.Module, cfg: Seq2SeqConfig, data: ParallelData, fit: FitResult | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Save the weights; BLEU/chrF greedy and beam, latency per sentence, tokens/s; a row of the table."""
        ev = self.config.evaluate
        path = save_weights(model, self.run_dir.weights(name))
        src, _ = data.tensors["test"]
        src = src.to(self.device)
        references = data.splits["test"].target
        model.eval()
        greedy_text, greedy = translate_scored(model, src, references, data.target_vocab, beam=1, alpha=ev.length_penalty, max_len=data.max_length)
        beam_text, beamed = translate_scored(model, src, references, data.target_vocab, beam=ev.beam, alpha=ev.length_penalty, max_len=data.max_length)
        sentences = timing_sentences(src, ev.latency_sentences)
        row = {
            "name": name, "role": role, "method": method, "arch": cfg.describe(),
            "params": count_params(model), "size_bytes": path.stat().st_size,
            "bleu": greedy["bleu"], "chrf": greedy["chrf"], "bleu_beam": beamed["bleu"], "chrf_beam": beamed["chrf"], "beam": ev.beam,
            "latency_ms_greedy": latency_ms(model, sentences, 1, ev.length_penalty, data.max_length),
            "latency_ms_beam": latency_ms(model, sentences, ev.beam, ev.length_penalty, data.max_length),
            "tokens_per_s": greedy["tokens_per_s"],
            "test_nll": round(token_nll(model, src, data.tensors["test"][1].to(self.device)), 4),
            "seed": self.config.seed,
            "best_epoch": fit.best_epoch if fit else 0, "epochs": len(fit.history) if fit else 0,
            "train_seconds": round(fit.train_seconds, 2) if fit else 0.0,
            "weights": path.name, "sha256": file_sha256(path), **(extra or {}),
        }
        self.translations[name] = greedy_text
        self.translations[f"{name} (beam {ev.beam})"] = beam_text
        self.rows.append(row)
        self.say(f"{name}: BLEU {row['bleu']:.2f} greedy / {row['bleu_beam']:.2f} beam {ev.beam}, chrF {row['chrf']:.2f}; {row['latency_ms_greedy']:.1f} ms greedy / {row['latency_ms_beam']:.1f} ms beam per sentence")
        return row

    def export(self, data: ParallelData) -> dict[str, Any] | None:
        """The served student as ONNX (encoder + decoder step) under DIR/onnx/NAME/, its greedy translations
        of test sentences compared with PyTorch's, and its latency per sentence in ONNX Runtime."""
        students = [r for r in self.rows if r["role"] == "student"]
        if not students:
            return None
        row = next((r for r in students if r["method"] == "seq_kd"), students[-1])
        ev = self.config.evaluate
        model = self.config.student.build(data.source_vocab.size, data.target_vocab.size, self.config.seed)  # type: ignore[attr-defined]
        load_weights(model, self.run_dir.weights(row["name"]))
        model.eval()
        src = data.tensors["test"][0]
        sentences = timing_sentences(src, ev.parity_sentences)
        batch = src[: ev.parity_sentences]
        folder = export_seq2seq(model, self.run_dir.path / "onnx" / row["name"], batch)[0].parent
        onnx = OnnxSeq2Seq(folder)
        check = seq2seq_parity(model, onnx, batch[:, : max(1, int((batch != 0).sum(1).max()))])
        alone = [seq2seq_parity(model, onnx, s) for s in sentences[:10]]
        out = {
            "model": row["name"], "files": [str(p.relative_to(self.run_dir.path)) for p in sorted(folder.glob("*.onnx"))],
            "parity": {**check.as_dict(), "alone_same_translation": round(sum(a.same_translation for a in alone) / len(alone), 4), "alone_max_abs_diff": max(a.max_abs_diff for a in alone)},
            "latency_ms_greedy_onnx": latency_ms(onnx, sentences, 1, ev.length_penalty, data.max_length),
            "latency_ms_greedy_torch": row["latency_ms_greedy"],
        }
        self.say(f"onnx: {row['name']} → {folder} (encoder + decoder step); {100 * check.same_translation:.0f} % of {check.sentences} test sentences translated as in PyTorch "
                 f"(max logit difference {check.max_abs_diff:.2e}); {out['latency_ms_greedy_onnx']:.2f} ms per sentence greedy")
        return out

    def run(self) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter()
        data = cfg.data.load(cfg.seed)
        sv, tv = data.source_vocab.size, data.target_vocab.size  # type: ignore[attr-defined]
        # Every model built (and the teacher's weights checked) before any training.
        teacher = cfg.teacher.build(sv, tv, cfg.seed)
        if cfg.teacher.weights:
            load_weights(teacher, cfg.teacher.weights)
        cfg.student.build(sv, tv, cfg.seed)
        self.run_dir.start(cfg.model_dump(mode="json"))
        data.source_vocab.save(self.run_dir.path / SOURCE_TOKENIZER)  # type: ignore[attr-defined]
        data.target_vocab.save(self.run_dir.path / TARGET_TOKENIZER)  # type: ignore[attr-defined]
        described = data.describe()
        self.say(f"data: {described['origin']} train {described['sizes']['train']} / val {described['sizes']['val']} / test {described['sizes']['test']} pairs; "
                 f"subwords {cfg.data.subwords} {sv} → {tv}; mean tokens {described['mean_tokens_train']}; device {self.device}")
        for split, notes in data.notes.items():
            if any(notes.values()):
                self.say(f"data: {split}: {notes['source_truncated']} source / {notes['target_truncated']} target sentences cut at {data.max_length} tokens; "
                         f"{notes['source_unknown']} / {notes['target_unknown']} tokens unknown to the vocabulary")
        teacher.to(self.device)
        if cfg.teacher.weights:
            self.record("teacher", "teacher", "loaded", teacher, cfg.teacher, data, None)
        else:
            result = self.fit("teacher", teacher, cfg.teacher, data)
            self.record("teacher", "teacher", "trained", teacher, cfg.teacher, data, result)
        targets, info = None, None
        for method in cfg.distill.methods:
            kind, word = TRANSLATION_METHODS[method]
            extra: dict[str, Any] = {}
            if kind == "teacher":
                if targets is None:
                    src = data.tensors["train"][0].to(self.device)
                    targets, info = teacher_targets(teacher, src, beam=cfg.distill.beam, alpha=cfg.evaluate.length_penalty, max_length=data.max_length)
                    self.say(f"sequence-level KD: teacher beam-{cfg.distill.beam} translations of {len(targets)} training sources " + ("read from the cache" if info["cached"] else f"in {info['seconds']:.0f} s (cached)"))
                extra["teacher_outputs"] = info
            if word:
                extra["word_kd"] = {"alpha": cfg.distill.alpha, "T": cfg.distill.T}
            name = f"student_{method}"
            student = cfg.student.build(sv, tv, cfg.seed).to(self.device)
            terms = word_kd_terms(method, cfg.distill.alpha, cfg.distill.T)
            result = self.fit(name, student, cfg.student, data, targets=targets if kind == "teacher" else None, teacher=teacher if word else None, terms=terms)
            self.record(name, "student", method, student, cfg.student, data, result, extra)
        exported = self.export(data) if cfg.evaluate.export else None
        test = data.splits["test"]
        shown = list(range(min(cfg.evaluate.examples, len(test))))
        summary = {
            "kind": "translation",
            "name": cfg.name,
            "dataset": described["origin"],
            "data": described,
            "seed": cfg.seed,
            "device": str(self.device),
            "command": self.command,
            "machine": machine(),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - started, 2),
            "tokenizers": {"source": SOURCE_TOKENIZER, "target": TARGET_TOKENIZER},
            "models": self.rows,
            **({"export": exported} if exported else {}),
            "examples": [
                {"ref": test.refs[i], "source": test.source[i], "reference": test.target[i], "translations": {k: v[i] for k, v in self.translations.items()}}
                for i in shown
            ],
        }
        self.run_dir.write_summary(summary)
        return summary


def run_translation(config: TranslationConfig, out: str | Path, console: Console | None = None, command: str | None = None) -> dict[str, Any]:
    """Run the translation experiment ``config`` into ``out``; returns the summary written to ``out/summary.json``."""
    return TranslationRun(config, out, console=console, command=command).run()
