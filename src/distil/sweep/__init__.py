"""``distil sweep``: hyper-parameter search with Optuna over a space declared in the config's ``sweep:``.

``space`` holds the config section (imported by ``distil.config``, so it imports no optuna);
``run`` holds the study, the trials and the results.
"""
