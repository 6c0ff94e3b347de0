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

Several teachers (``strategy: {name: ensemble, teachers: [...]}``, as the image configs declare an
ensemble; Hinton et al. 2015 §3): every member is trained or loaded and measured as its own row, then
the ensemble (:class:`~distil.models.seq2seq_ensemble.Seq2SeqEnsemble`: per target token the mean of the
members' distributions) is measured as one more row, and the students learn from it — word-level KD
from its averaged distributions, sequence-level KD from its own beam search (cached under a key of
every member's weights) — as ``student_ensemble_<method>`` (and from ``teacher`` alone too with
``baseline: true``).

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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from distil.compress.seq2seq_export import OnnxSeq2Seq, export_seq2seq, seq2seq_parity
from distil.config.translation import TRANSLATION_METHODS, Seq2SeqConfig, TranslationConfig, TranslationEnsembleOptions, served_student
from distil.data.text.parallel import ParallelData
from distil.data.text.subwords import Vocab
from distil.engine.seq2seq import fit_seq2seq, token_nll
from distil.engine.trainer import FitResult
from distil.errors import ConfigError, ModelError
from distil.hardware import machine, resolve_device
from distil.losses import LOSSES
from distil.models.seq2seq_ensemble import Seq2SeqEnsemble
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


@dataclass(frozen=True)
class TeacherRole:
    """What students learn from: the single teacher or the ensemble. ``infix`` names its students
    (``student_<infix><method>``); ``decoder`` is searched for sequence-level KD targets; ``word`` gives
    the soft targets of word-level KD (an ensemble at the KD temperature)."""

    infix: str
    decoder: nn.Module
    word: nn.Module


def member_field(name: str) -> str:
    """The config field of a teacher by its row name: ``teacher``, ``teacher_2`` → ``strategy.teachers.1``."""
    return "teacher" if name == "teacher" else f"strategy.teachers.{int(name.rsplit('_', 1)[1]) - 1}"


def check_tokenizers(field: str, weights: str | Path, data: ParallelData) -> None:
    """Weights saved in a translation run's folder were trained on that run's tokenizers: they must be this
    run's (the same subword ids), or every id would mean another subword. Weights without tokenizer
    files beside them are checked by shape only (:func:`load_weights`)."""
    folder = Path(weights).parent
    for side, file, vocab in (("source", SOURCE_TOKENIZER, data.source_vocab), ("target", TARGET_TOKENIZER, data.target_vocab)):
        if (folder / file).is_file() and Vocab.from_file(folder / file).sha256 != vocab.sha256:  # type: ignore[attr-defined]
            raise ConfigError(
                f"{field}.weights: {weights} was trained with the {side} tokenizer {folder / file}, which differs from this run's "
                f"(learnt on this run's training split): every teacher must share the run's tokenizers — give it weights from a run "
                "with the same data section and seed, or train it here (no weights)"
            )


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

    def fit(self, name: str, model: nn.Module, cfg: Seq2SeqConfig, data: ParallelData, targets=None, teacher: nn.Module | None = None, terms=None, seed: int | None = None) -> FitResult:
        src, tgt = data.tensors["train"]
        tgt = targets if targets is not None else tgt
        val = tuple(t.to(self.device) for t in data.tensors["val"])

        def log(record) -> None:
            self.run_dir.log_epoch(name, record.as_dict())
            self.say(f"{name} epoch {record.epoch}/{cfg.epochs}: loss {record.loss:.4f} val nll {-record.val_accuracy:.4f} ({record.seconds:.1f} s)")

        return fit_seq2seq(model, (src.to(self.device), tgt.to(self.device)), val, terms or word_kd_terms("data", 0, 1), cfg.settings(), teacher=teacher, seed=self.config.seed if seed is None else seed, on_epoch=log)

    def record(self, name: str, role: str, method: str, model: nn.Module, arch: str, data: ParallelData, fit: FitResult | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
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
            "name": name, "role": role, "method": method, "arch": arch,
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
        row = served_student(self.rows)
        if row is None:
            return None
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

    def build_teachers(self, data: ParallelData) -> list[tuple[str, Seq2SeqConfig, int, nn.Module]]:
        """Every teacher ``(name, config, seed, model)`` built, and loaded weights checked against the run's
        tokenizers and shapes, before anything is written."""
        sv, tv = data.source_vocab.size, data.target_vocab.size  # type: ignore[attr-defined]
        built = []
        for name, cfg, seed in self.config.teacher_members():
            model = cfg.build(sv, tv, seed)
            if cfg.weights:
                field = member_field(name)
                check_tokenizers(field, cfg.weights, data)
                try:
                    load_weights(model, cfg.weights)
                except ModelError as err:
                    raise ModelError(f"{field}.weights ({cfg.describe()}, vocabularies {sv} → {tv} subwords): {err}") from None
            built.append((name, cfg, seed, model))
        return built

    def teacher_roles(self, members: list[tuple[str, Seq2SeqConfig, int, nn.Module]], data: ParallelData) -> list[TeacherRole]:
        """The single teacher, or the ensemble of every member (measured here as the ``teacher_ensemble`` row)
        and, with ``baseline``, the single teacher too."""
        cfg, teacher = self.config, members[0][3]
        single = TeacherRole("", teacher, teacher)
        if not isinstance(cfg.strategy, TranslationEnsembleOptions):
            return [single]
        opts = cfg.strategy
        ensemble = Seq2SeqEnsemble([m for *_, m in members], opts.weights, opts.combine).to(self.device)
        arch = f"ensemble({', '.join(c.describe() for _, c, _, _ in members)})"
        info = {"members": [n for n, *_ in members], "weights": [round(w, 6) for w in ensemble.member_weights.tolist()], "combine": opts.combine}
        self.record("teacher_ensemble", "ensemble", f"mean of {len(members)} ({opts.combine})", ensemble, arch, data, None, {"ensemble": info})
        role = TeacherRole("ensemble_", ensemble, ensemble.at_temperature(cfg.distill.T))
        return [single, role] if opts.baseline else [role]

    def train_students(self, roles: list[TeacherRole], data: ParallelData) -> None:
        """Every method's student of every teacher role (the data-only student, taught by none, once); the
        beam outputs of each role computed (or read from the cache) once, for every method that needs them."""
        cfg = self.config
        sv, tv = data.source_vocab.size, data.target_vocab.size  # type: ignore[attr-defined]
        beams: dict[str, tuple[Any, dict[str, Any]]] = {}  # role infix -> its beam outputs on the training sources
        for method in cfg.distill.methods:
            kind, word = TRANSLATION_METHODS[method]
            for role in roles if kind == "teacher" or word else [None]:
                infix = role.infix if role else ""
                extra: dict[str, Any] = {}
                targets = None
                if role and kind == "teacher":
                    if infix not in beams:
                        src = data.tensors["train"][0].to(self.device)
                        beams[infix] = teacher_targets(role.decoder, src, beam=cfg.distill.beam, alpha=cfg.evaluate.length_penalty, max_length=data.max_length)
                        info = beams[infix][1]
                        self.say(f"sequence-level KD: {'the ensemble' if infix else 'teacher'} beam-{cfg.distill.beam} translations of {len(beams[infix][0])} training sources "
                                 + ("read from the cache" if info["cached"] else f"in {info['seconds']:.0f} s (cached)"))
                    targets, extra["teacher_outputs"] = beams[infix]
                if word:
                    extra["word_kd"] = {"alpha": cfg.distill.alpha, "T": cfg.distill.T}
                student = cfg.student.build(sv, tv, cfg.seed).to(self.device)
                terms = word_kd_terms(method, cfg.distill.alpha, cfg.distill.T)
                result = self.fit(f"student_{infix}{method}", student, cfg.student, data, targets=targets, teacher=role.word if role and word else None, terms=terms)
                label = f"{infix.rstrip('_')}→{method}" if infix else method
                self.record(f"student_{infix}{method}", "student", label, student, cfg.student.describe(), data, result, extra)

    def run(self) -> dict[str, Any]:
        cfg = self.config
        started = time.perf_counter()
        data = cfg.data.load(cfg.seed)
        sv, tv = data.source_vocab.size, data.target_vocab.size  # type: ignore[attr-defined]
        # Every model built (and the teachers' weights checked) before any training.
        members = self.build_teachers(data)
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
        for name, member_cfg, seed, model in members:
            model.to(self.device)
            result = None if member_cfg.weights else self.fit(name, model, member_cfg, data, seed=seed)
            self.record(name, "teacher", "loaded" if member_cfg.weights else "trained", model, member_cfg.describe(), data, result, {"seed": seed})
        self.train_students(self.teacher_roles(members, data), data)
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
            "strategy": cfg.strategy.name,
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
