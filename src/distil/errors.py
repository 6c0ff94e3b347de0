"""User-facing errors.

Everything a user can get wrong (a config field, a data file, a model name, a checkpoint) raises a
:class:`DistilError` whose message says what was wrong, where, and what was expected. The CLI turns
it into one line on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations


class DistilError(Exception):
    """An error caused by the user's input, with a message meant to be read by that user."""


class ConfigError(DistilError):
    """A config field is missing, unknown or has the wrong type or value."""


class DataError(DistilError):
    """A dataset is missing, corrupt or not of the expected form."""


class ModelError(DistilError):
    """A model name does not exist, a factory fails, or weights do not fit a model."""


class CheckpointError(DistilError):
    """A run's checkpoint is corrupt (its hash does not match) or does not fit the fit it should resume."""
