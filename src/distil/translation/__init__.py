"""Translation: sequence-to-sequence teachers and students, word- and sequence-level KD (Kim & Rush 2016).

:func:`run_translation` is what ``distil run`` calls for a config with ``kind: translation``.
"""

from distil.translation.experiment import run_translation

__all__ = ["run_translation"]
