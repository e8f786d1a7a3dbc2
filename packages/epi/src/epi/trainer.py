"""Per-task importance under ``transformers.Trainer``: :class:`EPITrainerMixin` and :class:`EPITrainer`.

The mixin wraps the collator so ``task_id`` survives (:class:`~epi.data.TaskIdCollator`), keeps the column
through ``remove_unused_columns``, samples task-homogeneous accumulation windows
(:class:`~epi.data.TaskHomogeneousBatchSampler`), pops the task id in ``training_step`` and hands it to the
isolation (callbacks never see inputs). Everything else is :class:`~epi.callback.EPICallback`.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader
from transformers import Trainer

from epi.callback import EPICallback
from epi.config import EPIConfig
from epi.data import TaskHomogeneousBatchSampler, TaskIdCollator, batch_task_id
from epi.errors import MissingTaskIdError, MixedTaskWindowError
from epi.isolation import EvolvingIsolation

__all__ = ["EPITrainer", "EPITrainerMixin"]


class EPITrainerMixin:
    """Mix in front of a ``Trainer`` subclass: ``class MyTrainer(EPITrainerMixin, Trainer)``.

    Extra keyword arguments: ``epi_config`` (:class:`~epi.config.EPIConfig`), ``task_key`` (default
    ``"task_id"``), ``isolation_cls`` (default :class:`~epi.isolation.EvolvingIsolation`).
    """

    def __init__(
        self,
        *args: Any,
        epi_config: EPIConfig | None = None,
        task_key: str = "task_id",
        isolation_cls: type[EvolvingIsolation] = EvolvingIsolation,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.epi_task_key = task_key
        self.epi_callback = EPICallback(epi_config, task_key=task_key, isolation_cls=isolation_cls)
        self.add_callback(self.epi_callback)  # type: ignore[attr-defined]
        self.data_collator = TaskIdCollator(self.data_collator, task_key)  # type: ignore[has-type]
        self._epi_window_task: int | None = None

    @property
    def epi_isolation(self) -> EvolvingIsolation | None:
        return self.epi_callback.isolation

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()  # type: ignore[misc]
        cols = self._signature_columns  # type: ignore[has-type]
        if cols is not None and self.epi_task_key not in cols:
            self._signature_columns = [*cols, self.epi_task_key]

    def get_train_dataloader(self) -> DataLoader:
        cfg = self.epi_callback.config
        ds = self.train_dataset  # type: ignore[attr-defined]
        if cfg.track != "per_task":
            return super().get_train_dataloader()  # type: ignore[misc]
        names = getattr(ds, "column_names", None)
        if names is not None and self.epi_task_key not in names:
            raise MissingTaskIdError(
                f'track="per_task" but the training dataset has no {self.epi_task_key!r} column; '
                f"columns: {names}"
            )
        ids = ds[self.epi_task_key] if names is not None else [ex[self.epi_task_key] for ex in ds]
        try:
            import datasets

            if isinstance(ds, datasets.Dataset):
                ds = self._remove_unused_columns(ds, description="training")  # type: ignore[attr-defined]
        except ImportError:  # pragma: no cover
            pass
        args = self.args  # type: ignore[attr-defined]
        sampler = TaskHomogeneousBatchSampler(
            list(ids),
            batch_size=self._train_batch_size,  # type: ignore[attr-defined]
            accumulation_steps=args.gradient_accumulation_steps,
            seed=args.seed,
        )
        dl = DataLoader(
            ds,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(dl)  # type: ignore[attr-defined]

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        tid = batch_task_id(inputs.pop(self.epi_task_key, None), self.epi_task_key)
        cfg = self.epi_callback.config
        if cfg.track == "per_task":
            if tid is None:
                raise MissingTaskIdError(
                    f'track="per_task" but a batch has no {self.epi_task_key!r}: add the column to the dataset '
                    "(integer task ids); EPITrainer keeps it through the collator and samples task-homogeneous "
                    "windows with TaskHomogeneousBatchSampler"
                )
            if self._epi_window_task is not None and tid != self._epi_window_task:
                raise MixedTaskWindowError(
                    f"gradient-accumulation window mixes task {self._epi_window_task} and task {tid}; expected "
                    "one task per window (TaskHomogeneousBatchSampler over whole windows)"
                )
            self._epi_window_task = tid
            if self.epi_callback.isolation is not None:
                self.epi_callback.isolation.current_task = tid
        out = super().training_step(model, inputs, *args, **kwargs)  # type: ignore[misc]
        if self.accelerator.gradient_state.sync_gradients:  # type: ignore[attr-defined]
            self._epi_window_task = None
        return out


class EPITrainer(EPITrainerMixin, Trainer):
    """``transformers.Trainer`` with per-task evolving parameter isolation (see :class:`EPITrainerMixin`)."""
