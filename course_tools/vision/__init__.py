"""Computer-vision course tools: face detection and recognition ("Deep Learning in Computer
Vision") and image captioning ("Introduction to Deep Learning"). Importing the package registers
them; dlib, OpenCV, torch and Pillow are imported only when a tool runs."""

from __future__ import annotations

from course_tools.base import ToolSpec
from course_tools.vision import caption, faces

SPECS: list[ToolSpec] = [*faces.SPECS, *caption.SPECS]

__all__ = ["SPECS"]
