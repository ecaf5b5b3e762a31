"""ModelClient's lanes for ensembles and the errors that cross Ray as the request's doing (422)."""

import asyncio
import pickle

import numpy as np
import pytest

from serve_apps.errors import ApiError
from serve_apps.replica.calls import EnsembleCall, RequestRejected
from serve_apps.replica.client import ModelClient
from tsfm_core.ensemble import EnsembleConfig
from tsfm_core.predict import ForecastRequest
from tsfm_core.series import Series


class _Wrapped(Exception):
    """What Ray raises in the caller: the replica's exception as `cause`."""

    def __init__(self, cause):
        super().__init__("RayTaskError")
        self.cause = cause


class _Method:
    def __init__(self, log, answer):
        self.log, self.answer = log, answer

    async def remote(self, call):
        self.log.append(call)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _Handle:
    def __init__(self, answer):
        self.calls = []
        self.ensemble = _Method(self.calls, answer)


class _Local:
    def __init__(self):
        self.calls = []

    async def ensemble(self, call):
        self.calls.append(call)
        return "local"


def _call(points: int) -> EnsembleCall:
    series = [Series(values=np.ones((points, 1), dtype=np.float32))]
    return EnsembleCall(ForecastRequest(series, 4, [0.5]), EnsembleConfig(statistical=("SeasonalNaive",)))


def test_small_ensembles_stay_local_and_bulk_ones_go_to_the_model_server():
    local, remote = _Local(), _Handle("remote")
    client = ModelClient(local, remote, bulk_points=100)
    assert asyncio.run(client.ensemble(_call(50))) == "local"
    assert asyncio.run(client.ensemble(_call(500))) == "remote"
    assert len(local.calls) == 1 and len(remote.calls) == 1


class _RayStyle(RequestRejected):
    """Ray's RayTaskError also subclasses the remote exception's class; its str() is the traceback."""

    def __init__(self, cause):
        super().__init__("Traceback (most recent call last): ...", ["body"])
        self.cause = cause


def test_a_rejection_in_the_model_server_is_a_422_at_its_field():
    rejected = pickle.loads(pickle.dumps(RequestRejected("series 0 is too short", ["body", "finetune_steps"])))
    for raised in (_Wrapped(rejected), _RayStyle(rejected)):
        client = ModelClient(None, _Handle(raised), bulk_points=100)
        with pytest.raises(ApiError) as err:
            asyncio.run(client.ensemble(_call(10)))
        assert err.value.status == 422 and err.value.loc == ["body", "finetune_steps"]
        assert err.value.msg == "series 0 is too short"
    other = ModelClient(None, _Handle(_Wrapped(KeyError("bug"))), bulk_points=100)
    with pytest.raises(_Wrapped):  # anything else stays a server error
        asyncio.run(other.ensemble(_call(10)))
