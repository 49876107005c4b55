"""Structures too large for the memory available are refused before the model runs, with a
message saying how many atoms fit (molsym.memory), by the calculator and by molsym predict."""

import ase.io
import pytest
import torch

from molsym.cli.predict import main
from molsym.data.boxes import water_box
from molsym.deploy import save_model
from molsym.errors import ConfigError
from molsym.inference.calculator import MolsymCalculator
from molsym.memory import (
    MEMORY_LIMIT_ENV,
    MemoryLimitError,
    apply_memory_limit,
    available_bytes,
    check_fits,
    estimated_edges,
    needed_bytes,
    parse_bytes,
)
from molsym.models import EquivariantModel

LIMIT = "60MB"


@pytest.fixture(scope="module")
def water_model():
    torch.manual_seed(0)
    return EquivariantModel(cutoff=5.0, elements=[1, 8], l_max=1, num_channels=32).eval()


@pytest.fixture(scope="module")
def big_box():
    return water_box(15)  # 10,125 atoms, about 54 neighbours each within 5 Angstrom


def _fit_from(message: str) -> int:
    return int(message.split("about ")[-1].split(" atoms")[0].replace(",", ""))


def test_parse_bytes():
    assert parse_bytes("16GB") == 16 * 10**9
    assert parse_bytes("1.5 GiB") == int(1.5 * 2**30)
    assert parse_bytes(4096) == 4096
    for bad in ("lots", "-1GB", "0", "12 parsecs"):
        with pytest.raises(ConfigError):
            parse_bytes(bad)


def test_available_memory_prefers_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "2GB")
    assert available_bytes("1GB") == (10**9, "memory_limit")
    assert available_bytes() == (2 * 10**9, MEMORY_LIMIT_ENV)
    monkeypatch.delenv(MEMORY_LIMIT_ENV)
    room, source = available_bytes()
    assert room > 0 and source


def test_estimated_edges_near_the_real_count(big_box):
    from molsym.data.graph import neighbour_list

    edges, _, _ = neighbour_list(big_box.positions, 5.0, big_box.cell[:], big_box.pbc)
    assert abs(estimated_edges(big_box, 5.0) / edges.shape[1] - 1) < 0.1


def test_calculator_refuses_a_box_too_large_and_says_how_many_atoms_fit(water_model, big_box):
    calc = MolsymCalculator(water_model, dtype="float32", memory_limit=LIMIT)
    box = big_box.copy()
    box.calc = calc
    with pytest.raises(MemoryLimitError, match="atoms of this density fit") as err:
        box.get_potential_energy()
    fit = _fit_from(str(err.value))
    assert 0 < fit < len(box)
    # the figure is honest: a box of at most that many atoms passes the same check
    per_side = int((fit / 3) ** (1 / 3))
    small = water_box(per_side)
    assert len(small) <= fit
    check_fits(calc.model, len(small), estimated_edges(small, 5.0), torch.float32, LIMIT)
    small.calc = calc
    assert torch.isfinite(torch.tensor(small.get_forces())).all()


def test_chunking_lowers_the_estimate(big_box):
    edges = estimated_edges(big_box, 5.0)
    model = EquivariantModel(cutoff=5.0, elements=[1, 8], l_max=1, num_channels=32)
    model.chunk_above = 0
    unchunked = needed_bytes(model, len(big_box), edges, torch.float32)
    model.chunk_above = 2**18
    assert unchunked > 5 * needed_bytes(model, len(big_box), edges, torch.float32)


def test_by_default_a_box_is_chunked_only_when_it_would_not_fit_unchunked(big_box):
    edges = estimated_edges(big_box, 5.0)  # about 560,000, above CHUNK_ABOVE
    model = EquivariantModel(cutoff=5.0, elements=[1, 8], l_max=1, num_channels=32).eval()
    model.chunk_above = 0
    unchunked = needed_bytes(model, len(big_box), edges, torch.float32)
    model.chunk_above = "auto"
    apply_memory_limit(model, 4 * unchunked)  # fits twice over: the faster, unchunked path
    assert not model.chunks_edges(edges)
    assert needed_bytes(model, len(big_box), edges, torch.float32) == unchunked
    apply_memory_limit(model, unchunked)  # would fill all of it: chunked
    assert model.chunks_edges(edges)
    assert needed_bytes(model, len(big_box), edges, torch.float32) < unchunked / 5
    # a training step keeps more of each edge: it chunks where inference does not
    apply_memory_limit(model, 4 * unchunked)
    model.train()
    assert model.chunks_edges(edges)
    # small graphs never chunk, whatever the limit
    apply_memory_limit(model, "1MB")
    assert not model.chunks_edges(2**18)


def test_predict_cli_refuses_with_an_error_row_and_a_message(water_model, big_box, tmp_path,
                                                             capsys):
    model_file = tmp_path / "model.pt"
    save_model(water_model, model_file)
    structures = tmp_path / "boxes.extxyz"
    ase.io.write(structures, [water_box(2), big_box])
    out = tmp_path / "out.csv"
    rc = main(["--model", str(model_file), str(structures), "-o", str(out),
               "--memory-limit", LIMIT])
    assert rc == 1
    err = capsys.readouterr().err
    assert "10,125 atoms" in err and "atoms of this density fit" in err
    import pandas as pd

    table = pd.read_csv(out, keep_default_na=False)
    assert table["error"].iloc[0] == "" and table["energy_eV"].iloc[0] != ""
    assert "atoms of this density fit" in table["error"].iloc[1]


def test_predict_threads_option_sets_and_restores_torch_threads(water_model, tmp_path, capsys):
    model_file = tmp_path / "model.pt"
    save_model(water_model, model_file)
    structures = tmp_path / "box.extxyz"
    ase.io.write(structures, [water_box(2)])
    before = torch.get_num_threads()
    seen = []
    import molsym.inference.predictor as predict_module

    original = predict_module.Predictor.run

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    predict_module.Predictor.run = spy
    try:
        assert main(["--model", str(model_file), str(structures), "--threads", "1"]) == 0
    finally:
        predict_module.Predictor.run = original
    assert seen == [1] and torch.get_num_threads() == before
    assert main(["--model", str(model_file), str(structures), "--threads", "-1"]) == 2
