"""``distil loop``: deploy → feedback → distil again, promoted only when it is not worse (see feedback_loop.py)."""

from distil.loop.feedback_loop import LoopResult, run_loop

__all__ = ["LoopResult", "run_loop"]
