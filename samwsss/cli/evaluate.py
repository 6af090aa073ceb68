"""``samwsss evaluate`` (issue 2)."""

from samwsss.cli import not_implemented

evaluate_command = not_implemented("evaluate", 2)
