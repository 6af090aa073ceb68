"""mIoU evaluation: streaming confusion matrix, folder evaluation, reports.

Public API:
    ConfusionMatrix, SegmentationMetrics   -- samwsss.evaluation.confusion
    evaluate_folder, MissingPredictionsError, PredictionSizeError, EvaluationWorkerError
                                           -- samwsss.evaluation.folder
    EvaluationReport                       -- samwsss.evaluation.result
    GroundTruthFolder                      -- samwsss.evaluation.gt_folder
"""

from samwsss.evaluation.confusion import ConfusionMatrix, SegmentationMetrics
from samwsss.evaluation.folder import (
    EvaluationWorkerError,
    MissingPredictionsError,
    PredictionSizeError,
    evaluate_folder,
)
from samwsss.evaluation.gt_folder import GroundTruthFolder
from samwsss.evaluation.result import EvaluationReport

__all__ = [
    "ConfusionMatrix",
    "EvaluationReport",
    "EvaluationWorkerError",
    "GroundTruthFolder",
    "MissingPredictionsError",
    "PredictionSizeError",
    "SegmentationMetrics",
    "evaluate_folder",
]
