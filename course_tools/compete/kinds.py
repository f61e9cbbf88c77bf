"""The names the competition modules share (kept free of heavy imports)."""

from __future__ import annotations

from typing import Literal

Task = Literal["binary", "multiclass", "regression"]
TaskChoice = Literal["auto", "binary", "multiclass", "regression"]
Scheme = Literal["time", "group", "stratified", "kfold"]
