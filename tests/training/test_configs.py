"""Every config composes and resolves; the configs ship inside the wheel."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from molsym.cli.train import CONFIG_DIR, precheck
from tests.cli.cli_helpers import compose_train_config as _compose

GROUPS = ["data", "model", "trainer", "optimizer", "scheduler", "logger", "experiment"]
REQUIRED = {"data=extxyz": ["data.path=x.extxyz"], "data=smiles_csv": ["data.path=x.csv"],
            "data=store": ["data.path=store_dir"],
            "data=rmd17": ["data.molecule=ethanol"],
            "experiment=rmd17": ["data.molecule=ethanol"]}


def _options(group):
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


CASES = [f"{g}={o}" for g in GROUPS for o in _options(g)]


def test_every_group_has_its_options():
    assert {"default", "extxyz", "rmd17", "qm9", "smiles_csv"} <= set(_options("data"))
    assert {"default", "small", "invariant"} <= set(_options("model"))
    assert {"cpu", "gpu", "ddp"} <= set(_options("trainer"))
    assert {"adam", "adamw"} <= set(_options("optimizer"))
    assert {"plateau", "cosine"} <= set(_options("scheduler"))
    assert {"rmd17", "qm9", "3bpa"} <= set(_options("experiment"))


@pytest.mark.parametrize("choice", CASES)
def test_config_composes_resolves_and_targets_import(choice):
    cfg = _compose([choice, *REQUIRED.get(choice, []), "data_root=/some/root"])
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["model"]["cutoff"] == resolved["cutoff"] == resolved["data"]["cutoff"]
    assert resolved["model"]["outputs"] == resolved["targets"]
    for node in (resolved["data"], resolved["model"], resolved["trainer"],
                 resolved["optimizer"], resolved["scheduler"], resolved["module"]):
        assert get_object(node["_target_"]) is not None  # every _target_ imports
    assert resolved["optimizer"]["_partial_"] and resolved["scheduler"]["_partial_"]


def test_required_values_and_interpolation():
    cfg = _compose(["experiment=rmd17", "data.molecule=aspirin", "cutoff=4.0"])
    assert cfg.data.molecule == "aspirin" and cfg.model.cutoff == 4.0 == cfg.data.cutoff
    assert "missing required value data.molecule" in precheck(["experiment=rmd17"])
    assert precheck(["experiment=qm9", "target=gap"]) is None
    assert _compose(["experiment=qm9", "target=gap"]).model.outputs == ["gap"]
    assert "3bpa/train_300K.xyz" in _compose(["experiment=3bpa", "data_root=/r"]).data.path


def test_rmd17_recipe_is_the_measured_one_and_stays_inside_its_experiment():
    """experiment=rmd17 carries the loss and rate its benchmarks measured (Huber E:F
    100:1000 with the bend at 3 meV/A, lr 0.01); plain `molsym train` keeps MSE and 0.005."""
    rmd17 = _compose(["experiment=rmd17", "data.molecule=aspirin"])
    plain = _compose([])
    assert rmd17.module.loss.kind == "huber" and rmd17.optimizer.lr == 0.01
    assert rmd17.module.loss.huber_delta == 0.003 and plain.module.loss.huber_delta == 0.01
    assert dict(rmd17.module.loss.weights)["forces"] == 10 * rmd17.module.loss.weights.energy
    assert plain.module.loss.kind == "mse" and plain.optimizer.lr == 0.005
    assert rmd17.model.more_scalars and plain.model.more_scalars  # model=default's
    assert rmd17.model.species_linear and rmd17.model.radial_floor == 0.8
    assert rmd17.model.rank3_density and not rmd17.model.species_products
    assert not plain.model.rank3_density  # the 5-minute main job keeps the faster model
    assert _compose(["experiment=3bpa"]).model.rank3_density


def test_optimizer_scheduler_and_trainer_instantiate():
    import torch

    cfg = _compose(["scheduler=cosine", "optimizer=adamw", "trainer.max_epochs=3"])
    opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.AdamW)
    sched = instantiate(cfg.scheduler)(opt, total_steps=10)
    assert sched.warmup_steps == cfg.scheduler.warmup_steps
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs == 3


def test_cli_help_lists_groups(capsys):
    from molsym.cli.main import main

    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for group in GROUPS:
        assert f"{group}: " in out
    assert "rmd17" in out and "invariant" in out


@pytest.mark.slow
def test_configs_ship_in_the_wheel_and_load_from_it(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"  # build from a copy: no build/ folder left in the checkout
    shutil.copytree(repo / "molsym", src / "molsym",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheel_dir), str(src)],
        check=True, capture_output=True, timeout=180, cwd=tmp_path,
    )
    wheel = next(wheel_dir.glob("molsym-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {str(p.relative_to(CONFIG_DIR.parent.parent)) for p in CONFIG_DIR.rglob("*.yaml")}
    assert shipped and shipped <= names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import molsym.cli.train as t, sys; assert 'site' in str(t.CONFIG_DIR), t.CONFIG_DIR;"
            "sys.exit(0 if t.precheck(['model=invariant']) is None else 1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": ""}, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
