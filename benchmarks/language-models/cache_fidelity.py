"""What the top-k teacher cache loses, per k: the teacher of configs/lm/kjv.yaml on 300 training blocks
(seeded draw) and the first 300 validation blocks.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/language-models/cache_fidelity.py TEACHER.safetensors [--k 32 64 128 256 512 1024]

Per k: the teacher's probability mass in its top k, how often the true next token is among them,
KL(teacher ‖ cached) per token (nats; the cached distribution is the top k plus one shared "rest" logit,
as the cache stores it), and the perplexity of the cached teacher against the exact one. Writes
cache_fidelity.json here.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from distil.config.lm import load_lm_config
from distil.engine.lm_teacher import truncation_loss
from distil.engine.teacher_sources import decode_logits, encode_logits
from distil.hardware import set_threads
from distil.lm_experiment import build, load_data
from distil.weights import load_weights

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parents[1] / "configs" / "lm" / "kjv.yaml"


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("teacher")
    parser.add_argument("--k", type=int, nargs="+", default=[32, 64, 128, 256, 512, 1024])
    parser.add_argument("--blocks", type=int, default=300)
    args = parser.parse_args()
    set_threads()
    config = load_lm_config(CONFIG, [f"teacher.weights={args.teacher}"])
    data = load_data(config)
    teacher = load_weights(build(config.teacher, data, config.seed), args.teacher).eval()
    draw = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[: args.blocks]
    rows = []
    for split, blocks in (("train", data.train[draw]), ("val", data.val[: args.blocks])):
        logits = torch.cat([teacher(blocks[i : i + 64, :-1]).float() for i in range(0, len(blocks), 64)]).reshape(-1, data.vocab_size)
        target = blocks[:, 1:].reshape(-1)
        exact_nll = float(-logits.log_softmax(-1).gather(-1, target[:, None]).mean())
        for k in args.k:
            enc = encode_logits(logits, k, 1.0)
            cached = decode_logits(enc["values"], enc.get("indices"), enc.get("rest"), data.vocab_size)
            kl, mass = truncation_loss(logits, cached, k)
            in_top = float((logits.topk(k, -1).indices == target[:, None]).any(-1).float().mean())
            cached_nll = float(-cached.log_softmax(-1).gather(-1, target[:, None]).mean())
            rows.append({"split": split, "k": k, "bytes_per_token": k * 4 + 2, "mass_kept": float(mass.mean()), "true_token_in_top_k": in_top,
                         "kl_to_exact": float(kl.mean()), "ppl_exact": math.exp(exact_nll), "ppl_cached": math.exp(cached_nll)})  # fmt: skip
            print(rows[-1], flush=True)
    (HERE / "cache_fidelity.json").write_text(json.dumps({"teacher": args.teacher, "blocks": args.blocks, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
