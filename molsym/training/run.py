"""One training run: config -> data -> statistics -> model -> Lightning -> files in ``out``.

What a run leaves in its directory ``out``::

    checkpoints/last.ckpt, checkpoints/best-*.ckpt   Lightning checkpoints (raw + EMA weights)
    model.pt        deploy file (EMA weights of the best checkpoint; molsym.deploy)
    config.yaml     the resolved config;  splits.json  split indices;  statistics.json
    metrics.json    test metrics {target: {"mae", "rmse", "unit"}}
    logs/metrics.csv   per-epoch losses and validation metrics
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from molsym import keys
from molsym.atomic import write_text_atomic
from molsym.dtypes import resolve_dtype
from molsym.elements import element_names, missing_elements
from molsym.errors import ConfigError, MolsymError, TrainingDiverged
from molsym.training.callbacks import (
    AtomicCheckpointIO,
    EpochSeededShuffle,
    FiniteGuard,
    first_nonfinite,
)
from molsym.training.logs import quiet_lightning
from molsym.training.metrics import format_table
from molsym.training.resume import check_run_dir, check_state_dict, read_checkpoint, resume_config

log = logging.getLogger(__name__)


def build(node: Any, what: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with its errors turned into one-line ConfigErrors."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, MolsymError):
            raise cause from None
        text = str(cause if cause is not None else exc).strip().splitlines()
        first = text[0] if text else type(exc).__name__
        raise ConfigError(f"cannot build {what}: {first}") from None


def set_precision_switches(tf32: bool) -> None:
    """TF32 matmuls/convolutions on Ampere+ GPUs (no effect on CPU)."""
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def _graph_elements(graphs) -> set[int]:
    return {int(z) for g in graphs for z in g[keys.ATOMIC_NUMBERS].unique().tolist()}


def check_elements(dm, model_elements: list[int] | None, stats: dict) -> None:
    """Every element of every split must be known to the model (and the training data)."""
    known = set(model_elements) if model_elements else set(stats["elements"])
    for split in ("train", "val", "test"):
        ds = dm.datasets.get(split)
        missing = missing_elements(ds.elements_bound(), known) if ds is not None else []
        if missing:  # the bound is the whole store's: look at this split's graphs
            missing = missing_elements(_graph_elements(ds), known)
        if missing:
            source = dm.test_path if split == "test" and dm.test_path else dm.path
            names = element_names(missing)
            whose = "model.elements" if model_elements else "the training split"
            raise ConfigError(
                f"{source}: {split} structures contain element(s) {names} (Z={missing}) that "
                f"{whose} ({sorted(known)}) does not cover"
            )


def check_validation_split(cfg: DictConfig, dm) -> None:
    """An empty validation split is a config error when a callback or the scheduler watches a
    ``val/`` metric (the defaults do: best checkpoint, early stopping, plateau scheduler)."""
    if len(dm.datasets["val"]) > 0:
        return
    watchers = [f"callbacks.{name}" for name, cb in (cfg.get("callbacks") or {}).items()
                if cb is not None and str(cb.get("monitor") or "").startswith("val/")]
    scheduler = cfg.get("scheduler")
    if scheduler is not None and "Plateau" in str(scheduler.get("_target_", "")):
        watchers.append("scheduler (ReduceLROnPlateau on val/loss)")
    if watchers:
        raise ConfigError(
            f"{dm.path}: the validation split is empty (data.num_val=0, or a split file "
            f"without 'val' indices), but {', '.join(watchers)} watch validation metrics; set "
            "data.num_val (a count or a fraction, e.g. 0.05) or give the split file 'val' indices"
        )


def check_neighbours(dm, stats: dict, model_cfg: DictConfig) -> None:
    """A cutoff that leaves every atom without a neighbour is a config error (the model would
    divide its neighbour sums by an average of 0)."""
    if stats["avg_num_neighbors"] <= 0 and model_cfg.get("avg_num_neighbors") is None:
        raise ConfigError(
            f"cutoff={dm.cutoff:g}: no atom of the training set has a neighbour within "
            f"{dm.cutoff:g} Angstrom; bonds are about 1-1.5 Angstrom long, so use a larger "
            "cutoff (the default is 5.0)")


#: Model sizes that must be at least 1 (0 gives a model without layers, channels or radial
#: functions: a traceback deep in the network, or a model that learns nothing, silently).
POSITIVE_MODEL_SIZES = ("num_channels", "num_layers", "num_radial", "radial_hidden",
                        "readout_hidden")


def check_model_sizes(model_cfg: DictConfig) -> None:
    """``model.num_channels=0`` and the like are one-line ConfigErrors."""
    for name in POSITIVE_MODEL_SIZES:
        value = model_cfg.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 1:
            raise ConfigError(f"model.{name} must be at least 1, got {value}")
    l_max = model_cfg.get("l_max")
    if isinstance(l_max, int | float) and l_max < 0:
        raise ConfigError(f"model.l_max must be 0 or more, got {l_max}")


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """``trainer=gpu`` where torch sees no CUDA GPU: say what to do instead."""
    accelerator = str(trainer_cfg.get("accelerator") or "").lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but torch {torch.__version__} sees no CUDA GPU; "
            "train on the CPU with trainer=cpu (the default), or run where a GPU and a CUDA "
            "build of torch are")


def warn_energy_reference(stats: dict) -> None:
    """Log which elements the training compositions cannot tell apart (their reference
    energies are a minimum-norm guess; energies of other compositions are meaningless)."""
    from ase.data import chemical_symbols

    ref = stats.get("energy_reference")
    if not ref or ref["determined"]:
        return
    names = [chemical_symbols[z] for z in ref["undetermined_elements"]]
    log.warning(
        "the per-element reference energies of %s cannot be separated: the %d training "
        "composition(s) span rank %d of %d elements, so only their combinations in the "
        "training compositions are known; energies of other compositions will be wrong "
        "(recorded in model.pt metadata['energy_reference']; give "
        "data.isolated_atom_energies_path or more varied compositions to fix it)",
        names, stats["num_graphs"], len(ref["compositions"]), len(ref["elements"]))


def model_kwargs(model_cfg: DictConfig, stats: dict) -> dict[str, Any]:
    """Constructor arguments that the data set decides: every one the config leaves null.

    elements, atomic_energies (eV, aligned with elements), avg_num_neighbors, energy_scale
    (force RMS, else the std of the energy residual), property_mean/std of scalar targets and
    closest_pairs (the shortest distance of each element pair, Angstrom).
    """
    try:
        cls = get_class(model_cfg["_target_"])
    except Exception as exc:  # noqa: BLE001 - hydra wraps import errors in varied types
        raise ConfigError(f"model._target_: cannot import {model_cfg['_target_']!r}") from exc
    params = inspect.signature(cls.__init__).parameters
    outputs = list(model_cfg.get("outputs") or [])
    elements = list(model_cfg.get("elements") or stats["elements"])
    e0 = dict(zip(stats["elements"], stats["atomic_energies"] or [], strict=False))
    scale = stats["forces_rms"] or stats["energy_residual_std"] or 1.0
    props = [o for o in outputs if o in stats["target_mean"] and o != keys.ENERGY]
    found = {
        "elements": elements,
        "atomic_energies": [float(e0.get(z, 0.0)) for z in elements] if e0 else None,
        "avg_num_neighbors": stats["avg_num_neighbors"],
        "energy_scale": float(scale) if scale > 0 else 1.0,
        "property_mean": {p: stats["target_mean"][p] for p in props},
        "property_std": {p: stats["target_std"][p] or 1.0 for p in props},
        "closest_pairs": stats.get("closest_pairs") or None,
    }
    return {k: v for k, v in found.items()
            if k in params and model_cfg.get(k) is None and v is not None}


def _callbacks(cfg: DictConfig, out: Path) -> list[pl.Callback]:
    callbacks = [FiniteGuard(), EpochSeededShuffle(cfg.seed)]
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None:
            continue
        extra = {}
        if node.get("_target_", "").endswith("ModelCheckpoint") and node.get("dirpath") is None:
            extra["dirpath"] = str(out / "checkpoints")
        callbacks.append(build(node, f"callback {name}", **extra))
    return callbacks


CSV_LOGGERS = ("CSVLogger", "HistoryCSVLogger")


def _loggers(cfg: DictConfig, out: Path, resuming: bool) -> list:
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        extra = {}
        if resuming and str(node.get("_target_", "")).rsplit(".", 1)[-1] in CSV_LOGGERS:
            # continue logs/metrics.csv (Lightning's CSVLogger deletes it); also for runs
            # whose saved config names Lightning's logger
            extra = {"_target_": "molsym.training.resume.HistoryCSVLogger", "keep_history": True}
        # a save_dir in the config is relative to the run dir
        save_dir = out / str(node.save_dir) if node.get("save_dir") else out
        loggers.append(build(node, f"logger {name}", save_dir=str(save_dir), **extra))
    return loggers


def _best_checkpoint(trainer: pl.Trainer) -> str | None:
    ckpt = trainer.checkpoint_callback
    best = getattr(ckpt, "best_model_path", "") if ckpt is not None else ""
    return best if best and Path(best).is_file() else None


def _write_outputs_before_fit(cfg: DictConfig, out: Path, dm, stats: dict) -> None:
    write_text_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_text_atomic(out / "statistics.json", json.dumps(stats, indent=2))
    dm.splits.save(out / "splits.json")  # reusable as data.split_file


def train(cfg: DictConfig, out: str | Path, overrides: list[str] | None = None
          ) -> dict[str, Any]:
    """Run the training described by ``cfg`` (the composed ``train.yaml``) into ``out``.

    With ``ckpt_path`` set, the run of that checkpoint is resumed with its own config
    (:func:`molsym.training.resume.resume_config`; ``overrides``, the command line, say which
    keys the user set; None: all of ``cfg`` is compared with the run's config). A folder
    ``out`` that holds another experiment's outputs is refused.

    ``ensemble.size=K`` > 1 trains K members and deploys their committee
    (:mod:`molsym.training.ensemble_run`).

    Returns ``{"model": path of model.pt, "metrics": test metrics, "best_checkpoint": ...}``.

    Raises:
        ConfigError / InputError: bad config or data, with one line naming the cause.
    """
    # Force-trained models produce float32 denormals in the double backward (e.g. high powers
    # of the cutoff envelope near r_c); on x86 CPUs with 2+ OpenMP threads they made training
    # steps ~50x slower (measured: 3.5 vs 197 conf/s, aspirin batch 5). Flushing them to zero
    # changes nothing above 1e-38. Process-wide state, so it is restored afterwards (the
    # default, off), as is the thread count.
    from molsym.training.ensemble_run import ensemble_size, train_ensemble

    if cfg.get("init_from"):
        from molsym.training.finetune import adopt_architecture

        cfg = adopt_architecture(cfg, overrides)  # the file's architecture, checked
    if ensemble_size(cfg) > 1:
        return train_ensemble(cfg, out, lambda member_cfg, member_out: train(member_cfg,
                                                                              member_out))
    threads = torch.get_num_threads()
    torch.set_flush_denormal(True)
    try:
        return _train(cfg, out, overrides)
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def _train(cfg: DictConfig, out: str | Path, overrides: list[str] | None) -> dict[str, Any]:
    out = Path(out).resolve()
    quiet_lightning()
    OmegaConf.resolve(cfg)  # fail early (and once) on missing ``???`` values
    ckpt_path, ckpt = cfg.get("ckpt_path"), None
    if ckpt_path is not None:
        ckpt = read_checkpoint(ckpt_path)  # data only, checked before any data is read
        cfg = resume_config(cfg, ckpt_path, overrides)
        ckpt_path = cfg.ckpt_path
    check_run_dir(cfg, out)
    check_model_sizes(cfg.model)  # before any data is read
    check_accelerator(cfg.trainer)
    set_precision_switches(bool(cfg.get("tf32", False)))
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)

    dm = build(cfg.data, "data")
    dm.setup("fit")
    check_validation_split(cfg, dm)
    stats = dm.statistics().to_dict()
    user_elements = cfg.model.get("elements")
    fine_tune = bool(cfg.get("init_from"))
    if fine_tune:
        from molsym.training import finetune

        user_elements = finetune.start_elements(cfg, stats)
    check_elements(dm, list(user_elements) if user_elements else None, stats)
    check_neighbours(dm, stats, cfg.model)
    warn_energy_reference(stats)
    # reseed: reading/building graphs (or loading them from the cache) must not change the
    # initial weights
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    record, optimizer_kwargs = None, {}
    if fine_tune:
        model, record = finetune.start_model(cfg, stats)
    else:
        model = build(cfg.model, "model", **model_kwargs(cfg.model, stats))
    pinned = not fine_tune and pin_isolated_atom_energies(model, dm)
    model = model.to(resolve_dtype(cfg.get("dtype", "float32")))
    if fine_tune:
        record.update(finetune.prepare(model, cfg, dm.datasets["train"], record))
        optimizer_kwargs = finetune.optimizer_overrides(cfg)
    module = build(
        cfg.module, "module", model=model,
        optimizer=build(cfg.optimizer, "optimizer", **optimizer_kwargs),
        scheduler=build(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None,
    )
    if ckpt is not None:
        check_state_dict(ckpt, module, ckpt_path)
        del ckpt
    callbacks = _callbacks(cfg, out)
    trainer = build(
        cfg.trainer, "trainer", callbacks=callbacks,
        logger=_loggers(cfg, out, ckpt_path is not None),
        plugins=[AtomicCheckpointIO()], default_root_dir=str(out),
        # callbacks.progress_bar=null: no bar (Lightning would add its own)
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
    )
    if trainer.is_global_zero:
        _write_outputs_before_fit(cfg, out, dm, stats)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:  # the run's config in every tracker (wandb, MLflow, ...)
        logger.log_hyperparams(hparams)
    from molsym.training.trackers import finish

    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        return _test_and_deploy(cfg, out, trainer, module, dm, stats, record, pinned)
    finally:
        finish(trainer.loggers)


def pin_isolated_atom_energies(model, dm) -> bool:
    """With ``data.isolated_atom_energies_path`` the per-element energy shifts are the
    isolated atoms' reference energies and stay them: frozen in training, not refitted after
    it (with ``exact_isolated_atoms`` a lone atom's energy is then that reference exactly).
    Returns whether the shifts were pinned."""
    shift = getattr(model, "atomic_energy_shift", None)
    if getattr(dm, "isolated_atom_energies_path", None) is None or shift is None:
        return False
    shift.requires_grad_(False)
    log.info("energy shifts pinned to the isolated-atom energies of %s",
             dm.isolated_atom_energies_path)
    return True


def _test_and_deploy(cfg: DictConfig, out: Path, trainer: pl.Trainer, module, dm,
                     stats: dict, finetune_record: dict | None = None,
                     pinned: bool = False) -> dict[str, Any]:
    """Load the best checkpoint (EMA weights), refit its energy shifts on the training set
    (``refit_energy_shift``; not when they are pinned to isolated-atom energies, see
    :func:`pin_isolated_atom_energies`), test it and write ``model.pt`` and
    ``metrics.json``."""
    metrics: dict = {}
    best = _best_checkpoint(trainer)
    if best is not None:  # our own checkpoint, written by this run
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    refit = None
    if cfg.get("refit_energy_shift", True) and not pinned:
        refit = module.refit_energy_shift(dm.datasets["train"])
        if refit is not None:
            log.info("energy shift refit on %d training structures: energy MAE %.3g -> %.3g meV "
                     "(mean error before %.3g meV)", refit["num_graphs"], refit["mae_before_meV"],
                     refit["mae_after_meV"], refit["mean_error_before_meV"])
        else:
            log.info("energy shift refit: nothing done (no energy output or labels, or an "
                     "energy that is not finite)")
    if len(dm.datasets["test"]) > 0:
        tested = best
        if refit is not None:
            # tested from a file, as before: without ckpt_path, Lightning would load a SLURM
            # requeue checkpoint (hpc_ckpt_*.ckpt) over these weights if the run folder has one
            tested = str(out / "checkpoints" / "refit.ckpt")
            trainer.save_checkpoint(tested)
        if trainer.world_size > 1:
            metrics = _test_exactly_once(trainer, module, dm)
        else:
            trainer.test(module, datamodule=dm, ckpt_path=tested, verbose=False,
                         weights_only=True)
            metrics = module.results.get("test", {})
    result = {"model": str(out / "model.pt"), "metrics": metrics, "best_checkpoint": best,
              "energy_shift_refit": refit, "is_global_zero": trainer.is_global_zero}
    if trainer.is_global_zero:
        from molsym.deploy import save_model

        model = module.averaged_model().cpu()
        bad = first_nonfinite(model)
        if bad is not None:
            raise TrainingDiverged(f"the trained weights are not finite ({bad}); no model.pt "
                                   "written")
        meta = {"statistics": stats, "test_metrics": metrics, "best_checkpoint": best,
                "energy_shift_refit": refit, "energy_reference": stats.get("energy_reference"),
                "config": OmegaConf.to_container(cfg, resolve=True)}
        if finetune_record is not None:
            meta["finetune"] = finetune_record
        save_model(model, out / "model.pt", metadata=meta)
        write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    return result


def _test_exactly_once(trainer: pl.Trainer, module, dm) -> dict:
    """Test metrics under DDP: global rank 0 evaluates the EMA weights of ``module`` (those
    of ``refit.ckpt``) on the whole test split, every structure exactly once (Lightning's
    distributed sampler would pad the split to a multiple of the world size and count the
    padding twice); the other ranks wait in the broadcast of the metrics, so that every rank
    returns the same numbers. The metrics are logged on rank 0 as ``trainer.test`` does."""
    from molsym.training.metrics import ErrorAccumulator, flat_metrics

    metrics: dict = {}
    if trainer.is_global_zero:
        acc = ErrorAccumulator()
        training = module.training
        module.eval()
        with module.ema.average_parameters(module.model), \
                trainer.precision_plugin.forward_context():
            for batch in dm.test_dataloader():
                batch = batch.to(module.device)
                with torch.enable_grad():  # forces are gradients
                    pred = module(batch)
                acc.update({k: v.detach() for k, v in pred.items()}, batch)
        module.train(training)
        metrics = acc.compute()
        module.results["test"] = metrics
        flat = flat_metrics(metrics, "test")
        for logger in trainer.loggers if flat else []:
            logger.log_metrics(flat, step=trainer.global_step)
            logger.save()
    metrics = trainer.strategy.broadcast(metrics, src=0)
    module.results["test"] = metrics
    return metrics


def summary(result: dict[str, Any]) -> str:
    """What ``molsym train`` prints at the end: where the model is and its test errors."""
    lines = [f"model: {result['model']}"]
    if result["metrics"]:
        lines.append(format_table(result["metrics"], "test errors:"))
    else:
        lines.append("no test set: no test errors")
    return "\n".join(lines)
