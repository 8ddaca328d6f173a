"""Evaluation: tasks and graders, batched guided generation with reports, the demo."""

from ..graders import extract_choice, extract_number, grade_math
from ..tasks import TASKS, Task, load_task

__all__ = ["TASKS", "Task", "extract_choice", "extract_number", "grade_math", "load_task"]
