"""Feedback for the soak test's version swap: Fashion-MNIST test images captured as `distil serve --feedback`
captures them (raw scale, ids), a share corrected with their true labels (as POST /feedback stores them).

    PYTHONPATH=src python benchmarks/serve/make_feedback.py RUN FEEDBACK_DIR [--n 2000] [--corrected 0.2]

Then `distil loop COPY_OF_RUN --feedback FEEDBACK_DIR --epochs 1` makes the version the soak test swaps in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from distil.data import load_dataset
    from distil.serve import feedback_writer, load_models

    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--corrected", type=float, default=0.2)
    args = parser.parse_args()
    model = load_models(args.run, "torch")[0]
    data = load_dataset("fashion_mnist", val_size=5000, seed=0)
    x, y = data.test.x[: args.n].numpy(), data.test.y[: args.n].numpy()  # normalized, as the server holds them
    writer = feedback_writer(model, args.out, max_samples=args.n)
    ids = writer.add(x, model.backend.predict(x).argmax(1))
    writer.flush()
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ids), int(args.corrected * len(ids)), replace=False):
        writer.correct(ids[i], model.class_names[int(y[i])])
    print(f"{len(ids)} inputs, {int(args.corrected * len(ids))} corrected → {args.out}")


if __name__ == "__main__":
    main()
