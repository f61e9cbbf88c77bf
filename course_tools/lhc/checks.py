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


def cvm_flatness(predictions: np.ndarray, masses: np.ndarray, n_neighbours: int = 200,
                 step: int = 50) -> float:
    """The challenge's correlation measure: mean CvM distance over sliding mass windows.

    Windows of ``n_neighbours`` events consecutive in mass, every ``step`` events; each
    contributes the mean over all events of (F_window(x) − F_all(x))², the CDFs of the output.
    Without ties this is exactly the challenge's rank formula; tied outputs (a GBDT gives many)
    are compared as equal values instead of in the arbitrary order a ranking gives them, which
    would follow the mass order and fake a correlation.
    """
    predictions = np.asarray(predictions, dtype=float)
    masses = np.asarray(masses, dtype=float)
    if len(predictions) != len(masses):
        raise ValueError("predictions and masses differ in length")
    if len(predictions) < n_neighbours:
        raise ValueError(f"the correlation check needs at least {n_neighbours} events")
    by_mass = predictions[np.argsort(masses, kind="mergesort")]
    everything = np.sort(predictions)
    total = len(everything)
    global_cdf = np.searchsorted(everything, everything, side="right") / total
    distances = []
    for start in range(0, total - n_neighbours + 1, step):
        window = np.sort(by_mass[start:start + n_neighbours])
        window_cdf = np.searchsorted(window, everything, side="right") / n_neighbours
        distances.append(np.mean((window_cdf - global_cdf) ** 2))
    return float(np.mean(distances))
