"""The stages joined: :func:`run_pipeline` (``hardneg run``) and :func:`evaluate_models` (``hardneg evaluate``)."""

from .context import RunContext, prepare
from .evaluation import Evaluation
from .mining import mine_strategy
from .run import RunResult, evaluate_models, run_pipeline
from .training import TrainedModel, train_from_negatives, train_strategy

__all__ = ["Evaluation", "RunContext", "RunResult", "evaluate_models", "mine_strategy", "prepare", "run_pipeline",
           "train_from_negatives", "train_strategy", "TrainedModel"]
