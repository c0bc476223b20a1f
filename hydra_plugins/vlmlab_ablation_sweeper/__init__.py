"""Hydra sweeper plugin that expands a vlmlab ablation file into jobs (Hydra finds plugins in `hydra_plugins`)."""
