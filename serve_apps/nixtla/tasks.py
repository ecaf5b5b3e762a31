"""The Nixtla TimeGPT v2 tasks, each split in two: `prepare` validates a body and resolves its
model (every 4xx is raised there) and returns `run`, which does the work. The synchronous routes
call both at once; the async job API prepares at submission, so a bad body is still a 422, and
runs later (`run_stored`), possibly in another ingress replica or after a restart.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import sqlalchemy as sa
from pydantic import BaseModel

from serve_apps.auth import Caller
from serve_apps.dialects import nixtla, nixtla_backtest, nixtla_simulate
from serve_apps.dialects.numbers import check_finite_answer
from serve_apps.errors import invalid
from serve_apps.finetuning.verdict import judge, refused, training_summary
from serve_apps.models.registry import (
    ModelNotFound,
    ModelStatus,
    Registry,
    new_model_id,
)
from serve_apps.models.resolver import ModelResolver
from serve_apps.nixtla.async_store import AsyncJobRecord
from serve_apps.nixtla.cluster_finetune import ClusterFinetune
from serve_apps.replica.calls import FinetuneCall, ForecastCall
from serve_apps.replica.client import ModelClient
from serve_apps.settings import Settings
from tsfm_core import backtest, simulate
from tsfm_core.backtest import Backtest, Window
from tsfm_core.finetune import FinetuneConfig

Run = Callable[[], Awaitable[dict]]

BODIES: dict[str, type[BaseModel]] = {
    "forecast": nixtla.NixtlaForecastBody,
    "cross_validation": nixtla_backtest.CrossValidationBody,
    "anomaly_detection": nixtla_backtest.AnomalyDetectionBody,
    "online_anomaly_detection": nixtla_backtest.OnlineAnomalyDetectionBody,
    "finetune": nixtla.NixtlaFinetuneBody,
    "simulate": nixtla_simulate.SimulateBody,
}


def parse(task: str, payload: Any) -> tuple[str, BaseModel]:
    """A raw body -> (task, validated body); raises pydantic's ValidationError. The SDK's async
    `jobs.detect_anomalies` posts the online detector's body to anomaly_detection (what the name
    means from nixtla 1.0 on): a `detection_size` selects the online detector."""
    if task == "anomaly_detection" and isinstance(payload, dict) and "detection_size" in payload:
        task = "online_anomaly_detection"
    return task, BODIES[task].model_validate(payload)


# Tasks whose fine-tunes may run as Ray Train jobs (cluster_finetune), which wait differently when
# called by an async job.
CLUSTER_TASKS = ("forecast", "finetune")


class NixtlaTasks:
    def __init__(self, settings: Settings, registry: Registry, resolver: ModelResolver, models: ModelClient,
                 max_context: int, output_patch_len: int, cluster: ClusterFinetune):
        self.settings, self.registry, self.resolver, self.models = settings, registry, resolver, models
        self.max_context, self.output_patch_len = max_context, output_patch_len
        self.cluster = cluster

    def prepare(self, task: str, body: BaseModel, caller: Caller, in_job: bool = False) -> Run:
        """`in_job`: an async job runs it (a Ray Train fine-tune then waits without a limit of its own)."""
        extra = {"in_job": in_job} if task in CLUSTER_TASKS else {}
        run = getattr(self, f"_prepare_{task}")(body, caller, **extra)

        async def checked() -> dict:
            # No 200 carries a null: json would write a NaN forecast as null (or as invalid JSON).
            out = await run()
            check_finite_answer(out, ["body", "series", "y"])
            return out
        return checked

    async def run_stored(self, record: AsyncJobRecord, payload: dict) -> dict:
        """Runs an accepted async job from its stored body (the AsyncJobRunner calls this)."""
        task, body = parse(record.task, payload)
        if task == "finetune" and record.attempts > 1:
            self._discard_unfinished(body.output_model_id, record)
        caller = Caller(organization=record.organization, key_hint=record.created_by)
        return await self.prepare(task, body, caller, in_job=True)()

    def _discard_unfinished(self, model_id: str, record: AsyncJobRecord) -> None:
        """An attempt that died with its server left its model 'finetuning': the redo starts over.
        The id was free when the job was accepted, so a row made since then is that attempt's."""
        try:
            model = self.registry.get(model_id, record.organization)
        except ModelNotFound:
            return
        # A model a Ray Train job makes outlives its attempt: the redo waits for that job instead.
        if model.status == ModelStatus.FINETUNING and model.created_at >= record.created_at \
                and not self.cluster.owns(model.id):
            self.registry.discard(model.id)

    def model_for(self, body: Any, caller: Caller, trainable: bool = False) -> str:
        """A finetuned_model_id, when given, overrides the model name (as TimeGPT does). `trainable`:
        a model a Ray Train job can start from (statistical models have no weights: 422)."""
        resolve = self.resolver.resolve_trainable if trainable else self.resolver.resolve
        if body.finetuned_model_id:
            return resolve(body.finetuned_model_id, caller.organization, ["body", "finetuned_model_id"]).id
        return resolve(body.model, caller.organization, ["body", "model"]).id

    async def _forecast(self, model_id: str, call: ForecastCall):
        return await self.models.forecast(model_id, call)

    # ---- forecast ---------------------------------------------------------------------------------
    def _prepare_forecast(self, body: nixtla.NixtlaForecastBody, caller: Caller, in_job: bool = False) -> Run:
        n_series = len(body.series.sizes)
        self.settings.work_limits.check(
            series=n_series, points=len(body.series.y), output_values=n_series * body.h * (1 + 2 * len(body.level or [])),
            series_loc=["body", "series", "sizes"], points_loc=["body", "series", "y"], output_loc=["body", "h"])
        model_id = self.model_for(body, caller)
        request = nixtla.to_forecast_request(body, self.settings.max_prediction_length)
        finetune = nixtla.forecast_finetune(body, self.settings.max_job_steps)
        if self.cluster.wanted(finetune):  # too long for a replica: a Ray Train job, then this forecast
            return self.cluster.prepare_forecast(body, caller, self.model_for(body, caller, trainable=True), finetune,
                                                 self._forecast, ForecastCall(request=request), in_job)

        async def run() -> dict:
            results = await self._forecast(model_id, ForecastCall(request=request, finetune=finetune))
            return nixtla.forecast_response(body, results)
        return run

    # ---- backtests --------------------------------------------------------------------------------
    async def _backtest(self, model_id: str, series: list, windows: list[Window], levels: list[float],
                        finetune: FinetuneConfig | None = None, refit: bool = False) -> Backtest:
        """All windows go in one forecast job (batched like any other), or with a refitting finetune
        one job per round of windows, each tuned on the data before its round."""
        rounds = backtest.by_rank(windows) if finetune is not None and refit else [list(range(len(windows)))]
        results: list = [None] * len(windows)

        async def forecast_round(indexes: list[int]) -> None:
            chosen = [windows[i] for i in indexes]
            call = ForecastCall(request=backtest.window_request(series, chosen, levels, self.max_context), finetune=finetune,
                              finetune_series=backtest.training_prefixes(series, chosen) if finetune else None)
            for i, result in zip(indexes, await self._forecast(model_id, call)):
                results[i] = result

        await asyncio.gather(*(forecast_round(r) for r in rounds if r))
        return backtest.collect(windows, results, len(levels))

    def _prepare_cross_validation(self, body: nixtla_backtest.CrossValidationBody, caller: Caller) -> Run:
        model_id = self.model_for(body, caller)
        series, windows = nixtla_backtest.cross_validation_plan(body, self.output_patch_len,
                                                                self.settings.max_backtest_windows)
        finetune = nixtla_backtest.finetune_for(body, windows, self.settings.max_sync_finetune_steps)
        levels = nixtla.level_quantiles(body.level or [])

        async def run() -> dict:
            result = await self._backtest(model_id, series, windows, levels, finetune, body.refit)
            return nixtla_backtest.cross_validation_response(body, series, result, levels)
        return run

    def _prepare_anomaly_detection(self, body: nixtla_backtest.AnomalyDetectionBody, caller: Caller) -> Run:
        model_id = self.model_for(body, caller)
        series, windows = nixtla_backtest.anomaly_plan(body, self.output_patch_len, self.settings.max_backtest_windows)
        levels = nixtla.level_quantiles([body.level])

        async def run() -> dict:
            result = await self._backtest(model_id, series, windows, levels)
            return nixtla_backtest.anomaly_response(body, series, result, levels)
        return run

    def _prepare_online_anomaly_detection(self, body: nixtla_backtest.OnlineAnomalyDetectionBody, caller: Caller) -> Run:
        model_id = self.model_for(body, caller)
        series, windows = nixtla_backtest.online_plan(body, self.settings.max_backtest_windows)
        finetune = nixtla_backtest.finetune_for(body, windows, self.settings.max_sync_finetune_steps)
        levels = nixtla.level_quantiles([body.level])

        async def run() -> dict:
            result = await self._backtest(model_id, series, windows, levels, finetune, body.refit)
            return nixtla_backtest.online_response(body, series, result, levels)
        return run

    # ---- simulate ---------------------------------------------------------------------------------
    def _prepare_simulate(self, body: nixtla_simulate.SimulateBody, caller: Caller) -> Run:
        model_id = self.model_for(body, caller)
        nixtla_simulate.check_size(body, self.settings.max_points)
        request = nixtla.to_forecast_request(body.as_forecast(), self.settings.max_prediction_length)
        levels = body.quantiles or simulate.DEFAULT_GRID
        request.levels = levels
        series = nixtla.split_series(body.series)
        error_horizon = min(body.h, self.output_patch_len)
        windows = nixtla_simulate.error_windows(series, error_horizon)

        async def run() -> dict:
            marginals = await self._forecast(model_id, ForecastCall(request=request))
            errors = []
            if windows:
                errors = await self._forecast(model_id, ForecastCall(
                    request=backtest.window_request(series, windows, nixtla_simulate.ERROR_LEVELS, self.max_context)))
            correlations = nixtla_simulate.error_correlations(series, windows, errors)
            rng = nixtla_simulate.generator(body.seed)
            paths = [simulate.sample_paths(levels, m.quantiles[:, :, 0], rho, body.n_paths, rng)
                     for m, rho in zip(marginals, correlations)]
            return nixtla_simulate.response(body, paths, correlations)
        return run

    # ---- finetune ---------------------------------------------------------------------------------
    def _prepare_finetune(self, body: nixtla.NixtlaFinetuneBody, caller: Caller, in_job: bool = False) -> Run:
        parent = self.model_for(body, caller)
        config = nixtla.finetune_config(body, self.settings.max_job_steps)
        if self.cluster.wanted(config):  # too long for a replica: a Ray Train job
            return self.cluster.prepare_finetune(body, caller, self.model_for(body, caller, trainable=True), config, in_job)
        public_id = body.output_model_id or new_model_id()
        model_id = self.resolver.check_new_id(public_id, caller.organization, ["body", "output_model_id"])

        async def run() -> dict:
            try:  # checked above, but another request may have taken the id since
                self.registry.add(model_id=model_id, organization=caller.organization, base_model_id=parent,
                                  source="nixtla", created_by=caller.key_hint, freq=body.freq,
                                  steps=config.steps, depth=config.depth, loss=config.loss, finetune_tokens=0,
                                  params={"requested_model": body.model}, status=ModelStatus.FINETUNING)
            except sa.exc.IntegrityError:
                raise invalid(["body", "output_model_id"], f"a model with id {public_id!r} already exists") from None
            call = FinetuneCall(series=nixtla.split_series(body.series), config=config,
                              output_dir=str(self.registry.artifact_path_for(model_id)), metadata={"id": public_id})
            try:
                points = await self.models.finetune(parent, call)
            except BaseException:
                self.registry.discard(model_id)
                raise
            # Judged like a fine-tuning job's model: the verdict on its record, `rejected` (a 409 when
            # used) if it is worse than its base and the operator refuses such models.
            verdict = judge(training_summary(call.output_dir).get("validation"))
            rejected = refused(verdict, self.settings.refuse_worse_finetunes)
            self.registry.update_params(model_id, {"validation": {**verdict.to_dict(), "promoted": not rejected}})
            self.registry.set_status(model_id, ModelStatus.REJECTED if rejected else ModelStatus.READY,
                                     finetune_tokens=points)
            return {"input_tokens": len(body.series.y), "output_tokens": 0, "finetune_tokens": points,
                    "finetuned_model_id": public_id}
        return run
