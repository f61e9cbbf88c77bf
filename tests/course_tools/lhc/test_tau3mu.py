"""τ→3μ: small Pythia 8 samples (seconds), the detector model, and the tool end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from course_tools.base import ToolContext, ToolInputError
from course_tools.lhc.checks import CVM_LIMIT, cvm_flatness
from course_tools.lhc.common import pdg_mass_width_gev
from course_tools.lhc.tau3mu import (
    Tau3MuParams,
    build_candidates,
    predict,
    split_by_event,
    train_flat,
    train_gbdt,
    train_tau3mu,
)
from course_tools.lhc.tau3mu_detector import FEATURES, Detector
from course_tools.lhc.tau3mu_sim import EventSample, cached_sample
from course_tools.params import ParamError, build_params
from course_tools.plots import is_png


def _no_progress(fraction: float, detail: str) -> None:
    assert 0.0 <= fraction <= 1.0 and detail


# Small samples, made once per module in the data dir the end-to-end test uses, so that its
# run finds them in the cache: the tracker sees 60 signal and 100 control decays.
SIZE, CONTROL_SIZE, SEED = 60, 100, 7


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def cache(data_dir: Path) -> Path:
    path = data_dir / "lhc" / "tau3mu"
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def signal(cache: Path) -> EventSample:
    return cached_sample(cache, "signal", SIZE, SEED, _no_progress)[0]


@pytest.fixture(scope="module")
def control(cache: Path) -> EventSample:
    return cached_sample(cache, "control", CONTROL_SIZE, SEED, _no_progress)[0]


def _p4(sample: EventSample, idx: np.ndarray, masses: np.ndarray) -> np.ndarray:
    p3 = np.stack([sample.px[idx], sample.py[idx], sample.pz[idx]], axis=-1).astype(float)
    energy = np.sqrt((p3**2).sum(axis=-1) + masses**2)
    total_e, total_p = energy.sum(axis=-1), p3.sum(axis=-2)
    return np.asarray(np.sqrt(total_e**2 - (total_p**2).sum(axis=-1)))


def test_signal_decays_are_three_muons_from_a_tau(signal: EventSample) -> None:
    assert signal.candidates.shape == (SIZE, 3)
    c = signal.candidates
    assert (signal.pid[c] == 13).all()
    assert set(np.abs(signal.charge[c].sum(axis=1)).tolist()) == {1}
    events = signal.event_of(c)
    assert (events == events[:, :1]).all()  # each decay within one event
    tau_mass, _ = pdg_mass_width_gev(15)
    masses = _p4(signal, c, np.full(3, 0.1056584))
    assert np.allclose(masses, tau_mass, atol=0.003)
    # the muons start where the tau decayed: one common vertex, away from the beam spot
    vertex = np.stack([signal.vx[c], signal.vy[c], signal.vz[c]], axis=-1)
    assert np.allclose(vertex, vertex[:, :1], atol=1e-3)
    assert np.median(np.linalg.norm(vertex[:, 0], axis=1)) > 0.05  # mm


def test_control_decays_are_phi_pi(control: EventSample) -> None:
    c = control.candidates
    assert sorted(control.pid[c[0]].tolist()) == [13, 13, 211]
    phi_mass, _ = pdg_mass_width_gev(333)
    for row in c:
        muons = row[control.pid[row] == 13]
        assert control.charge[muons].sum() == 0
        assert abs(_p4(control, muons, np.full(2, 0.1056584)) - phi_mass) < 0.03


def test_samples_come_back_from_the_cache(cache: Path, signal: EventSample) -> None:
    again, hit = cached_sample(cache, "signal", SIZE, SEED, _no_progress)
    assert hit
    assert np.array_equal(again.px, signal.px) and np.array_equal(again.candidates,
                                                                  signal.candidates)


def test_minimum_bias_keeps_every_event(cache: Path) -> None:
    minbias, _ = cached_sample(cache, "minbias", 400, SEED, _no_progress)
    assert minbias.n_events == 400 and minbias.candidates.shape == (0, 3)
    pt = np.hypot(minbias.px, minbias.py)
    assert pt.min() > 0.25 and np.abs(np.arcsinh(minbias.pz / pt)).max() < 2.5


def test_vertex_fit_of_true_decays_has_three_degrees_of_freedom(signal: EventSample) -> None:
    cands = build_candidates(signal, Detector(), np.random.default_rng(0))
    assert len(cands) > 10
    assert set(FEATURES) | {"mass"} == set(cands.cols)
    # a correct vertex fit of three tracks gives chi2 ~ chi2(3): mean 3 (only the
    # preselection's cut at 15 trims the tail)
    assert 1.5 < cands.cols["VertexChi2"].mean() < 5.0
    assert np.all(np.abs(cands.cols["dira"]) <= 1.0 + 1e-9)
    assert np.median(cands.cols["dira"]) > 0.99  # the decay flies the way it points


def test_worse_detector_blurs_the_impact_parameters(signal: EventSample) -> None:
    sharp = build_candidates(signal, Detector(ip_scale=0.5), np.random.default_rng(1))
    blurred = build_candidates(signal, Detector(ip_scale=3.0), np.random.default_rng(1))
    assert np.median(sharp.cols["p0_IPSig"]) > np.median(blurred.cols["p0_IPSig"])
    assert np.median(sharp.cols["FlightDistanceError"]) < np.median(
        blurred.cols["FlightDistanceError"])


def test_flatness_loss_decorrelates_a_classifier_from_the_mass() -> None:
    """Known data: a feature that gives the mass away makes the plain GBDT sculpt the
    background around the signal peak; the flatness loss takes much of that back."""
    rng = np.random.default_rng(0)
    n_sig, n_bkg = 800, 3_000
    mass = np.concatenate([rng.normal(1.777, 0.01, n_sig), rng.uniform(1.6, 1.95, n_bkg)])
    y = np.concatenate([np.ones(n_sig), np.zeros(n_bkg)]).astype(int)
    x = rng.normal(size=(len(y), len(FEATURES)))
    x[:, 0] += y  # an honest discriminating feature
    x[:, 1] = mass + rng.normal(0, 0.005, len(y))  # a feature that is the mass
    order = rng.permutation(len(y))
    train, val, test = order[:2_000], order[2_000:2_600], order[2_600:]
    bkg = test[y[test] == 0]
    params = Tau3MuParams(flat_estimators=60, flatness=30)
    gbdt = train_gbdt(x[train], y[train], x[val], y[val], params, lambda _: None)
    flat = train_flat(x[train], mass[train], y[train], params)
    cvm_gbdt = cvm_flatness(predict(gbdt, "gbdt", x[bkg], mass[bkg]), mass[bkg], 100, 25)
    cvm_flat = cvm_flatness(predict(flat, "flat", x[bkg], mass[bkg]), mass[bkg], 100, 25)
    assert cvm_gbdt > CVM_LIMIT
    assert cvm_flat < cvm_gbdt / 2


def test_split_keeps_events_together() -> None:
    event = np.repeat(np.arange(200), 3)
    part = split_by_event(event, np.random.default_rng(0))
    assert set(part.tolist()) == {0, 1, 2}
    assert (part.reshape(200, 3) == part.reshape(200, 3)[:, :1]).all()


def test_tool_end_to_end_on_a_tiny_simulation(tmp_path: Path, data_dir: Path,
                                              signal: EventSample, control: EventSample
                                              ) -> None:
    params = Tau3MuParams(n_signal=SIZE, n_control=CONTROL_SIZE, minbias_events=400,
                          n_estimators=60, flat_estimators=15, neural_net=False, bootstrap=30,
                          seed=SEED)
    result = train_tau3mu(ToolContext(params=params, work_dir=tmp_path / "job",
                                      data_dir=data_dir))
    m = result.metrics
    for kind in ("gbdt", "flat"):
        assert 0.5 < m[f"auc_{kind}"] <= 1.0
        assert m[f"auc_low_{kind}"] <= m[f"auc_{kind}"] <= m[f"auc_high_{kind}"]
        assert 0.0 <= m[f"ks_{kind}"] <= 1.0 and m[f"cvm_{kind}"] >= 0.0
        assert m[f"ks_pass_{kind}"] in (0.0, 1.0)
    assert "SIMULATION" in result.text and ("PASSED" in result.text or "FAILED" in result.text)
    assert is_png(result.images[0][1])
    assert result.artifacts["gbdt_model"].is_file()
    assert m["from_cache"] == 1.0  # the fixtures' samples were reused
    assert len(list((data_dir / "lhc" / "tau3mu").glob("*.npz"))) == 3


def test_too_few_candidates_is_a_clear_error(tmp_path: Path, data_dir: Path,
                                             signal: EventSample, control: EventSample) -> None:
    # a three times worse vertex detector: few tracks stay significantly displaced
    params = Tau3MuParams(n_signal=SIZE, n_control=CONTROL_SIZE, minbias_events=400,
                          ip_scale=3.0, seed=SEED)
    with pytest.raises(ToolInputError, match="pass the preselection; raise n_"):
        train_tau3mu(ToolContext(params=params, work_dir=tmp_path, data_dir=data_dir))


@pytest.mark.parametrize(("raw", "expected"), [
    ({"n_signal": "5"}, "n_signal must be a whole number between 30 and 20000"),
    ({"minbias_events": "10^7"}, "minbias_events must be a whole number between 200 and 200000"),
    ({"data_shift": "2"}, "data_shift must be a number between 0 and 0.5"),
    ({"momentum_resolution": "-1"}, "momentum_resolution must be a number between 0.001"),
    ({"flatness_loss": "uboost"}, "flatness_loss must be one of bin, knn"),
    ({"seed": "-3"}, "seed must be a whole number between 0 and 1000000"),
])
def test_bad_parameters_are_explained(raw: dict[str, str], expected: str) -> None:
    with pytest.raises(ParamError) as info:
        build_params(Tau3MuParams, raw)
    assert expected in str(info.value)
