"""The four-lepton selection on the real uproot-HZZ.root file, and on hand-made leptons."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from course_tools.base import ToolContext
from course_tools.lhc.hzz import STAGES, HZZParams, Lepton, _best_quadruplet, run_hzz, select
from course_tools.plots import is_png


def _lepton(pt: float, eta: float, phi: float, charge: int, flavour: int) -> Lepton:
    mass = 0.105658 if flavour == 13 else 0.000511
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return Lepton(np.array([np.sqrt(mass**2 + px**2 + py**2 + pz**2), px, py, pz]), charge,
                  flavour)


def test_selection_on_the_real_file() -> None:
    p = HZZParams()
    sel = select(p)
    counts = [n for _, n in sel.cutflow]
    assert [name for name, _ in sel.cutflow] == STAGES
    assert counts[0] == 2421
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
    assert counts[-1] == len(sel.m4l) > 0
    assert all(p.z1_min < m < p.z_max for m in sel.mz1)
    assert all(p.z2_min < m < p.z_max for m in sel.mz2)
    # Z1 is the pair nearest the Z mass
    assert all(abs(z1 - 91.19) <= abs(z2 - 91.19) for z1, z2 in zip(sel.mz1, sel.mz2,
                                                                     strict=True))
    assert all(m > p.m4l_min for m in sel.m4l)
    assert set(sel.channel) <= {"4mu", "2e2mu", "4e"}


def test_tighter_cuts_select_fewer() -> None:
    loose = len(select(HZZParams()).m4l)
    tight = len(select(HZZParams(muon_pt=20, electron_pt=20, max_rel_iso=0.1)).m4l)
    assert tight < loose


def test_pairing_of_two_hand_made_z_bosons() -> None:
    # e+e- back to back (90 GeV, the Z1) and a 60 GeV mu+mu- pair (the Z2)
    leptons = [_lepton(45.0, 0.0, 0.0, +1, 11), _lepton(45.0, 0.0, np.pi, -1, 11),
               _lepton(40.0, 0.5, 1.0, +1, 13), _lepton(40.0, 0.5, 2.7, -1, 13)]
    counts: Counter[str] = Counter()
    best = _best_quadruplet(leptons, 91.19, HZZParams(), counts)
    assert best is not None
    m4l, m1, m2, channel = best
    assert channel == "2e2mu"
    assert abs(m1 - 90.0) < 0.01  # e+e-: 2 × 45 GeV back to back
    assert abs(m2 - 60.1) < 0.1
    assert m4l > m1 + m2
    # three positive muons and one negative make one Z candidate at most, never two
    unpaired = [_lepton(45.0, 0.0, 0.0, +1, 13), _lepton(45.0, 0.0, np.pi, +1, 13),
                _lepton(40.0, 1.0, 1.0, +1, 13), _lepton(40.0, -1.0, 2.0, -1, 13)]
    assert _best_quadruplet(unpaired, 91.19, HZZParams(), Counter()) is None
    # nor do e+ e+ mu+ mu-: the electrons have the same charge
    crossed = [_lepton(45.0, 0.0, 0.0, +1, 11), _lepton(45.0, 0.0, np.pi, +1, 13),
               _lepton(40.0, 1.0, 1.0, +1, 11), _lepton(40.0, -1.0, 2.0, -1, 13)]
    assert _best_quadruplet(crossed, 91.19, HZZParams(), Counter()) is None


def test_tool_reports_the_cut_flow(tmp_path: Path) -> None:
    result = run_hzz(ToolContext(params=HZZParams(), work_dir=tmp_path))
    assert "Cut flow" in result.text and "Z1 mass window" in result.text
    assert result.metrics["n_selected"] == (result.metrics["n_4mu"] + result.metrics["n_4e"]
                                            + result.metrics["n_2e2mu"])
    assert is_png(result.images[0][1])
