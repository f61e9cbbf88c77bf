"""LHC physics course tools ("Addressing Large Hadron Collider Challenges by Machine Learning"):
real CMS collisions (the Z peak, a four-lepton selection), the Flavours-of-Physics search for
τ→3μ on Pythia 8 simulation, particle identification and tracking. Importing the package
registers them and ``/lhc METHOD`` (``/lhc zmumu``); uproot, iminuit, Pythia, LightGBM and
hep_ml are imported only when a tool runs."""

from __future__ import annotations

from course_tools import register_course_command
from course_tools.base import ToolSpec
from course_tools.lhc import hzz, pid, tau3mu, tracking, zmumu

register_course_command("lhc", "LHC physics tools: /lhc zmumu, /lhc hzz, /lhc tau3mu, "
                               "/lhc tracking, /lhc pid")

SPECS: list[ToolSpec] = [*zmumu.SPECS, *hzz.SPECS, *tau3mu.SPECS, *tracking.SPECS, *pid.SPECS]

__all__ = ["SPECS"]
