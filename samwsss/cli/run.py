"""``samwsss text-input`` and ``samwsss zero-shot`` (issue 6)."""

from samwsss.cli import not_implemented

text_input_command = not_implemented("text-input", 6)
zero_shot_command = not_implemented("zero-shot", 6)
