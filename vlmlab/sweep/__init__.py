"""An ablation before it runs: its file (spec and schema), its tuning space, the run identity, and the plan that
composes and checks every (arm, seed) config. Running the plan is `vlmlab.launch`."""
