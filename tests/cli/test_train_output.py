"""What `molsym train` prints when its output is a file: one line per epoch, no carriage
returns, none of Lightning's tips and notices; `callbacks.progress_bar=null` prints no
progress at all; a compiled run says that it compiles."""

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from molsym.models import EquivariantModel
from molsym.training import MolsymModule
from molsym.training.logs import EpochLines, progress_bar
from tests.cli.cli_helpers import tiny_args

REPO = Path(__file__).resolve().parents[2]
NOISE = ("GPU available", "TPU available", "Tip:", "weights_only", "LeafSpec",
         "to estimate number of stepping batches", "refit.ckpt")


def _run_redirected(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    log = tmp_path / "out.txt"
    with open(log, "w") as f:  # stdout and stderr a file, not a terminal
        proc = subprocess.run([sys.executable, "-m", "molsym.cli.main", "train", *args],
                              stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                              timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    return text


def test_redirected_run_prints_one_line_per_epoch(emt_xyz, tmp_path):
    text = _run_redirected(tiny_args(emt_xyz, tmp_path / "run", "trainer.max_epochs=2"),
                           tmp_path)
    assert "\r" not in text
    epochs = [ln for ln in text.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in epochs] == ["1/2", "2/2"], text
    assert "train/loss" in epochs[0] and "val/forces MAE" in epochs[0]
    for noise in NOISE:
        assert noise not in text, noise
    assert "test errors:" in text


def test_progress_bar_null_prints_no_progress(emt_xyz, tmp_path):
    text = _run_redirected(tiny_args(emt_xyz, tmp_path / "run", "callbacks.progress_bar=null"),
                           tmp_path)
    assert "\r" not in text and "epoch 1/" not in text and "Epoch 0" not in text
    assert "test errors:" in text


def test_bar_on_a_terminal_lines_elsewhere():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert type(progress_bar(5, stream=Tty())).__name__ == "TQDMProgressBar"
    assert isinstance(progress_bar(5, stream=io.StringIO()), EpochLines)


def test_compiled_module_says_it_compiles(capsys):
    model = EquivariantModel(cutoff=4.0, elements=[1, 6], num_channels=8, num_layers=1,
                             l_max=1)
    module = MolsymModule(model, compile=True)
    module._trainer = SimpleNamespace(is_global_zero=True)
    module.on_train_start()
    assert "compiling (about a minute on a CPU)..." in capsys.readouterr().out
    MolsymModule(model).on_train_start()  # eager: nothing printed, no trainer needed
    assert capsys.readouterr().out == ""
