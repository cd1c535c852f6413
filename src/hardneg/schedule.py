"""The training schedule both trainers share (re-ranker and embedder): steps from rows and batch size, warmup,
checkpoints and dev evaluations spread over the run, the best checkpoint kept by a dev metric."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from .checkpoints import last_complete_checkpoint
from .device import current, current_device, training_arguments

def trainer_arguments(output_dir: Path, rows: int, batch: int, config, seed: int, progress: bool,
                      dev_metric: str | None) -> dict:
    """Keyword arguments for a sentence-transformers ``*TrainingArguments`` (``config``: a TrainConfig or
    EmbedderConfig, for epochs, learning rate, warmup and the number of dev evaluations). ``dev_metric``: the
    metric that picks the best checkpoint, None without dev evaluation. The device and mixed precision are this
    process's compute settings (:mod:`hardneg.device`): ``use_cpu`` on the CPU, fp16/bf16 on a GPU."""
    epochs = planned_epochs(rows, batch, config)
    total_steps = max(1, math.ceil(math.ceil(rows / batch) * epochs))
    every = max(1, math.ceil(total_steps / config.dev_evals))
    dev = {} if dev_metric is None else {"eval_strategy": "steps", "eval_steps": every,
                                          "load_best_model_at_end": True, "metric_for_best_model": dev_metric,
                                          "greater_is_better": True}
    return dict(output_dir=str(output_dir), num_train_epochs=epochs, per_device_train_batch_size=batch,
                learning_rate=config.learning_rate, warmup_steps=int(config.warmup_ratio * total_steps), seed=seed,
                data_seed=seed, save_strategy="steps",
                save_steps=every if dev_metric is not None else max(10, total_steps // 4), save_total_limit=1,
                logging_steps=max(1, total_steps // 20), report_to="none", disable_tqdm=not progress,
                dataloader_drop_last=False, **training_arguments(current_device(), current().precision), **dev)


def planned_epochs(rows: int, batch: int, config) -> float:
    """``config.epochs``, raised when ``config.min_steps`` (where the config has it) asks for more steps than that
    many passes over ``rows`` give: a small training set gets more passes, a large one is unchanged."""
    floor = getattr(config, "min_steps", None)
    per_epoch = max(1, math.ceil(rows / batch))
    return max(config.epochs, floor / per_epoch) if floor else config.epochs


def time_budget(minutes: float):
    """A trainer callback that ends training at the first step past ``minutes`` of wall clock, evaluating and
    saving that step so the best dev checkpoint so far is the one kept; ``stopped_at`` is that step (else None)."""
    from transformers import TrainerCallback  # lazy: transformers is slow to import

    class TimeBudget(TrainerCallback):
        def __init__(self):
            self.started, self.stopped_at = time.perf_counter(), None

        def on_step_end(self, args, state, control, **kwargs):
            if self.stopped_at is None and time.perf_counter() - self.started >= minutes * 60:
                self.stopped_at = state.global_step
                control.should_training_stop = True
                control.should_save = True
                control.should_evaluate = args.eval_strategy != "no"
            return control

    return TimeBudget()


def train_resuming(trainer, checkpoints: Path, log: logging.Logger, what: str = "",
                   max_minutes: float | None = None) -> tuple[float, dict | None]:
    """Run ``trainer`` from the last complete checkpoint in ``checkpoints`` (if any), saying so on the caller's
    ``log``, within ``max_minutes`` of wall clock if given (counted from this call, so a resumed run gets the budget
    again); returns the seconds it took and, with a budget, what the budget did."""
    resume = last_complete_checkpoint(checkpoints)
    if resume:
        log.info("Resuming %straining from %s", what, resume)
    budget = time_budget(max_minutes) if max_minutes else None
    if budget is not None:
        trainer.add_callback(budget)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    if budget is None:
        return seconds, None
    planned = trainer.state.max_steps
    if budget.stopped_at is not None:
        log.info("The %straining budget of %g min ended training at step %d of %d", what, max_minutes,
                 budget.stopped_at, planned)
    return seconds, {"minutes": max_minutes, "stopped_at_step": budget.stopped_at, "planned_steps": planned}
