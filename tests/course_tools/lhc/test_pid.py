"""Particle identification: the simulated detector physics and the multi-class GBDT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from course_tools.base import ToolContext
from course_tools.lhc.pid import CLASSES, FEATURES, PIDParams, simulate_tracks, train_pid
from course_tools.params import ParamError, build_params
from course_tools.plots import is_png


@pytest.fixture(scope="module")
def tracks() -> tuple[np.ndarray, np.ndarray]:
    return simulate_tracks(PIDParams(n_per_class=2_000), np.random.default_rng(0))


def _col(x: np.ndarray, name: str) -> np.ndarray:
    return x[:, FEATURES.index(name)]


def test_cherenkov_thresholds_and_angles(tracks: tuple[np.ndarray, np.ndarray]) -> None:
    x, label = tracks
    p, angle = _col(x, "p"), _col(x, "rich1_angle")
    photons = _col(x, "rich1_photons")
    kaon, pion = label == CLASSES.index("kaon"), label == CLASSES.index("pion")
    # C4F10 (n = 1.0014): kaons radiate above 9.3 GeV only, pions above 2.6 GeV
    assert photons[kaon & (p < 8)].mean() < 1.0
    assert photons[kaon & (p > 30)].mean() > 10.0
    fast_pions = pion & (p > 40) & (angle > 0)
    expected = 1000 * np.arccos(1 / (1.0014 * p[fast_pions] / np.hypot(p[fast_pions], 0.13957)))
    assert abs(np.mean(angle[fast_pions] - expected)) < 0.3  # mrad, unbiased
    # the RICH likelihood favours the kaon hypothesis for kaons above threshold
    assert np.median(_col(x, "dll_k")[kaon & (p > 15)]) > 0
    assert np.median(_col(x, "dll_k")[pion & (p > 15)]) < 0


def test_calorimeter_and_muon_system(tracks: tuple[np.ndarray, np.ndarray]) -> None:
    x, label = tracks
    p, eop, is_muon = _col(x, "p"), _col(x, "ecal_e_over_p"), _col(x, "is_muon")
    electron = label == CLASSES.index("electron")
    in_calo = eop > 0
    assert abs(np.median(eop[electron & in_calo]) - 0.97) < 0.05
    assert np.median(eop[(label == CLASSES.index("muon")) & in_calo]) < 0.2
    muon, pion = label == CLASSES.index("muon"), label == CLASSES.index("pion")
    assert is_muon[muon & (p > 10)].mean() > 0.8
    assert is_muon[pion & (p > 10)].mean() < 0.05
    # decays in flight make slow pions fake muons more often than fast ones
    assert is_muon[pion & (p < 8)].mean() > is_muon[pion & (p > 40)].mean()


def test_training_gives_per_class_auc_and_confusion(tmp_path: Path) -> None:
    result = train_pid(ToolContext(params=PIDParams(n_per_class=300, n_estimators=40),
                                   work_dir=tmp_path))
    m = result.metrics
    for name in CLASSES:
        assert 0.8 < m[f"auc_{name}"] <= 1.0
    assert m["auc_muon"] > 0.98 and m["auc_pion"] > 0.9
    assert m["macro_auc"] == pytest.approx(np.mean([m[f"auc_{c}"] for c in CLASSES]))
    assert "Confusion matrix" in result.text and "kaon" in result.text
    assert is_png(result.images[0][1])


@pytest.mark.parametrize(("raw", "expected"), [
    ({"n_per_class": "10"}, "n_per_class must be a whole number between 200 and 100000"),
    ({"p_min": "20", "p_max": "10"}, "p_max must be above p_min"),
    ({"rich_resolution": "0"}, "rich_resolution must be a number between 0.25 and 5"),
])
def test_bad_parameters_are_explained(raw: dict[str, str], expected: str) -> None:
    with pytest.raises(ParamError) as info:
        build_params(PIDParams, raw)
    assert expected in str(info.value)
