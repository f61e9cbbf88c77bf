"""The two checks of the Flavours of Physics challenge (Kaggle 2015, τ→3μ), re-implemented.

* agreement: the Kolmogorov–Smirnov distance between the classifier's outputs on control-channel
  data and control-channel simulation must stay below 0.09, so the classifier does not exploit
  features the simulation gets wrong;
* correlation: the classifier must not sculpt the τ mass, measured on background as the mean
  Cramér–von Mises distance between the output distribution in sliding mass windows (200
  neighbours, step 50) and the global one, which must stay below 0.002.
"""

from __future__ import annotations

import numpy as np

KS_LIMIT = 0.09
CVM_LIMIT = 0.002


def ks_distance(data: np.ndarray, simulation: np.ndarray, data_weights: np.ndarray | None = None,
                simulation_weights: np.ndarray | None = None) -> float:
    """Weighted two-sample Kolmogorov–Smirnov distance: max |F_data − F_simulation|."""
    data = np.asarray(data, dtype=float)
    simulation = np.asarray(simulation, dtype=float)
    wd = np.ones(len(data)) if data_weights is None else np.asarray(data_weights, dtype=float)
    ws = (np.ones(len(simulation)) if simulation_weights is None
          else np.asarray(simulation_weights, dtype=float))
    values = np.concatenate([data, simulation])
    signed = np.concatenate([wd / wd.sum(), -ws / ws.sum()])
    order = np.argsort(values, kind="mergesort")
    difference = np.cumsum(signed[order])
    sorted_values = values[order]
    # compare the two CDFs only after the last of a run of tied values
    last_of_run = np.append(sorted_values[1:] != sorted_values[:-1], True)
    return float(np.max(np.abs(difference[last_of_run])))


def _cvm_window(ranks: np.ndarray, total: int) -> float:
    """CvM distance between the ranks in one window and the uniform ranks of all events."""
    target = np.arange(1, total + 1, dtype=float) / total
    window_cdf = np.cumsum(np.bincount(ranks, minlength=total)).astype(float)
    window_cdf /= window_cdf[-1]
    return float(np.mean((target - window_cdf) ** 2))


def cvm_flatness(predictions: np.ndarray, masses: np.ndarray, n_neighbours: int = 200,
                 step: int = 50) -> float:
    """The challenge's correlation measure: mean CvM distance over sliding mass windows."""
    predictions = np.asarray(predictions, dtype=float)
    masses = np.asarray(masses, dtype=float)
    if len(predictions) != len(masses):
        raise ValueError("predictions and masses differ in length")
    if len(predictions) < n_neighbours:
        raise ValueError(f"the correlation check needs at least {n_neighbours} events")
    by_mass = predictions[np.argsort(masses, kind="mergesort")]
    ranks = np.argsort(np.argsort(by_mass, kind="mergesort"), kind="mergesort")
    starts = range(0, len(ranks) - n_neighbours + 1, step)
    return float(np.mean([_cvm_window(ranks[s:s + n_neighbours], len(ranks)) for s in starts]))
