"""The unmodified nixtla SDK (NixtlaClient) against the real server, plus raw /v2 validation."""

import numpy as np
import pandas as pd
import pytest
from nixtla import NixtlaClient

from tests.conftest import seasonal_series, wait_for


@pytest.fixture(scope="module")
def client(server):
    return NixtlaClient(api_key="test-key", base_url=server.url, max_retries=1)


def _df(n_series=2, n=80):
    frames = [pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2024-01-01", periods=n, freq="D"),
                            "y": seasonal_series(n, period=7, seed=i)}) for i in range(n_series)]
    return pd.concat(frames, ignore_index=True)


def test_model_params(http):
    r = http.get("/model_params", params={"model": "timegpt-1", "freq": "D"})
    assert r.status_code == 200
    assert r.json() == {"detail": {"input_size": 512, "horizon": 32}}
    assert http.get("/model_params", params={"model": "nope"}).status_code == 404


def test_sdk_forecast_with_levels_and_quantiles(client):
    df = _df()
    fc = client.forecast(df=df, h=7, freq="D", level=[80, 95])
    assert list(fc.columns) == ["unique_id", "ds", "TimeGPT", "TimeGPT-hi-80", "TimeGPT-hi-95", "TimeGPT-lo-80", "TimeGPT-lo-95"]
    assert len(fc) == 14
    assert (fc["TimeGPT-lo-95"] <= fc["TimeGPT-lo-80"]).all() and (fc["TimeGPT-lo-80"] <= fc["TimeGPT"]).all()
    assert (fc["TimeGPT"] <= fc["TimeGPT-hi-80"]).all() and (fc["TimeGPT-hi-80"] <= fc["TimeGPT-hi-95"]).all()
    assert fc["ds"].min() == pd.Timestamp("2024-03-21")
    q = client.forecast(df=df, h=7, freq="D", quantiles=[0.1, 0.5, 0.9])
    assert {"TimeGPT-q-10", "TimeGPT-q-50", "TimeGPT-q-90"} <= set(q.columns)
    assert np.allclose(q["TimeGPT-q-50"], fc["TimeGPT"])


def test_sdk_forecast_with_exogenous_features(client):
    df = _df()
    rng = np.random.default_rng(0)
    df["promo"] = rng.integers(0, 2, len(df)).astype(float)
    df["y"] += 20 * df["promo"]
    future = pd.DataFrame({"unique_id": np.repeat(["s0", "s1"], 7),
                           "ds": list(pd.date_range("2024-03-21", periods=7, freq="D")) * 2,
                           "promo": [1.0, 0.0] * 7})
    fc = client.forecast(df=df, X_df=future, h=7, freq="D")
    assert len(fc) == 14 and np.isfinite(fc["TimeGPT"]).all()
    weights = client.weights_x
    assert list(weights["features"]) == ["promo"] and weights["weights"].iloc[0] > 0
    promo = future["promo"].to_numpy() == 1.0
    assert fc["TimeGPT"].to_numpy()[promo].mean() > fc["TimeGPT"].to_numpy()[~promo].mean() + 10


def test_sdk_feature_contributions_add_up_to_the_forecast(client):
    df = _df()
    rng = np.random.default_rng(1)
    df["promo"] = rng.integers(0, 2, len(df)).astype(float)
    df["noise"] = rng.normal(size=len(df))
    df["y"] += 20 * df["promo"]
    future = pd.DataFrame({"unique_id": np.repeat(["s0", "s1"], 7),
                           "ds": list(pd.date_range("2024-03-21", periods=7, freq="D")) * 2,
                           "promo": [1.0, 0.0] * 7})
    fc = client.forecast(df=df, X_df=future, h=7, freq="D", hist_exog_list=["noise"], feature_contributions=True)
    shap = client.feature_contributions
    assert list(shap.columns) == ["unique_id", "ds", "TimeGPT", "promo", "noise", "base_value"]
    assert np.allclose(shap["promo"] + shap["noise"] + shap["base_value"], fc["TimeGPT"], atol=1e-6)
    assert (shap["noise"] == 0).all()  # a historical-only feature does not move the forecast
    promo = future["promo"].to_numpy() == 1.0
    assert (shap["promo"].to_numpy()[promo] > 5).all() and (shap["promo"].to_numpy()[~promo] < -5).all()
    # With add_history the in-sample rows get contributions too (0: backtests ignore features).
    both = client.forecast(df=df, X_df=future, h=7, freq="D", feature_contributions=True, add_history=True)
    assert len(client.feature_contributions) == len(both) > 14


def test_sdk_finetune_list_use_and_delete(client, http):
    df = _df()
    model_id = client.finetune(df=df, freq="D", finetune_steps=5, finetune_depth=2, finetune_loss="mae",
                               output_model_id="sdk-model-1")
    assert model_id == "sdk-model-1"
    listed = client.finetuned_models()
    assert "sdk-model-1" in [m.id for m in listed]
    info = client.finetuned_model("sdk-model-1")
    assert (info.steps, info.depth, info.loss, info.base_model_id) == (5, 2, "mae", "tsfm-base")
    base = client.forecast(df=df, h=7, freq="D")
    tuned = client.forecast(df=df, h=7, freq="D", finetuned_model_id="sdk-model-1")
    assert not np.allclose(base["TimeGPT"], tuned["TimeGPT"])
    # A further finetune on top of the finetuned model.
    child = client.finetune(df=df, freq="D", finetune_steps=3, finetuned_model_id="sdk-model-1")
    assert client.finetuned_model(child).base_model_id == "sdk-model-1"
    assert len(client.forecast(df=df, h=3, freq="D", finetuned_model_id=child)) == 6
    parent = http.delete("/v2/finetuned_models/sdk-model-1")  # its child's weights sit on top of it
    assert parent.status_code == 409 and child in parent.json()["detail"][0]["msg"]
    assert client.delete_finetuned_model(child) is True
    assert client.delete_finetuned_model("sdk-model-1") is True
    assert "sdk-model-1" not in [m.id for m in client.finetuned_models()]


def test_sdk_forecast_with_inline_finetune_steps(client):
    df = _df()
    fc = client.forecast(df=df, h=7, freq="D", finetune_steps=5, finetune_depth=3, finetune_loss="smape")
    assert len(fc) == 14 and np.isfinite(fc["TimeGPT"]).all()


def test_large_bodies_arrive_zstd_compressed(client):
    # Over 1 MB the SDK compresses the body with zstd; the server must decode it.
    df = _df(n_series=120, n=1000)
    fc = client.forecast(df=df, h=2, freq="D", level=[50], finetune_steps=1)
    assert len(fc) == 240


def test_duplicate_output_model_id_and_unknown_parent(http):
    body = {"series": {"y": [float(v) for v in seasonal_series(40)], "sizes": [40]}, "freq": "D", "finetune_steps": 2,
            "output_model_id": "dup-model"}
    assert http.post("/v2/finetune", json=body).status_code == 200
    r = http.post("/v2/finetune", json=body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "output_model_id"]
    r = http.post("/v2/finetune", json={**body, "output_model_id": None, "finetuned_model_id": "missing"})
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["body", "finetuned_model_id"]
    assert http.get("/v2/finetuned_models/missing").status_code == 404
    assert http.delete("/v2/finetuned_models/missing").status_code == 404


NIXTLA_BAD = [
    ({"series": {"y": [1.0, 2.0, 3.0], "sizes": [2]}}, ["body", "series"]),
    ({"h": 0}, ["body", "h"]),
    ({"finetune_depth": 7}, ["body", "finetune_depth"]),
    ({"finetune_loss": "huber"}, ["body", "finetune_loss"]),
    ({"level": [120]}, ["body", "level", 0]),
    ({"multivariate": True}, ["body", "multivariate"]),
    ({"finetuned_model_id": "bad id!"}, ["body", "finetuned_model_id"]),
    ({"series": {"y": [1.0, 2.0, 3.0], "sizes": [3], "X": [[1.0, 2.0]], "X_future": [[1.0]]}}, ["body", "series", "X"]),
    ({"series": {"y": [1.0, 2.0, 3.0], "sizes": [3], "X": [[1.0, 2.0, 3.0]], "X_future": [[1.0]]}}, ["body", "series", "X_future"]),
    ({"finetune_steps": 100000}, ["body", "finetune_steps"]),
]


@pytest.mark.parametrize("patch,loc", NIXTLA_BAD)
def test_v2_forecast_validation(http, patch, loc):
    body = {"series": {"y": [1.0, 2.0, 3.0], "sizes": [3]}, "model": "timegpt-1", "h": 2, "freq": "D"}
    body.update(patch)
    r = http.post("/v2/forecast", json=body)
    assert r.status_code == 422, r.text
    assert any(d["loc"][: len(loc)] == loc for d in r.json()["detail"]), r.json()


def test_finetune_above_the_replica_threshold_runs_as_a_ray_train_job(server, http):
    # On the shared server fine-tunes of more than 30 steps are Ray Train jobs and a call waits 5 s
    # for one (conftest.SERVER_ENV). A call that stops waiting says where the job goes on.
    body = {"series": {"y": [float(v) for v in seasonal_series(80, period=7)], "sizes": [80]}, "freq": "D",
            "finetune_steps": 5000, "output_model_id": "long-raw"}
    r = http.post("/v2/finetune", json=body)
    assert r.status_code == 504, r.text
    issue = r.json()["detail"][0]
    assert issue["loc"] == ["body", "finetune_steps"] and "POST /v2/finetune/async" in issue["msg"]
    assert http.get("/v2/finetuned_models/long-raw").json()["steps"] == 5000
    assert http.delete("/v2/finetuned_models/long-raw").status_code == 204  # stops its job
    # The SDK retries a 504 with the same body, and each retry waits for the same job: the call
    # returns its model once the job is done, and only one job trained it.
    patient = NixtlaClient(api_key="test-key", base_url=server.url, max_retries=200, retry_interval=1,
                           max_wait_time=600)
    model_id = patient.finetune(df=_df(n=80), freq="D", finetune_steps=40, finetune_depth=2, finetune_loss="mae")
    model = http.get(f"/v2/finetuned_models/{model_id}").json()
    assert (model["status"], model["steps"], model["depth"], model["loss"]) == ("ready", 40, 2, "mae")
    jobs = [j for j in http.get("/v1/fine_tuning/jobs", params={"limit": 100}).json()["data"]
            if model_id in (j.get("fine_tuned_model") or "")]
    assert [j["status"] for j in jobs] == ["succeeded"]
    fc = patient.forecast(df=_df(n=80), h=7, freq="D", finetuned_model_id=model_id)
    assert len(fc) == 14 and np.isfinite(fc["TimeGPT"]).all()


def test_v2_finetune_validation(http):
    r = http.post("/v2/finetune", json={"series": {"y": [1.0], "sizes": [1]}, "finetune_steps": 0})
    locs = [d["loc"] for d in r.json()["detail"]]
    assert r.status_code == 422 and ["body", "freq"] in locs and ["body", "finetune_steps"] in locs


# ---- cross-validation, in-sample forecasts, anomaly detection ------------------------------------
def _uneven_df():
    frames = [pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2024-01-01", periods=n, freq="D"),
                            "y": seasonal_series(n, period=7, seed=i)}) for i, n in enumerate([100, 80])]
    return pd.concat(frames, ignore_index=True)


def test_sdk_cross_validation_matches_forecasts_from_each_cutoff(client):
    df = _uneven_df()
    cv = client.cross_validation(df=df, h=7, n_windows=3, step_size=5, freq="D", level=[80])
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "y", "TimeGPT", "TimeGPT-hi-80", "TimeGPT-lo-80"]
    assert len(cv) == 2 * 3 * 7
    last = df.groupby("unique_id")["ds"].max()
    for uid, group in cv.groupby("unique_id"):
        cutoffs = sorted(group["cutoff"].unique())
        assert cutoffs == [last[uid] - pd.Timedelta(days=d) for d in (17, 12, 7)]
        assert (group["ds"] > group["cutoff"]).all()
        truth = df[df.unique_id == uid].set_index("ds")["y"]
        assert np.allclose(group["y"], truth.loc[group["ds"]].to_numpy())
    # Each window is exactly a forecast from its cutoff.
    uid, cutoff = "s1", cv[cv.unique_id == "s1"]["cutoff"].min()
    history = df[(df.unique_id == uid) & (df.ds <= cutoff)]
    fc = client.forecast(df=history, h=7, freq="D", level=[80])
    window = cv[(cv.unique_id == uid) & (cv.cutoff == cutoff)]
    assert np.allclose(window["TimeGPT"], fc["TimeGPT"], rtol=1e-3)
    assert np.allclose(window["TimeGPT-lo-80"], fc["TimeGPT-lo-80"], rtol=1e-3)
    # On a clean seasonal series the backtest error is small next to the series' spread.
    assert np.mean(np.abs(cv["y"] - cv["TimeGPT"])) < 0.5 * df["y"].std()


def test_sdk_cross_validation_with_finetune_steps(client):
    df = _uneven_df()
    plain = client.cross_validation(df=df, h=7, n_windows=2, freq="D")
    # refit (the SDK's default) finetunes again before every window; without it, once before the first.
    for refit in (True, False):
        tuned = client.cross_validation(df=df, h=7, n_windows=2, freq="D", finetune_steps=5, finetune_depth=2, refit=refit)
        # Every in-call finetune validates and keeps the base when tuning does not clearly help
        # (tsfm_core.model_selection), so the forecasts may equal the plain ones; they stay whole.
        assert len(tuned) == len(plain) and np.isfinite(tuned["TimeGPT"]).all()
        assert (tuned[["unique_id", "ds", "cutoff"]].to_numpy() == plain[["unique_id", "ds", "cutoff"]].to_numpy()).all()


def test_sdk_forecast_add_history(client):
    df = _uneven_df()
    fc = client.forecast(df=df, h=7, freq="D", add_history=True, level=[90])
    assert list(fc.columns) == ["unique_id", "ds", "TimeGPT", "TimeGPT-hi-90", "TimeGPT-lo-90"]
    # The first 32 points of each series (the model's output patch) are context only.
    assert len(fc) == (100 - 32) + (80 - 32) + 2 * 7
    s0 = fc[fc.unique_id == "s0"]
    assert s0["ds"].is_monotonic_increasing and s0["ds"].iloc[0] == pd.Timestamp("2024-01-01") + pd.Timedelta(days=32)
    history = s0[s0.ds <= pd.Timestamp("2024-04-09")]
    truth = df[df.unique_id == "s0"].set_index("ds")["y"].loc[history["ds"]].to_numpy()
    assert np.mean(np.abs(history["TimeGPT"].to_numpy() - truth)) < 0.5 * truth.std()


def _with_spike(df, row=50, size=40.0):
    spiked = df.copy()
    spiked.loc[row, "y"] += size
    return spiked, spiked.loc[row, "ds"]


def test_sdk_detect_anomalies_flags_a_spike(client):
    df, spike_day = _with_spike(_uneven_df())
    out = client.detect_anomalies(df=df, freq="D", level=99)
    assert list(out.columns) == ["unique_id", "ds", "y", "TimeGPT", "TimeGPT-hi-99", "TimeGPT-lo-99", "anomaly"]
    assert len(out) == (100 - 32) + (80 - 32)
    flagged = out[out.anomaly]
    assert ((flagged.unique_id == "s0") & (flagged.ds == spike_day)).any()
    assert len(flagged) <= 0.05 * len(out)


def test_sdk_detect_anomalies_online(client):
    df, spike_day = _with_spike(_uneven_df(), row=85)
    out = client.detect_anomalies_online(df=df, h=7, detection_size=20, freq="D", level=99)
    assert {"anomaly", "anomaly_score", "TimeGPT-lo-99", "TimeGPT-hi-99"} <= set(out.columns)
    assert len(out) == 2 * 20
    spike = out[(out.unique_id == "s0") & (out.ds == spike_day)]
    assert spike["anomaly"].item() and spike["anomaly_score"].item() > 5
    assert out["anomaly"].sum() <= 3
    # Multivariate: one accumulated score per time step, shared by every series, over equal lengths.
    even, day = _with_spike(_df(n=80), row=70)
    multi = client.detect_anomalies_online(df=even, h=7, detection_size=14, freq="D", threshold_method="multivariate")
    per_day = multi.groupby("ds")["accumulated_anomaly_score"].nunique()
    assert (per_day == 1).all()
    assert multi[multi.ds == day]["anomaly"].all()


BACKTEST_BAD = [
    ("/v2/cross_validation", {"h": 7, "n_windows": 3, "step_size": 5, "series": {"y": [1.0] * 40 + [2.0] * 10, "sizes": [40, 10]}},
     ["body", "series", "sizes", 1]),
    ("/v2/cross_validation", {"h": 1, "n_windows": 0}, ["body", "n_windows"]),
    ("/v2/cross_validation", {"h": 1, "step_size": 1, "n_windows": 20001, "series": {"y": [1.0] * 20002, "sizes": [20002]}},
     ["body", "n_windows"]),
    ("/v2/cross_validation", {"h": 2, "n_windows": 3, "finetune_steps": 200, "refit": True}, ["body", "finetune_steps"]),
    ("/v2/cross_validation", {"h": 2, "level": [100]}, ["body", "level", 0]),
    ("/v2/anomaly_detection", {"level": 100}, ["body", "level"]),
    ("/v2/anomaly_detection", {"multivariate": True}, ["body", "multivariate"]),
    ("/v2/online_anomaly_detection", {"h": 2}, ["body", "detection_size"]),
    ("/v2/online_anomaly_detection", {"h": 2, "detection_size": 5, "threshold_method": "global"}, ["body", "threshold_method"]),
    ("/v2/online_anomaly_detection", {"h": 2, "detection_size": 5, "threshold_method": "multivariate",
                                      "series": {"y": [1.0] * 50, "sizes": [30, 20]}}, ["body", "series", "sizes"]),
]


@pytest.mark.parametrize("path,patch,loc", BACKTEST_BAD)
def test_backtest_validation(http, path, patch, loc):
    body = {"series": {"y": [float(i % 7) for i in range(40)], "sizes": [40]}, "model": "timegpt-1", "freq": "D"}
    body.update(patch)
    r = http.post(path, json=body)
    assert r.status_code == 422, r.text
    assert any(d["loc"][: len(loc)] == loc for d in r.json()["detail"]), r.json()


def test_backtest_with_a_single_point_series(http):
    r = http.post("/v2/anomaly_detection", json={"series": {"y": [1.0, 5.0, 2.0] * 20 + [3.0], "sizes": [60, 1]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sizes"] == [30, 0] and len(body["mean"]) == len(body["anomaly"]) == 30


# ---- async jobs (client.jobs.*) -------------------------------------------------------------------
def test_sdk_async_jobs_match_the_synchronous_calls(client):
    from nixtla.jobs import JobStatus

    df = _uneven_df()
    job = client.jobs.forecast(df=df, h=7, freq="D", level=[80])
    result = job.wait(poll_interval=0.2, poll_timeout=120)
    assert job.status == JobStatus.SUCCEEDED
    pd.testing.assert_frame_equal(result, client.forecast(df=df, h=7, freq="D", level=[80]), rtol=1e-4)
    cv = client.jobs.cross_validation(df=df, h=7, n_windows=2, freq="D").wait(poll_interval=0.2, poll_timeout=120)
    assert len(cv) == 2 * 2 * 7 and "cutoff" in cv.columns
    online = client.jobs.detect_anomalies(df=df, h=7, detection_size=10, freq="D").wait(poll_interval=0.2, poll_timeout=120)
    assert len(online) == 2 * 10 and "anomaly_score" in online.columns
    model_id = client.jobs.finetune(df=df, freq="D", finetune_steps=3).wait(poll_interval=0.2, poll_timeout=120)
    assert model_id in client.finetuned_models(as_df=True)["id"].tolist()


def test_sdk_async_job_cancel_and_timeout(client):
    from nixtla.jobs import JobCancelledError, JobError

    df = _df(n=200)
    job = client.jobs.finetune(df=df, freq="D", finetune_steps=500)
    job.cancel()
    with pytest.raises(JobCancelledError):
        job.wait(poll_interval=0.2, poll_timeout=60)
    slow = client.jobs.finetune(df=df, freq="D", finetune_steps=500, job_timeout_seconds=1)
    with pytest.raises(JobError) as exc:
        slow.wait(poll_interval=0.5, poll_timeout=120)
    assert "timeout_seconds" in str(exc.value)


def test_async_job_validation_isolation_and_conflicts(http, other_org):
    r = http.post("/v2/forecast/async", json={"series": {"y": [1.0, 2.0], "sizes": [2]}, "h": 0})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "h"]
    r = http.post("/v2/forecast/async", json={"series": {"y": [1.0, 2.0], "sizes": [2]}, "h": 1,
                                              "job_options": {"timeout_seconds": -1}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "job_options", "timeout_seconds"]
    r = http.post("/v2/forecast/async", json={"series": {"y": [1.0, 2.0], "sizes": [2]}, "h": 1, "model": "nope"})
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["body", "model"]
    assert http.post("/v2/explain/async", json={}).status_code == 404
    r = http.post("/v2/forecast/async", json={"series": {"y": [1.0, 2.0, 3.0], "sizes": [3]}, "h": 2, "freq": "D"})
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    done = wait_for(lambda: http.get(f"/v2/forecast/jobs/{job_id}").json(), lambda j: j["status"] == "succeeded", 60)
    assert len(done["result"]["mean"]) == 2 and done["error"] is None
    assert other_org.get(f"/v2/forecast/jobs/{job_id}").status_code == 404
    assert other_org.post(f"/v2/async/jobs/{job_id}/cancel").status_code == 404
    assert http.get(f"/v2/cross_validation/jobs/{job_id}").status_code == 404
    assert http.post(f"/v2/async/jobs/{job_id}/cancel").status_code == 409


def test_sdk_simulate_paths_follow_the_forecast(client, http):
    df = _uneven_df()
    sims = client.simulate(df=df, h=7, freq="D", n_paths=400, seed=3, poll_interval=0.2)
    assert list(sims.columns) == ["unique_id", "ds", "sample_id", "TimeGPT", "coupled"]
    assert len(sims) == 2 * 7 * 400 and not sims["coupled"].any()
    again = client.simulate(df=df, h=7, freq="D", n_paths=400, seed=3, poll_interval=0.2)
    assert np.array_equal(sims["TimeGPT"], again["TimeGPT"])
    other = client.simulate(df=df, h=7, freq="D", n_paths=400, seed=4, poll_interval=0.2)
    assert not np.array_equal(sims["TimeGPT"], other["TimeGPT"])
    # The paths' per-step median and 10%/90% quantiles are the forecast's.
    fc = client.forecast(df=df, h=7, freq="D", level=[80]).set_index(["unique_id", "ds"])
    stats = sims.groupby(["unique_id", "ds"])["TimeGPT"].quantile([0.1, 0.5, 0.9]).unstack()
    stats = stats.loc[fc.index]
    spread = (fc["TimeGPT-hi-80"] - fc["TimeGPT-lo-80"]).to_numpy()
    assert np.all(np.abs(stats[0.5].to_numpy() - fc["TimeGPT"].to_numpy()) < 0.15 * spread)
    assert np.all(np.abs(stats[0.9].to_numpy() - fc["TimeGPT-hi-80"].to_numpy()) < 0.2 * spread)
    # Validation happens at submission: 422s naming the field.
    body = {"series": {"y": [1.0, 2.0, 3.0], "sizes": [3]}, "h": 2, "freq": "D"}
    r = http.post("/v2/simulate/async", json={**body, "quantiles": [0.5, 0.2]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "quantiles"]
    r = http.post("/v2/simulate/async", json={**body, "n_paths": 10_000, "h": 400})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "n_paths"]
