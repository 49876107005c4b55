"""The data-efficiency study script's bookkeeping (scripts/benchmarks/data_efficiency.py): which
overrides a study's runs get, and what its report derives from stored results."""

from __future__ import annotations

import pytest

from scripts.benchmarks import data_efficiency


def _run(mae: float, key: str = "forces") -> dict:
    return {"metrics": {key: {"mae": mae}}}


def test_every_study_has_a_label_and_every_variation_a_known_base():
    studies = set(data_efficiency.STUDIES)
    assert set(data_efficiency.SUMMARY_LABELS) == studies
    assert set(data_efficiency.BASE_STUDY) <= studies
    assert set(data_efficiency.BASE_STUDY.values()) <= studies
    assert set(data_efficiency.STUDY_OVERRIDES) <= set(data_efficiency.BASE_STUDY)
    for study, base in data_efficiency.BASE_STUDY.items():
        assert data_efficiency.STUDIES[study][0] == data_efficiency.STUDIES[base][0], study


@pytest.mark.parametrize("study", ["aspirin_cut4", "qm9_u0_cut4", "qm9_homo_cut4"])
def test_a_cutoff_study_runs_its_base_study_with_the_cutoff_override(tmp_path, monkeypatch,
                                                                     study):
    # the QM9 pool file is written from qm9pack on first use: a stand-in path, nothing read
    monkeypatch.setattr(data_efficiency, "qm9_pool_file", lambda n: tmp_path / f"pool{n}.xyz")
    base = data_efficiency.BASE_STUDY[study]
    protocol = data_efficiency.protocol_overrides(100, False, "cosine")
    args = data_efficiency.overrides(study, "default", 25, tmp_path / "v" / "25", 200, protocol)
    base_args = data_efficiency.overrides(base, "default", 25, tmp_path / "b" / "25", 200,
                                          protocol)
    assert "cutoff=4.0" in args and not any(a.startswith("cutoff=") for a in base_args)
    strip = [a for a in args if a != "cutoff=4.0"]
    assert [a.replace("/v/", "/b/") for a in strip] == base_args
    split = (tmp_path / "v" / "25" / "split.json").read_text()
    assert split == (tmp_path / "b" / "25" / "split.json").read_text()  # same frames


def test_better_of_ratios_takes_each_models_lower_error_over_the_studies():
    results = {"runs": {
        "aspirin": {"flagship": {"25": _run(100.0), "50": _run(60.0)},
                    "invariant": {"25": _run(180.0), "50": _run(130.0)}},
        "aspirin_cut4": {"flagship": {"25": _run(80.0), "50": _run(65.0)},
                         "invariant": {"25": _run(170.0), "50": _run(140.0)}},
    }}
    ratios = data_efficiency.better_of_ratios(results, ["aspirin", "aspirin_cut4"])
    assert ratios == pytest.approx({25: 170.0 / 80.0, 50: 130.0 / 60.0})


def test_each_command_is_reported_with_the_environment_of_its_own_runs():
    def env(date, commit):
        return {"date": date, "machine": "x86_64", "cpus": 2, "load_avg_1min": 0.5,
                "threads": 1, "python": "3.11", "torch": "2.13", "molsym_commit": commit}

    runs = {"flagship": {"25": _run(1.0)}, "invariant": {"25": _run(2.0)}}
    results = {"runs": {"aspirin": runs, "aspirin_cut4": runs},
               "study_commands": {"aspirin": "cmd-a", "aspirin_cut4": "cmd-b"},
               "study_envs": {"aspirin": env("day 1", "aaa1111"),
                              "aspirin_cut4": env("day 2", "bbb2222")},
               "env": env("day 2", "bbb2222")}
    lines = [ln for ln in data_efficiency.commands_with_envs(results) if ln.startswith("- ")]
    assert len(lines) == 2
    assert "cmd-a" in lines[0] and "day 1" in lines[0] and "aaa1111" in lines[0]
    assert "cmd-b" in lines[1] and "day 2" in lines[1] and "bbb2222" in lines[1]


def test_study_settings_name_the_overrides_and_a_non_default_flagship():
    assert data_efficiency.study_settings("aspirin") == []
    assert data_efficiency.study_settings("aspirin_cut4") == ["cutoff=4.0"]
    assert data_efficiency.study_settings("aspirin_large") == ["model=large"]
    assert data_efficiency.study_settings("aspirin_cut4_full") == ["cutoff=4.0",
                                                                  "model=full_paths"]
