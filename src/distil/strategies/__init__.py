"""Training strategies: ensembles, specialists, mutual learning, self-distillation, assistant chains,
unlabeled transfer sets, frozen-backbone transfer — each a configuration of the one engine.

A strategy is registered by name (:mod:`distil.strategies.registry`) with a ``prepare`` function that
checks everything it needs before any training and returns the function that trains; that one calls
the experiment's ordinary ``fit``/``record`` steps with other teachers, students or data.
"""
