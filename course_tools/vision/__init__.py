"""Computer-vision course tools ("Deep Learning in Computer Vision"): face detection and
recognition. Importing the package registers them; dlib, OpenCV and Pillow are imported only
when a tool runs."""

from __future__ import annotations

from course_tools.base import ToolSpec
from course_tools.vision import faces

SPECS: list[ToolSpec] = [*faces.SPECS]

__all__ = ["SPECS"]
