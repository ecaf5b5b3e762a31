"""The forecasting engine one process runs: a small LRU of loaded models and a continuous batcher.

The batcher keeps one model pass in flight per engine. Requests that arrive while a pass runs wait
and all go into the next pass (grouped by model), so a lone request never waits for a timer and
batches fill exactly when load is high. The wait is bounded: past `max_pending` waiting requests
the engine sheds new ones (`Overloaded`, answered 503 with Retry-After) instead of queueing them
into a client timeout.

Statistical models and the `auto` ensemble (catalog ids in `CATALOG.cpu_ids`) skip the batcher:
they are fitted per series at request time, in worker threads, at most `stats_concurrency` calls at
once (replica.cpu_models), so their CPU time never delays a transformer pass. Third-party catalog
entries with local weights load through tsfm_core.third_party and batch like the transformer; so do
finetunes of them (registry models whose directory holds a third-party checkpoint). Fine-tuning a
third-party forecaster (persistent or Nixtla's in-request `finetune_steps`) goes through
tsfm_core.third_party.finetune (Chronos-Bolt, Chronos-2); other families are refused with a 422.

The same engine serves inside the ingress replicas (small requests, no extra hop), inside the
ModelServer deployment (the bulk lane and fine-tunes) and in a bare FastAPI process (benchmarks).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from serve_apps.models import third_party
from serve_apps.models.catalog import CATALOG, ENSEMBLE, THIRD_PARTY
from serve_apps.replica.calls import EnsembleCall, FinetuneCall, ForecastCall, RequestRejected
from serve_apps.replica.cpu_models import build_cpu_model, run_ensemble
from serve_apps.replica.metrics import ServingMetrics
from tsfm_core.checkpoint import BASE_MODEL_DIR, BASE_MODEL_ID, load_model, read_config, save_finetuned
from tsfm_core.ensemble import EnsembleForecast
from tsfm_core.finetune import finetune, finetuned_copy
from tsfm_core.predict import Forecaster, ForecastResult, model_rows

log = logging.getLogger("ray.serve")


class Overloaded(RuntimeError):
    """More requests (or more seconds of work) wait than the engine may hold; the caller should
    retry after `retry_after_s`."""

    def __init__(self, waiting: int, retry_after_s: int = 1, wait_s: float | None = None):
        work = f", about {wait_s:.0f} s of work" if wait_s is not None else ""
        super().__init__(f"the server is at capacity ({waiting} requests waiting{work}); retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Pending:
    model_id: str
    call: ForecastCall
    # Model rows the call costs, the unit the queue's wait is estimated in (a 16-series, h=64 call
    # costs 16 x 9 rows: the rollout multiplies rows by paths, so series alone would misjudge it).
    rows: int
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ModelEngine:
    def __init__(self, model_dir: Callable[[str], Path], device: str = "cpu", max_models: int = 8,
                 max_batch_series: int = 4096, max_pending: int = 512, metrics: ServingMetrics | None = None,
                 stats_n_jobs: int = 0, stats_concurrency: int = 2, max_wait_s: float | None = None):
        self.model_dir, self.device = model_dir, device
        self.cpu_ids = CATALOG.cpu_ids
        self.stats_n_jobs = stats_n_jobs or None  # None: every CPU
        self.stats_concurrency = stats_concurrency
        self._cpu_models: dict[str, object] = {}
        self._cpu_slots: asyncio.Semaphore | None = None  # made in the running loop on first use
        self.max_models, self.max_batch_series, self.max_pending = max_models, max_batch_series, max_pending
        self.metrics = metrics or ServingMetrics.disabled()
        self._models: OrderedDict[str, Forecaster] = OrderedDict()
        self._loading: dict[str, asyncio.Task] = {}
        self._pending: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None  # held: the loop keeps only weak references to tasks
        self.passes = 0
        self.requests_batched = 0
        # The waiting bound in time: a request whose estimated wait (the rows ahead of it and its own,
        # at the measured seconds per row) is longer than this is shed, so a client is answered 503
        # rather than left to time out behind a queue of heavy requests. None: off.
        self.max_wait_s = max_wait_s
        self._row_s: float | None = None  # moving average of seconds per model row, from the passes
        self._inflight_rows = 0  # of the batch in the model now
        # Rows are counted with the bundled model's output patch (third-party models are costed alike).
        self._output_patch = read_config(BASE_MODEL_DIR)["model"]["output_patch_len"]

    # ---- models ------------------------------------------------------------------------------------
    async def model(self, model_id: str) -> Forecaster:
        """The loaded model (LRU over `max_models`); concurrent first uses share one load."""
        if model_id in self._models:
            self._models.move_to_end(model_id)
            return self._models[model_id]
        if model_id in self.cpu_ids:  # built, not loaded, and outside the LRU of weights
            return await self._cpu_model(model_id)
        if model_id not in self._loading:
            self._loading[model_id] = asyncio.ensure_future(self._load(model_id))
        try:
            return await asyncio.shield(self._loading[model_id])
        finally:
            self._loading.pop(model_id, None)

    async def _load(self, model_id: str) -> Forecaster:
        directory = self.model_dir(model_id)
        entry = CATALOG.entries.get(model_id)
        if entry is not None and entry.kind == THIRD_PARTY:
            # The hook for public checkpoints: tsfm_core.third_party.load_forecaster(family, directory,
            # device) returns an object with `forecast_many` and `max_context`, as Forecaster has.
            from tsfm_core.third_party import load_forecaster

            forecaster = await asyncio.to_thread(load_forecaster, entry.family, directory, self.device)
        elif third_party.detect_family(directory) is not None:  # a finetune of a third-party checkpoint
            forecaster = await asyncio.to_thread(third_party.load, directory, None, self.device)
        else:
            model = await asyncio.to_thread(load_model, directory, self.model_dir, self.device)
            forecaster = Forecaster(model, device=self.device)
        self._models[model_id] = forecaster
        self.metrics.model_loaded()
        log.info("loaded model %s from %s", model_id, directory)
        while len(self._models) > self.max_models:
            evicted, _ = self._models.popitem(last=False)
            self.metrics.model_evicted()
            log.info("evicted model %s", evicted)
        return forecaster

    async def _cpu_model(self, model_id: str):
        if model_id not in self._cpu_models:
            entry = CATALOG.entries[model_id]
            base = await self.model(BASE_MODEL_ID) if entry.kind == ENSEMBLE else None
            self._cpu_models[model_id] = build_cpu_model(entry, base, self.stats_n_jobs)
        return self._cpu_models[model_id]

    def _cpu_slot(self) -> asyncio.Semaphore:
        if self._cpu_slots is None:
            self._cpu_slots = asyncio.Semaphore(self.stats_concurrency)
        return self._cpu_slots

    async def _forecast_cpu(self, model_id: str, call: ForecastCall) -> list[ForecastResult]:
        """A statistical or `auto` forecast: one thread call per request (batched over its series)."""
        if call.finetune is not None:
            raise RequestRejected(f"model {model_id!r} is fitted per series at request time; it takes no finetune_steps",
                                  ["body", "finetune_steps"])
        forecaster = await self.model(model_id)
        async with self._cpu_slot():
            results = await asyncio.to_thread(forecaster.forecast_many, [call.request])
        return results[0]

    async def ensemble(self, call: EnsembleCall) -> EnsembleForecast:
        """A backtest-driven ensemble over the call's transformers and statistical models."""
        transformers = {model_id: await self.model(model_id) for model_id in call.transformers}
        async with self._cpu_slot():
            return await asyncio.to_thread(run_ensemble, call.request, transformers, call.config, self.stats_n_jobs)

    # ---- forecasting -------------------------------------------------------------------------------
    async def forecast(self, model_id: str, call: ForecastCall) -> list[ForecastResult]:
        if model_id in self.cpu_ids:
            return await self._forecast_cpu(model_id, call)
        if call.finetune is not None:  # Nixtla's finetune_steps: tune a private copy, then forecast
            forecaster = await self.model(model_id)
            channels = call.finetune_series or [s.values[:, c] for s in call.request.series for c in range(s.n_channels)]
            if third_party.is_third_party(forecaster):
                self._check_finetunable(model_id, forecaster)
                from tsfm_core.third_party.finetune import finetuned_copy as third_party_copy

                tuned, _ = await asyncio.to_thread(_rejecting_value_errors, third_party_copy, forecaster, channels,
                                                   call.finetune)
            else:
                model, _ = await asyncio.to_thread(finetuned_copy, forecaster.model, channels, call.finetune)
                tuned = Forecaster(model, device=self.device)
            results = await asyncio.to_thread(tuned.forecast_many, [call.request])
            return results[0]
        if len(self._pending) >= self.max_pending:
            self.metrics.shed()
            raise Overloaded(len(self._pending))
        item = _Pending(model_id, call, len(call.request.series) * model_rows(call.request.horizon, self._output_patch))
        if self.max_wait_s is not None and self._row_s is not None and self._pending:
            wait = (self._inflight_rows + sum(p.rows for p in self._pending) + item.rows) * self._row_s
            if wait > self.max_wait_s:
                self.metrics.shed()
                raise Overloaded(len(self._pending), max(1, math.ceil(wait - self.max_wait_s)), wait)
        self._pending.append(item)
        self.metrics.queue_depth(len(self._pending))
        self._ensure_worker()
        self._wake.set()
        return await item.future

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def _take_batch(self) -> list[_Pending]:
        """Everything waiting, up to `max_batch_series` series (at least one request)."""
        taken, series = 0, 0
        for item in self._pending:
            n = len(item.call.request.series)
            if taken and series + n > self.max_batch_series:
                break
            taken, series = taken + 1, series + n
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        self._inflight_rows = sum(item.rows for item in batch)
        self.metrics.queue_depth(len(self._pending))
        return batch

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            batch = self._take_batch()
            started = time.perf_counter()
            by_model: dict[str, list[_Pending]] = {}
            for item in batch:
                by_model.setdefault(item.model_id, []).append(item)
            for model_id, items in by_model.items():
                try:
                    forecaster = await self.model(model_id)
                    outs = await asyncio.to_thread(forecaster.forecast_many, [i.call.request for i in items])
                except Exception as exc:  # one model's failure answers its own requests only
                    for item in items:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    continue
                for item, out in zip(items, outs):
                    if not item.future.done():  # the client may have gone away
                        item.future.set_result(out)
            self.passes += 1
            self.requests_batched += len(batch)
            seconds = time.perf_counter() - started
            per_row = seconds / max(1, self._inflight_rows)
            self._row_s = per_row if self._row_s is None else 0.7 * self._row_s + 0.3 * per_row
            self._inflight_rows = 0
            self.metrics.model_pass(len(batch), seconds)

    # ---- fine-tuning ---------------------------------------------------------------------------------
    async def finetune(self, base_id: str, call: FinetuneCall) -> int:
        """Trains a finetuned copy of `base_id` and writes its checkpoint; returns the points it trained on."""
        if base_id in self.cpu_ids:
            raise RequestRejected(f"model {base_id!r} is fitted per series at request time and cannot be finetuned",
                                  ["body", "model"])
        forecaster = await self.model(base_id)
        if third_party.is_third_party(forecaster):  # a full copy, saved whole (it loads without its base)
            self._check_finetunable(base_id, forecaster)
            return await asyncio.to_thread(_rejecting_value_errors, third_party.finetune, forecaster, call.series,
                                           call.config, call.output_dir, base_id, call.metadata)
        result = await asyncio.to_thread(finetune, forecaster.model, call.series, call.config)
        # The same `training` summary a Ray Train job writes: its validation is the model's verdict.
        training = {"finetune_points": result.points, "steps_completed": len(result.history),
                    "validation": result.validation}
        await asyncio.to_thread(save_finetuned, result.model, call.output_dir, base_id, self.model_dir(base_id),
                                call.config, {**call.metadata, "training": training})
        return result.points

    @staticmethod
    def _check_finetunable(model_id: str, forecaster) -> None:
        """A 422 naming the model for a third-party family tsfm_core.third_party.finetune cannot train."""
        if not third_party.finetunable(forecaster):
            raise RequestRejected(f"model {model_id!r} is a {getattr(forecaster, 'family', 'third-party')} checkpoint, "
                                  "which cannot be finetuned here (Chronos-Bolt and Chronos-2 can)", ["body", "model"])

    def stats(self) -> dict:
        return {"batches_run": self.passes, "requests_batched": self.requests_batched, "device": self.device,
                "models_loaded": list(self._models), "waiting": len(self._pending)}


def _rejecting_value_errors(fn, *args):
    """`fn(*args)`, its ValueError (a setting a third-party finetune cannot honour, e.g. LoRA; no
    usable series) turned into the request's 422."""
    try:
        return fn(*args)
    except ValueError as exc:
        raise RequestRejected(str(exc)) from None


def torch_device(use_gpu: bool) -> str:
    return "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
