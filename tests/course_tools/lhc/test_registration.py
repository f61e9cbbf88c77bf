"""The LHC tools register themselves, answer to /lhc METHOD, and import cheaply."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from course_tools import load_tools

LHC_TOOLS = ["lhc.hzz", "lhc.pid", "lhc.tau3mu", "lhc.tracking", "lhc.zmumu"]
ROOT = Path(__file__).resolve().parents[3]


def test_course_command_finds_each_tool_by_method() -> None:
    registry = load_tools()
    assert "lhc" in registry.course_commands
    for name in LHC_TOOLS:
        method = name.split(".", 1)[1]
        assert registry.find(method, course="lhc").name == name
        spec = registry.get(name)
        assert 5 <= len(spec.examples) <= 6 and spec.headline_metric


def test_importing_the_tools_loads_no_heavy_library() -> None:
    heavy = ["uproot", "iminuit", "pythia8mc", "lightgbm", "hep_ml", "sklearn", "matplotlib",
             "mplhep", "awkward", "torch", "pandas", "scipy"]
    code = ("import sys, course_tools.lhc; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
