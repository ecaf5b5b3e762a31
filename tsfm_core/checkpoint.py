"""Model directories: `config.json` + `model.safetensors`.

A base model stores every tensor. A finetuned model stores only the tensors it trained (a depth
subset or LoRA adapters) and names its base by id and sha256 digest, so it is small and can never
be silently applied to different base weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save_file

from tsfm_core.finetune import FinetuneConfig, LoraConfig, apply_lora, trainable_state
from tsfm_core.model import ModelConfig, PatchTransformer

BASE_MODEL_DIR = Path(__file__).parent / "weights" / "tsfm-base"
BASE_MODEL_ID = "tsfm-base"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(ValueError):
    pass


def bundled_model_dir(model_id: str) -> Path | None:
    """The directory of a model that ships inside this package, or None."""
    return BASE_MODEL_DIR if model_id == BASE_MODEL_ID else None


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(model: PatchTransformer, directory: str | Path, metadata: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, directory / WEIGHTS_FILE)
    _write_config(directory, {"kind": "base", "model": model.config.to_dict(), **(metadata or {})})
    return directory


def save_finetuned(model: PatchTransformer, directory: str | Path, base_id: str, base_dir: Path,
                   finetune: FinetuneConfig, metadata: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), directory / WEIGHTS_FILE)
    config = {
        "kind": "finetuned",
        "model": model.config.to_dict(),
        "base_model": base_id,
        "base_digest": file_digest(base_dir / WEIGHTS_FILE),
        "finetune": finetune.to_dict(),
        **(metadata or {}),
    }
    _write_config(directory, config)
    return directory


def _write_config(directory: Path, config: dict) -> None:
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(directory / CONFIG_FILE)


def read_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"no {CONFIG_FILE} in {directory}")
    return json.loads(path.read_text())


def load_model(directory: str | Path = BASE_MODEL_DIR,
               resolve_base: Callable[[str], Path] | None = None,
               device: str = "cpu") -> PatchTransformer:
    """Loads a base or finetuned model directory; `resolve_base(id)` finds a finetuned model's base."""
    directory = Path(directory)
    config = read_config(directory)
    state = load_file(directory / WEIGHTS_FILE, device=device)
    if config.get("kind", "base") == "base":
        model = PatchTransformer(ModelConfig.from_dict(config["model"]))
        model.load_state_dict(state)
    else:
        base_dir = (resolve_base or _sibling_resolver(directory))(config["base_model"])
        if file_digest(base_dir / WEIGHTS_FILE) != config["base_digest"]:
            raise CheckpointError(f"base model {config['base_model']} weights changed since finetuning")
        model = load_model(base_dir, resolve_base, device)
        finetune = FinetuneConfig(**config["finetune"])
        if finetune.lora is not None:
            apply_lora(model, finetune.lora if isinstance(finetune.lora, LoraConfig) else LoraConfig(**finetune.lora))
        missing = set(state) - set(model.state_dict())
        if missing:
            raise CheckpointError(f"finetuned tensors do not fit the base model: {sorted(missing)[:3]}")
        model.load_state_dict(state, strict=False)
    return model.to(device).eval()


def _sibling_resolver(directory: Path) -> Callable[[str], Path]:
    """Default base lookup: the bundled model, else a sibling directory named by the id (the
    artifact store keeps every model under one folder, so chains of finetunes resolve)."""

    def resolve(model_id: str) -> Path:
        bundled = bundled_model_dir(model_id)
        if bundled is not None:
            return bundled
        sibling = directory.parent / model_id
        if (sibling / CONFIG_FILE).exists():
            return sibling
        raise CheckpointError(f"unknown base model {model_id!r}")

    return resolve
