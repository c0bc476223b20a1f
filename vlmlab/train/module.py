"""The LightningModule: answer-token loss, the optimizer and schedule of `optim` with a learning rate per component."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins import Precision
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import GradClipAlgorithmType
from omegaconf import DictConfig

from vlmlab.errors import DivergedError
from vlmlab.models.build import COMPONENTS
from vlmlab.models.vlm import VisionLanguageModel
from vlmlab.train.performance import fused_optimizer


class VLMTrainingModule(L.LightningModule):
    """Trains a VisionLanguageModel with the loss on answer tokens (the collator masks everything else)."""

    def __init__(self, model: VisionLanguageModel, optim: DictConfig, total_steps: int,
                 performance: DictConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.optim = optim
        self.total_steps = total_steps
        self.performance = performance
        # Checkpoints hold what training changes (on_save_checkpoint); the frozen weights come from the config.
        self.strict_loading = False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        output = self.model(**batch, **self._loss_normaliser(batch_idx))
        loss = output.loss
        if not torch.isfinite(loss):
            raise DivergedError(f"training loss is {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=False)
        if getattr(output, "aux_loss", None) is not None:  # a mixture-of-experts LM: its share is in the loss
            self.log("train/router_aux_loss", output.aux_loss, prog_bar=False)
        return loss

    def _loss_normaliser(self, batch_idx: int) -> dict[str, float]:
        """When a step's global batch is split (processes, accumulation): the loss of a micro-batch is its answer
        tokens' summed loss over the step's answer tokens, times the parts Lightning and DDP average over, so
        the step's gradient is that of one mean over the whole global batch, whatever the split. Unsplit
        steps keep the LM's own per-batch mean."""
        trainer = self._trainer  # None when a step is called by hand, outside a fit
        if trainer is None:
            return {}
        parts = trainer.world_size * trainer.accumulate_grad_batches
        if parts == 1 or trainer.datamodule is None or not hasattr(trainer.datamodule, "step_answer_tokens"):
            return {}
        step = batch_idx // trainer.accumulate_grad_batches
        tokens = trainer.datamodule.step_answer_tokens(self.current_epoch, step)
        return {"num_items_in_batch": tokens / parts}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.model(**batch).loss, batch_size=batch["input_ids"].shape[0])

    def parameter_groups(self) -> list[dict]:
        """One optimizer group per component and decay class, lr times `optim.lr_scale`; no decay on biases, norms."""
        groups = []
        scale = float(self.optim.get("lr_scale", 1.0))  # a config without it (an older record's) means 1
        for name in COMPONENTS:
            params = [p for p in getattr(self.model, name).parameters() if p.requires_grad]
            for decay in (True, False):
                chosen = [p for p in params if (p.ndim >= 2) == decay]
                if chosen:
                    groups.append({
                        "name": f"{name}{'' if decay else '/no_decay'}",
                        "params": chosen,
                        "lr": float(self.optim.lr[name]) * scale,
                        "weight_decay": float(self.optim.weight_decay) if decay else 0.0,
                    })
        return groups

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only the trainable weights: the frozen ones (a 7B LM) are rebuilt from the run's config and seed,
        or reloaded from the hub. FSDP's sharded checkpoints keep everything: each rank writes only its shard."""
        if isinstance(self.trainer.strategy, FSDPStrategy):
            return
        # Every name of a parameter (tied weights have two); buffers stay: small, and not always rebuilt alike.
        named = list(self.named_parameters(remove_duplicate=False))
        frozen = {name for name, param in named if not param.requires_grad}
        state = checkpoint["state_dict"]
        for key in frozen & state.keys():
            del state[key]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip as Lightning does, in the two cases where Lightning refuses to:
        - Under FSDP each rank holds a shard of every gradient, so the norm must be taken across ranks: the FSDP
          root computes it (Lightning's FSDP precision plugin refuses norm clipping outright).
        - Lightning's mixed-precision plugin refuses any fused optimizer, because under fp16 that kernel unscales
          the gradients itself. bf16 has no loss scaler and its gradients are the true ones, so they are clipped
          as full precision would clip them (trainer=gpu is bf16-mixed with fused AdamW). Under fp16 the refusal
          stands."""
        if not gradient_clip_val:
            return
        algorithm = GradClipAlgorithmType(gradient_clip_algorithm or GradClipAlgorithmType.NORM)
        strategy, plugin = self.trainer.strategy, self.trainer.precision_plugin
        if isinstance(strategy, FSDPStrategy) and algorithm is GradClipAlgorithmType.NORM:
            strategy.model.clip_grad_norm_(gradient_clip_val)
        elif getattr(plugin, "scaler", None) is None:
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> dict[str, Any]:
        """The optimizer of `optim.optimizer` over the parameter groups, stepped by `optim.schedule` every step."""
        # _convert_: plain lists (AdamW's betas) rather than ListConfigs in the optimizer's state and checkpoints.
        make_optimizer = instantiate(self.optim.optimizer, _convert_="all")
        optimizer = make_optimizer(self.parameter_groups(), **fused_optimizer(self.performance, self.device,
                                                                              make_optimizer))
        scheduler = instantiate(self.optim.schedule, _convert_="all")(optimizer, self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
