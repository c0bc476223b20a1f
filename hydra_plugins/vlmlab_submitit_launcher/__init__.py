"""Hydra launcher plugins: the submitit SLURM and local launchers, waiting for every job of a sweep."""
