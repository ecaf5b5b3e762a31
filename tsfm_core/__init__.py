"""tsfm_core: the time-series foundation model itself, in pure PyTorch/NumPy (no Ray).

Every transport (HTTP dialect, training job, CLI) converts its data to `Series` and calls into
this package; nothing here knows about Ray, HTTP or databases.
"""

from tsfm_core.checkpoint import BASE_MODEL_DIR, load_model, save_model
from tsfm_core.model import ModelConfig, PatchTransformer
from tsfm_core.predict import Forecaster, ForecastResult
from tsfm_core.series import Series

__all__ = [
    "BASE_MODEL_DIR",
    "Forecaster",
    "ForecastResult",
    "ModelConfig",
    "PatchTransformer",
    "Series",
    "load_model",
    "save_model",
]
