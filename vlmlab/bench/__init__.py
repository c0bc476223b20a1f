"""`make bench` (`python -m vlmlab.bench`): vlmlab's training loop timed against a bare PyTorch loop; a stage of its
own above training, which it measures (the loops are in `__main__`)."""
