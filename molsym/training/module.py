"""The LightningModule: loss, EMA, metrics in physical units, optimiser and LR schedule."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from molsym import keys
from molsym.models.compiled import compile_model
from molsym.training.ema import ExponentialMovingAverage
from molsym.training.energy_shift import EpochShiftFit, refit_energy_shift
from molsym.training.losses import Loss
from molsym.training.metrics import ErrorAccumulator, flat_metrics

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., object]

#: The ways the per-element energy shifts train (``MolsymModule(energy_shift=...)``).
ENERGY_SHIFT_MODES = ("trained", "refit", "fixed")
#: Parameters never decayed: the per-element energy shifts (hundreds of eV) and scales.
NO_WEIGHT_DECAY = ("atomic_energy_shift", "atomic_energy_scale")


def parameter_groups(model: nn.Module, weight_decay: bool = True) -> list[dict]:
    """The optimizer's parameter groups. Without ``weight_decay``: one group of all
    parameters (``model.parameters()`` order, as checkpoints of optimizers without decay
    expect). With it, the per-element energy shifts and scales go in a second group with
    ``weight_decay=0``: decoupled decay would pull a -600 eV shift towards 0 at every step,
    and the energy term would have to fight it. Frozen parameters (``requires_grad=False``,
    ``finetune.freeze``) are left out."""
    if not weight_decay:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    plain = [p for n, p in named if n.split(".")[-1] not in NO_WEIGHT_DECAY]
    kept = [p for n, p in named if n.split(".")[-1] in NO_WEIGHT_DECAY]
    groups = [{"params": plain}] if plain else []
    if kept:
        groups.append({"params": kept, "weight_decay": 0.0})
    return groups


def _predict(model: nn.Module, batch, compute_forces: bool, compute_stress: bool) -> dict:
    from molsym.models import predict_batch

    return predict_batch(model, batch, compute_forces=compute_forces,
                         compute_stress=compute_stress)


class MolsymModule(pl.LightningModule):
    """Trains a molsym model (``forward(z, pos, ...) -> dict``) on labelled PyG batches.

    Validation, test, checkpoint selection and the deployed model use the EMA weights; the
    raw weights stay in the checkpoint too, so a resumed run continues exactly.

    Args:
        model: a molsym model (constructor args = its config).
        loss: the weighted loss (default: :class:`Loss` with unit weights).
        optimizer: ``params -> Optimizer`` (Hydra ``_partial_: true``); default Adam(1e-3, fused).
        scheduler: ``optimizer -> scheduler`` or None. ``ReduceLROnPlateau`` steps each
            epoch on ``val/loss``; any other steps every optimiser step and gets
            ``total_steps`` from the trainer when its ``total_steps`` is None.
        ema_decay: decay of the weight EMA (0: no averaging).
        compute_forces: predict forces (default: when the model's ``outputs`` name forces).
        compute_stress: predict stress (default: when the model's ``outputs`` name stress).
        compile: run the model through ``torch.compile`` (:class:`~molsym.models.compiled.
            CompiledModel`; forces, loss gradients and validation in compiled graphs). The
            first training and the first validation batch compile (about 30 s on a CPU); if
            compiling fails (e.g. no C++ compiler), a warning is logged and training goes on
            eagerly.
        energy_shift: how the per-element energy shifts train: ``"trained"`` (by the
            optimizer, as every weight; the default, as before), ``"refit"`` (not by the
            optimizer: once an epoch by the least-squares correction of that epoch's own
            predictions, :class:`~molsym.training.energy_shift.EpochShiftFit`) or
            ``"fixed"`` (kept at their initial values). Pinned shifts (isolated-atom
            energies) stay pinned whatever this says.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Loss | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        ema_decay: float = 0.99,
        compute_forces: bool | None = None,
        compute_stress: bool | None = None,
        compile: bool = False,
        energy_shift: str = "trained",
    ):
        super().__init__()
        if energy_shift not in ENERGY_SHIFT_MODES:
            raise ValueError(f"energy_shift must be one of {ENERGY_SHIFT_MODES}, "
                             f"got {energy_shift!r}")
        self.model = model
        shift = getattr(model, "atomic_energy_shift", None)
        trainable = shift is not None and shift.requires_grad
        if energy_shift != "trained" and trainable:
            shift.requires_grad_(False)  # before the EMA and the optimizer see it
        self.shift_fit = (EpochShiftFit(shift.shape[0])
                          if energy_shift == "refit" and trainable else None)
        self.loss_fn = loss if loss is not None else Loss()
        self.optimizer_factory = optimizer or functools.partial(
            torch.optim.Adam, lr=1e-3, fused=True
        )
        self.scheduler_factory = scheduler
        self.ema = ExponentialMovingAverage(model, decay=ema_decay)
        outputs = set(getattr(model, "outputs", []) or [])
        self.compute_forces = (keys.FORCES in outputs) if compute_forces is None else compute_forces
        self.compute_stress = (keys.STRESS in outputs) if compute_stress is None else compute_stress
        self.errors = {"val": ErrorAccumulator(), "test": ErrorAccumulator()}
        self.results: dict[str, dict] = {}
        # the epoch's batch-size weighted training-loss sums (see _accumulate_train_losses)
        self._train_sums: dict[str, torch.Tensor] = {}
        self._train_count = 0
        # not a submodule: checkpoints keep the plain model's parameter names
        self.__dict__["_compiled"] = compile_model(model) if compile else None

    # --- steps ---------------------------------------------------------------------------
    def forward(self, batch) -> dict[str, torch.Tensor]:
        """Model outputs for a PyG batch (energy (B,), forces (N,3), ...)."""
        if self._compiled is not None:
            try:
                return _predict(self._compiled, batch, self.compute_forces, self.compute_stress)
            except torch._dynamo.exc.BackendCompilerFailed as exc:  # e.g. no C++ compiler
                log.warning("torch.compile failed, training goes on eagerly: %s",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self.__dict__["_compiled"] = None
        return _predict(self.model, batch, self.compute_forces, self.compute_stress)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        pred = self(batch)
        loss, terms = self.loss_fn(pred, batch)
        self._accumulate_train_losses(loss, terms, int(batch.num_graphs))
        if self.shift_fit is not None and keys.ENERGY in pred and keys.ENERGY in batch:
            self.shift_fit.add(pred[keys.ENERGY], batch[keys.ENERGY],
                               self.model.species_index(batch[keys.ATOMIC_NUMBERS]), batch.batch)
        trainer = self._trainer  # None when called outside a fit
        if trainer is not None and trainer.is_last_batch:
            self._log_train_losses()
        return loss

    # --- epoch means of the training losses ----------------------------------------------
    # Summed here and logged once per epoch: three ``self.log`` calls per step cost about
    # 0.5 ms each in Lightning (10-15 % of a compiled CPU step). The same numbers as
    # ``self.log(..., on_epoch=True, batch_size=B, sync_dist=True)``: the batch-size weighted
    # mean over all steps (and ranks) of the epoch. Logged from the last batch, so callbacks'
    # ``on_train_epoch_end`` (the epoch line) sees them; an epoch cut short (max_steps,
    # max_time) logs them in ``on_train_epoch_end``.
    def _accumulate_train_losses(self, loss: torch.Tensor, terms: dict[str, torch.Tensor],
                                 batch_size: int) -> None:
        sums = self._train_sums
        for name, value in {"loss": loss, **{f"loss_{k}": v for k, v in terms.items()}}.items():
            weighted = value.detach() * batch_size  # as Lightning: in the loss's dtype
            sums[name] = weighted if name not in sums else sums[name] + weighted
        self._train_count += batch_size

    def _log_train_losses(self) -> None:
        sums, count = self._train_sums, self._train_count
        self._train_sums, self._train_count = {}, 0
        if not sums:
            return
        names = list(sums)
        first = sums[names[0]]
        totals = self._reduce_sum(torch.stack([sums[n] for n in names] + [
            torch.tensor(float(count), dtype=first.dtype, device=first.device)]))
        for name, total in zip(names, totals[:-1], strict=True):
            # already summed over ranks: nothing left to sync
            self.log(f"train/{name}", total / totals[-1], on_step=False, on_epoch=True,
                     prog_bar=name == "loss", batch_size=1)

    def on_train_epoch_end(self) -> None:
        self._log_train_losses()  # an epoch that ended before its last batch
        if self.shift_fit is not None:
            self._apply_shift_fit()

    @torch.no_grad()
    def _apply_shift_fit(self) -> None:
        """Add the epoch's least-squares shift correction to the raw and the EMA shifts (the
        raw weights made the predictions; the EMA's shifts follow them as a frozen value)."""
        delta = self.shift_fit.solve(self._reduce_sum)
        if delta is None or not bool(torch.isfinite(delta).all()):
            return
        shift = self.model.atomic_energy_shift
        shift.add_(delta.to(shift))
        shadow = self.ema.shadow_of(self.model, shift)
        shadow.add_(delta.to(shadow))

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer) -> None:
        """``optimizer.zero_grad(set_to_none=True)`` without its torch.compile guard (a
        dynamo-disable context on every call: 0.2 ms a step once a compiled model runs)."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.model)

    def _eval_step(self, batch, stage: str) -> torch.Tensor:
        with torch.enable_grad():  # forces are gradients, also in validation
            pred = self(batch)
        pred = {k: v.detach() for k, v in pred.items()}
        loss, _ = self.loss_fn(pred, batch)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val",
                 batch_size=int(batch.num_graphs), sync_dist=True)
        self.errors[stage].update(pred, batch)
        return loss

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    # --- EMA swaps and epoch metrics -----------------------------------------------------
    def _start_eval(self, stage: str) -> None:
        self.ema._swap(self.model)
        self.errors[stage].reset()

    def _end_eval(self, stage: str) -> None:
        metrics = self.errors[stage].compute(reduce=self._reduce_sum)
        self.results[stage] = metrics
        flat = flat_metrics(metrics, stage)
        if flat:
            show = {f"{stage}/energy_mae_meV", f"{stage}/forces_mae_meV_per_Angstrom"}
            # identical on every rank already; sync_dist only averages equal numbers
            self.log_dict({k: v for k, v in flat.items() if k not in show}, sync_dist=True)
            self.log_dict({k: v for k, v in flat.items() if k in show}, prog_bar=stage == "val",
                          sync_dist=True)
        self.ema._swap(self.model)

    def _reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.trainer is None or self.trainer.world_size == 1:
            return t
        return self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum").cpu()

    def on_train_start(self) -> None:
        if self._compiled is not None and self.trainer.is_global_zero:
            print("compiling (about a minute on a CPU)...", flush=True)

    def on_validation_epoch_start(self) -> None:
        if self.shift_fit is not None:  # this epoch's correction before it is validated
            self._apply_shift_fit()
        self._start_eval("val")

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    def on_test_epoch_start(self) -> None:
        self._start_eval("test")

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")

    # --- optimiser ----------------------------------------------------------------------
    def configure_optimizers(self):
        decay = float(getattr(self.optimizer_factory, "keywords", {}).get("weight_decay", 0.0))
        optimizer = self.optimizer_factory(parameter_groups(self.model, decay != 0.0))
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        keywords = getattr(self.scheduler_factory, "keywords", {})
        if "total_steps" in keywords and keywords["total_steps"] is None:
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config = {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch"}
        else:
            config = {"scheduler": scheduler, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": config}

    def refit_energy_shift(self, graphs) -> dict | None:
        """Least-squares refit of the EMA model's per-element energy shifts on ``graphs``
        (:func:`molsym.training.energy_shift.refit_energy_shift`); the raw weights keep theirs."""
        with self.ema.average_parameters(self.model):
            return refit_energy_shift(self.model, graphs)

    def averaged_model(self) -> nn.Module:
        """The model with the EMA weights copied in (modifies ``self.model``)."""
        self.ema.copy_to(self.model)
        return self.model
