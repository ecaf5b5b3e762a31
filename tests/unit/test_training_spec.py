"""TrainingSpec and FinetuneRun: one typed spec from the dialects to the Ray Train worker."""

import json

import pytest

from train_jobs.spec import FinetuneRun, TrainingSpec
from tsfm_core.checkpoint import BASE_MODEL_DIR
from tsfm_core.finetune import FinetuneConfig, LoraConfig


def test_training_spec_round_trips_through_json_as_itself():
    spec = TrainingSpec(base_model="ft-abc", checkpoint_every=7, epochs=3,
                        finetune=FinetuneConfig(steps=40, depth=3, loss="mae", learning_rate=5e-4, batch_size=16,
                                                lora=LoraConfig(rank=4, alpha=8.0, targets="QKVO"), seed=11,
                                                early_stopping_patience=2, early_stopping_threshold=0.01))
    back = TrainingSpec.from_json(spec.to_json())
    assert back == spec
    assert isinstance(back.finetune, FinetuneConfig) and isinstance(back.finetune.lora, LoraConfig)
    assert (back.steps, back.batch_size, back.learning_rate, back.seed) == (40, 16, 5e-4, 11)


def test_training_spec_rejects_what_the_core_rejects():
    with pytest.raises(ValueError, match="depth"):
        TrainingSpec.from_dict({"finetune": {"depth": 9}})
    with pytest.raises(ValueError, match="checkpoint_every"):
        TrainingSpec(checkpoint_every=0)


def test_flags_and_run_file_give_the_same_run(tmp_path):
    argv = ["--data", "d.parquet", "--output", str(tmp_path / "out"), "--steps", "12", "--depth", "2", "--loss", "mae",
            "--lora-rank", "4", "--lora-targets", "QKVO", "--early-stopping-patience", "3", "--seed", "5",
            "--checkpoint-every", "4", "--num-workers", "2", "--name", "r1"]
    from_flags = FinetuneRun.from_argv(argv)
    assert from_flags.spec.base_model == "tsfm-base" and from_flags.base_model_dir == str(BASE_MODEL_DIR)
    ft = from_flags.spec.finetune
    assert (ft.steps, ft.depth, ft.loss, ft.seed, ft.early_stopping_patience) == (12, 2, "mae", 5, 3)
    assert ft.lora == LoraConfig(rank=4, alpha=16.0, targets="QKVO")
    path = from_flags.write(tmp_path / "run.json")
    assert json.loads(path.read_text())["spec"]["finetune"]["depth"] == 2
    assert FinetuneRun.from_argv(["--run", str(path)]) == from_flags


def test_flags_need_data_and_a_known_base(tmp_path):
    with pytest.raises(SystemExit):
        FinetuneRun.from_argv(["--output", "x"])
    with pytest.raises(SystemExit):
        FinetuneRun.from_argv(["--data", "d", "--output", "x", "--base-model", str(tmp_path / "nowhere")])
