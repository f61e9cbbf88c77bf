"""TrackML score on hand-made assignments, and the Hough tracker on small simulated events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from course_tools.base import ToolContext
from course_tools.lhc.tracking import (
    HoughTracker,
    TrackingParams,
    run_tracking,
    simulate_event,
    trackml_score,
    trackml_weights,
)
from course_tools.params import ParamError, build_params
from course_tools.plots import is_png

# two particles of four hits each, and two noise hits (particle 0)
PARTICLE = np.array([1, 1, 1, 1, 2, 2, 2, 2, 0, 0])
WEIGHT = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=float)


def test_perfect_assignment_scores_one() -> None:
    track = np.array([0, 0, 0, 0, 1, 1, 1, 1, -1, -1])
    assert trackml_score(PARTICLE, track, WEIGHT) == pytest.approx(1.0)
    # noise on a track is harmless while the majority rules hold
    track_with_noise = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    assert trackml_score(PARTICLE, track_with_noise, WEIGHT) == pytest.approx(1.0)


def test_nothing_found_scores_zero() -> None:
    assert trackml_score(PARTICLE, np.full(10, -1), WEIGHT) == 0.0
    # one track holding everything: its majority particle has only 4 of its 10 hits
    assert trackml_score(PARTICLE, np.zeros(10, dtype=int), WEIGHT) == 0.0


def test_majority_rules_are_strict() -> None:
    # particle 1 split 3 + 1: the 3-hit track holds > 50% of it and counts its 3 hits
    track = np.array([0, 0, 0, 5, 1, 1, 1, 1, -1, -1])
    assert trackml_score(PARTICLE, track, WEIGHT) == pytest.approx(7 / 8)
    # split 2 + 2: exactly half is not more than half, so neither half counts
    track = np.array([0, 0, 5, 5, 1, 1, 1, 1, -1, -1])
    assert trackml_score(PARTICLE, track, WEIGHT) == pytest.approx(4 / 8)
    # a track of 2 hits of particle 1 and 2 of particle 2: no particle holds > 50% of it
    track = np.array([0, 0, 3, 3, 0, 0, 4, 4, -1, -1])
    assert trackml_score(PARTICLE, track, WEIGHT) == pytest.approx(0.0)


def test_weights_follow_the_trackml_rules() -> None:
    particle = np.array([1, 1, 1, 1, 1, 2, 2, 2, 0])
    layer = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3])
    weight = trackml_weights(particle, layer, np.array([0.0, 5.0, 5.0]))
    assert weight.sum() == pytest.approx(1.0)
    assert weight[5:].tolist() == [0, 0, 0, 0]  # three-hit particle and noise
    assert weight[0] == weight[4] == pytest.approx(2 * weight[2])  # first and last hits
    # a soft particle (pT 0.3 GeV) weighs 0.2 of a hard one (5 GeV)
    particle = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    layer = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    weight = trackml_weights(particle, layer, np.array([0.0, 0.3, 5.0]))
    assert weight[1] == pytest.approx(0.2 * weight[5])


def test_hough_finds_tracks_in_a_small_event() -> None:
    p = TrackingParams(particles=40, noise_hits=200, pt_min=0.5, seed=4)
    event = simulate_event(p, np.random.default_rng(4))
    tracker = HoughTracker(b_field=p.b_field, pt_min=p.pt_min, min_hits=p.min_hits,
                           eta_max=p.eta_max + 0.3)
    track = tracker.fit_predict(event.x, event.y, event.z, event.layer)
    assert trackml_score(event.particle, track, event.weight) > 0.9
    reconstructable = int((np.bincount(event.particle)[1:] >= p.min_hits).sum())
    assert reconstructable - 3 <= len(tracker.tracks_) <= reconstructable + 2
    # each track's q/pT lies in the range the transform scans
    assert all(abs(qpt) <= 1 / p.pt_min for _, qpt, _ in tracker.tracks_)


def test_noise_alone_makes_no_tracks() -> None:
    p = TrackingParams(particles=1, noise_hits=300, seed=5)
    event = simulate_event(p, np.random.default_rng(5))
    noise = event.particle == 0
    tracker = HoughTracker(b_field=p.b_field, pt_min=p.pt_min, min_hits=p.min_hits)
    track = tracker.fit_predict(event.x[noise], event.y[noise], event.z[noise],
                                event.layer[noise])
    assert (track < 0).all()


def test_tool_run(tmp_path: Path) -> None:
    params = TrackingParams(events=1, particles=30, noise_hits=100)
    result = run_tracking(ToolContext(params=params, work_dir=tmp_path))
    assert result.metrics["trackml_score"] > 0.85
    assert 0.0 <= result.metrics["fake_rate"] < 0.2
    assert is_png(result.images[0][1])


@pytest.mark.parametrize(("raw", "expected"), [
    ({"particles": "0"}, "particles must be a whole number between 1 and 2000"),
    ({"b_field": "20"}, "b_field must be a number between 0.5 and 4"),
    ({"noise_hits": "1e6"}, "noise_hits must be a whole number between 0 and 20000"),
    ({"min_hits": "12", "layers": "8"}, "min_hits (12) cannot exceed layers (8)"),
    ({"pt_min": "5", "pt_max": "2"}, "pt_max must be above pt_min"),
])
def test_bad_parameters_are_explained(raw: dict[str, str], expected: str) -> None:
    with pytest.raises(ParamError) as info:
        build_params(TrackingParams, raw)
    assert expected in str(info.value)
