"""``samwsss train-deeplab`` and ``samwsss predict`` (issue 5)."""

from samwsss.cli import not_implemented

train_deeplab_command = not_implemented("train-deeplab", 5)
predict_command = not_implemented("predict", 5)
