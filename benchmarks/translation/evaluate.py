"""Score the models of translation runs on the test split, and time them interleaved.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/translation/evaluate.py RUN_DIR [RUN_DIR ...] [--sentences 30] [--rounds 3]

For every model of every run (rebuilt from the run's config.yaml and weights; the data rebuilt with
the run's seed): BLEU and chrF (sacrebleu, detokenized) with greedy and beam-5 decoding, target
tokens/s (greedy, batches of 64), and the latency of one test sentence translated alone (batch 1),
greedy and beam 5 — measured round-robin over the models, sentence by sentence, so that CPU contention
from other processes falls on all of them alike (median over sentences × rounds). The runs' exported
ONNX students (encoder + decoder step) are timed too. Writes evaluation.json and evaluation.md here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from distil.compress.seq2seq_export import OnnxSeq2Seq, export_seq2seq, seq2seq_parity
from distil.config.translation import TranslationConfig
from distil.hardware import machine, set_threads
from distil.models.seq2seq_decode import decode
from distil.translation.scores import timing_sentences, translate_scored
from distil.weights import load_weights

HERE = Path(__file__).resolve().parent


def exports_of(run: Path, export: str | None, first: Path) -> list[str]:
    """The models of ``run`` named in ``--export``: ``NAME`` (a model of the first run) or ``RUN/NAME``."""
    names = [e for e in (export or "").split(",") if e]
    return [e.split("/", 1)[1] for e in names if "/" in e and e.split("/", 1)[0] == run.name] + ([e for e in names if "/" not in e] if run == first else [])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--sentences", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="evaluation")
    parser.add_argument("--export", default=None, help="also export these models (comma-separated; NAME of the first run or RUN/NAME) as ONNX (encoder + decoder step), check it on the test split and time it")
    args = parser.parse_args()
    set_threads()
    models, scores, data = {}, {}, None
    test_pairs: dict[str, int] = {}
    sentences: dict[str, list] = {}  # per run: its own test sentences in its own vocabulary (runs of other seeds learn other BPEs)
    for run in map(Path, args.runs):
        cfg = TranslationConfig.model_validate(yaml.safe_load((run / "config.yaml").read_text()))
        data = cfg.data.load(cfg.seed)
        src, references = data.tensors["test"][0], data.splits["test"].target
        test_pairs[run.name] = len(data.splits["test"])
        sentences[run.name] = timing_sentences(src, args.sentences)
        summary = json.loads((run / "summary.json").read_text())
        for row in summary["models"]:
            model = cfg.build_model(row, data.source_vocab.size, data.target_vocab.size)
            load_weights(model, run / row["weights"])
            name = f"{run.name}/{row['name']}"
            models[name] = model.eval()
            _, greedy = translate_scored(model, src, references, data.target_vocab, beam=1, alpha=cfg.evaluate.length_penalty, max_len=cfg.data.max_length)
            _, beam = translate_scored(model, src, references, data.target_vocab, beam=5, alpha=cfg.evaluate.length_penalty, max_len=cfg.data.max_length)
            scores[name] = {"method": row["method"], "arch": row["arch"], "params": row["params"], "size_bytes": row["size_bytes"], "train_seconds": row["train_seconds"],
                            "bleu": greedy["bleu"], "chrf": greedy["chrf"], "bleu_beam5": beam["bleu"], "chrf_beam5": beam["chrf"], "tokens_per_s": greedy["tokens_per_s"]}  # fmt: skip
            print(name, scores[name], flush=True)
        for exported in exports_of(run, args.export, Path(args.runs[0])):
            name = f"{run.name}/{exported}"
            folder = export_seq2seq(models[name], run / "onnx" / exported, src[:50])[0].parent
            onnx = OnnxSeq2Seq(folder)
            batched = seq2seq_parity(models[name], onnx, src)
            alone = [seq2seq_parity(models[name], onnx, s) for s in timing_sentences(src, 20)]
            parity = {**batched.as_dict(), "alone_same_translation": sum(a.same_translation for a in alone) / len(alone), "alone_max_abs_diff": max(a.max_abs_diff for a in alone)}
            models[f"{name} [onnx]"] = onnx
            scores[f"{name} [onnx]"] = {"method": "onnx", "parity": parity}
            print("onnx", parity, flush=True)
    assert sentences and data is not None
    times: dict[tuple[str, int], list[float]] = {(name, beam): [] for name in models for beam in (1, 5)}
    with torch.inference_mode():
        for name, model in models.items():  # warm-up
            decode(model, sentences[name.split("/", 1)[0]][0], beam=5, max_len=64)
        for _ in range(args.rounds):
            for i in range(min(len(v) for v in sentences.values())):
                for name, model in models.items():
                    s = sentences[name.split("/", 1)[0]][i]
                    for beam in (1, 5):
                        start = time.perf_counter()
                        decode(model, s, beam=beam, max_len=64)
                        times[(name, beam)].append(1000 * (time.perf_counter() - start))
    for name in models:
        scores[name]["ms_greedy"] = round(statistics.median(times[(name, 1)]), 2)
        scores[name]["ms_beam5"] = round(statistics.median(times[(name, 5)]), 2)
    result = {"command": "benchmarks/translation/evaluate.py " + " ".join(args.runs), "test_pairs": test_pairs, "latency_sentences": min(len(v) for v in sentences.values()),
              "rounds": args.rounds, "machine": machine(), "models": scores}  # fmt: skip
    (HERE / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| model | method | params | BLEU greedy | BLEU beam 5 | chrF greedy | chrF beam 5 | ms/sent greedy | ms/sent beam 5 | tok/s greedy | train s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in scores.items():
        cells = [r.get(k) for k in ("bleu", "bleu_beam5", "chrf", "chrf_beam5")]
        lines.append(f"| {name} | {r['method']} | {r['params']:,} | " if r.get("params") else f"| {name} | {r['method']} | (same) | ")
        lines[-1] += " | ".join("–" if c is None else f"{c:.2f}" for c in cells) + f" | {r['ms_greedy']:.2f} | {r['ms_beam5']:.2f} | " + (f"{r['tokens_per_s']:,.0f} | {r['train_seconds']:.0f} |" if "tokens_per_s" in r else "– | – |")
    if len(args.runs) > 1:
        result["mean"], result["goal"] = over_runs(scores)
        lines += ["", *mean_table(result["mean"], result["goal"])]
        (HERE / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (HERE / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


MEAN_FIELDS = ("bleu", "bleu_beam5", "chrf", "chrf_beam5", "ms_greedy", "ms_beam5")


def over_runs(scores: dict[str, dict]) -> tuple[dict[str, dict], dict]:
    """Each model name's mean and sample std over the runs that have it (ONNX rows left out), and the
    issue's goal per run: ``student_seq_kd`` greedy within 1 BLEU of the teacher's beam 5, at ≥ 10×
    lower latency per sentence (the same for the best student, ``student_seq_word_kd``)."""
    groups: dict[str, list[dict]] = {}
    for name, row in scores.items():
        if row["method"] != "onnx":
            groups.setdefault(name.split("/", 1)[1], []).append({"run": name.split("/", 1)[0], **row})
    for model in [m for m, rows in groups.items() if len({r["params"] for r in rows}) > 1]:  # not one model: never averaged together
        for row in groups.pop(model):
            groups.setdefault(f"{model} ({row['params']:,} params)", []).append(row)
    mean = {}
    for model, rows in groups.items():
        mean[model] = {"runs": len(rows), "params": rows[0]["params"]}
        for f in MEAN_FIELDS:
            values = [r[f] for r in rows]
            mean[model][f] = statistics.mean(values)
            mean[model][f + "_std"] = statistics.stdev(values) if len(values) > 1 else None
    goal = {}
    teachers = {r["run"]: r for r in groups.get("teacher", [])}
    for student in ("student_seq_kd", "student_seq_word_kd"):
        per_run = []
        for r in groups.get(student, []):
            t = teachers.get(r["run"])
            if t is not None:
                per_run.append({"run": r["run"], "bleu_gap": round(t["bleu_beam5"] - r["bleu"], 2), "latency_ratio": round(t["ms_beam5"] / r["ms_greedy"], 2)})
        if per_run:
            met = [p["bleu_gap"] <= 1.0 and p["latency_ratio"] >= 10.0 for p in per_run]
            goal[student] = {"per_run": per_run, "met_runs": sum(met), "runs": len(met)}
    return mean, goal


def mean_table(mean: dict[str, dict], goal: dict) -> list[str]:
    def cell(row: dict, f: str) -> str:
        return f"{row[f]:.2f}" + (f" ± {row[f + '_std']:.2f}" if row[f + "_std"] is not None else "")

    lines = ["Mean ± std over the runs:", "", "| model | runs | params | BLEU greedy | BLEU beam 5 | chrF greedy | chrF beam 5 | ms/sent greedy | ms/sent beam 5 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {m} | {r['runs']} | {r['params']:,} | " + " | ".join(cell(r, f) for f in MEAN_FIELDS) + " |" for m, r in mean.items()]
    for student, g in goal.items():
        runs = "; ".join(f"{p['run']}: {p['bleu_gap']:+.2f} BLEU under the teacher's beam 5, {p['latency_ratio']:.1f}× faster" for p in g["per_run"])
        lines += ["", f"Goal ({student} greedy within 1 BLEU of the teacher's beam 5, at ≥ 10× lower latency): met in {g['met_runs']} of {g['runs']} runs ({runs})."]
    return lines


if __name__ == "__main__":
    main()
