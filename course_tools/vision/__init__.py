"""Computer-vision course tools. Importing the package registers them."""

from __future__ import annotations

from course_tools.base import ToolSpec
from course_tools.vision import caption

SPECS: list[ToolSpec] = [*caption.SPECS]

__all__ = ["SPECS"]
