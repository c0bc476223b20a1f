"""Per-arm hyperparameter tuning (`vlmlab tune AXIS`): an Optuna study per arm on a short budget, whose best
values the sweep then trains each arm at, so that an ablation does not favour the arm one learning rate suits.

Light on import: the sweep reads best.json through `vlmlab.tune.best` without loading Optuna.
"""
