"""Pretraining of the tiny backbone zoo (vlmlab.models.zoo): towers with SigLIP's loss, LMs on the suite's text."""
