"""The Z→μμ fit on the real CMS events, and on a sample whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from course_tools.base import ToolContext, ToolInputError
from course_tools.lhc.common import pdg_mass_width_gev, skhep_testdata_file
from course_tools.lhc.zmumu import ZmumuParams, ZPeakFit, load_pairs, run_zmumu
from course_tools.params import ParamError, build_params
from course_tools.plots import is_png


def test_one_pair_per_collision() -> None:
    masses, collisions, rows = load_pairs("tracker")
    assert rows > collisions  # the file repeats collisions, once per muon combination
    assert len(masses) <= collisions
    assert len(masses) > 0.9 * collisions


@pytest.mark.parametrize("muons", ["tracker", "global"])
def test_fit_on_real_events_finds_the_z_mass(tmp_path: Path, muons: str) -> None:
    result = run_zmumu(ToolContext(params=ZmumuParams(muons=muons), work_dir=tmp_path))
    m = result.metrics
    mass_pdg, _ = pdg_mass_width_gev(23)
    if muons == "tracker":  # the acceptance: the default fit within 0.5 GeV of the PDG mass
        assert abs(m["mass_gev"] - mass_pdg) < 0.5
    assert abs(m["mass_gev"] - mass_pdg) < 1.0
    assert 0.05 < m["mass_err_gev"] < 0.5
    assert 0.3 < m["chi2_ndf"] < 3.0 and m["ndf"] > 20
    assert 0.5 < m["width_gev"] < 6.0 and m["width_err_gev"] > 0
    assert m["fit_valid"] == 1.0
    assert "Breit–Wigner width" in result.text and "χ²/ndf" in result.text
    assert is_png(result.images[0][1])


def test_fit_recovers_a_known_voigtian() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    masses = 91.0 + 1.25 * rng.standard_cauchy(n) + 1.2 * rng.standard_normal(n)
    masses = np.concatenate([masses, rng.uniform(70, 110, 2_000)])
    fit = ZPeakFit(70, 110, 80, "linear").fit(masses)
    assert abs(fit.values_["mass"] - 91.0) < 3 * fit.errors_["mass"]
    assert abs(fit.values_["gamma"] - 2.5) < 3 * fit.errors_["gamma"]
    assert abs(fit.values_["sigma"] - 1.2) < 3 * fit.errors_["sigma"]
    assert fit.chi2_ / fit.ndf_ < 2.0


@pytest.mark.parametrize(("raw", "expected"), [
    ({"mass_min": "95"}, "mass_min must be a number between 40 and 88"),
    ({"mass_max": "1e4"}, "mass_max must be a number between 94 and 160"),
    ({"bins": "5"}, "bins must be a whole number between 10 and 200"),
    ({"muons": "standalone"}, "muons must be one of tracker, global"),
    ({"bins": "200", "mass_min": "88", "mass_max": "94"}, "narrower than 0.1 GeV"),
])
def test_bad_parameters_are_explained(raw: dict[str, str], expected: str) -> None:
    with pytest.raises(ParamError) as info:
        build_params(ZmumuParams, raw)
    assert expected in str(info.value)


def test_a_missing_testdata_file_says_what_to_install() -> None:
    with pytest.raises(ToolInputError, match="scikit-hep-testdata==0.3.12"):
        skhep_testdata_file("no-such-file.root")
