"""Evaluators: each ``run(data, model_dir, out_dir, workspace)`` scores a model, writes a report
(JSON metrics, ``*_errors.json``, a confusion-matrix PNG) and returns its metrics."""
