"""Shared by the text tests (run, serve, export): sentences that differ by one polar word, and a toy
grammar tagged with Penn Treebank tags."""

from __future__ import annotations

import random

POSITIVE = ["wonderful", "brilliant", "delightful", "moving", "superb", "charming", "excellent", "beautiful"]
NEGATIVE = ["dreadful", "boring", "awful", "tedious", "clumsy", "terrible", "dull", "lifeless"]
THINGS = ["film", "story", "cast", "script", "ending", "music", "movie", "plot"]


def polar_sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` sentences alternately positive and negative, each carrying one polar word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        word = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        rows.append((f"the {rng.choice(THINGS)} was {word} and the {rng.choice(THINGS)} {rng.choice(['too', 'as well', 'overall'])}", label))
    return rows


#: Words per tag; "unbelievably" is split into several word pieces by the MiniLM tokenizer.
LEXICON = {
    "DT": ["the", "a", "every", "this"],
    "JJ": ["big", "small", "quiet", "happy", "old", "unbelievably"],
    "NN": ["cat", "dog", "teacher", "student", "river", "city", "book"],
    "VBD": ["saw", "liked", "followed", "painted", "visited", "read", "crossed"],
    "RB": ["quickly", "often", "quietly", "rarely", "slowly"],
    "IN": ["near", "over", "with"],
}


def tagged_sentences(n: int, seed: int, phrases: int = 5) -> list[str]:
    """``n`` lines of ``word/TAG`` pairs: DT (JJ){0,3} NN VBD (DT NN)? (RB)? (IN DT NN){0,phrases} .

    With the default ``phrases`` lengths spread from 5 to ~30 words (what the export parity cases need).
    """
    rng = random.Random(seed)

    def pick(tag: str) -> str:
        return f"{rng.choice(LEXICON[tag])}/{tag}"

    lines = []
    for _ in range(n):
        words = [pick("DT")] + [pick("JJ") for _ in range(rng.randint(0, 3))] + [pick("NN"), pick("VBD")]
        if rng.random() < 0.5:
            words += [pick("DT"), pick("NN")]
        if rng.random() < 0.5:
            words.append(pick("RB"))
        for _ in range(rng.randint(0, phrases)):
            words += [pick("IN"), pick("DT"), pick("NN")]
        lines.append(" ".join(words + ["./."]))
    return lines
