"""Tiny randomly initialised Chronos, Chronos-Bolt and Chronos-2 checkpoints, built with the
official package's own config and model classes (`save_pretrained`): the loader, catalog and
serving tests read them as they would the published ones. Each builder needs the `chronos` extra
(callers skip without it) and returns the torch model it saved."""

from __future__ import annotations

LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
CONTEXT, PREDICTION = 64, 16
TINY_T5 = dict(d_model=32, d_ff=64, d_kv=16, num_layers=1, num_heads=2)


def bolt(directory):
    from chronos.chronos_bolt import ChronosBoltModelForForecasting
    from transformers import T5Config

    config = T5Config(
        **TINY_T5, num_decoder_layers=1, decoder_start_token_id=0, pad_token_id=0,
        architectures=["ChronosBoltModelForForecasting"], chronos_pipeline_class="ChronosBoltPipeline",
        chronos_config=dict(context_length=CONTEXT, prediction_length=PREDICTION, input_patch_size=8,
                            input_patch_stride=8, quantiles=LEVELS, use_reg_token=True))
    model = ChronosBoltModelForForecasting(config)
    model.save_pretrained(directory)
    return model


def chronos2(directory):
    from chronos.chronos2 import Chronos2Model
    from chronos.chronos2.config import Chronos2CoreConfig

    config = Chronos2CoreConfig(
        **TINY_T5, architectures=["Chronos2Model"], chronos_pipeline_class="Chronos2Pipeline",
        chronos_config=dict(context_length=CONTEXT, output_patch_size=8, input_patch_size=8, input_patch_stride=8,
                            quantiles=[0.01, 0.05, *LEVELS, 0.95, 0.99], use_reg_token=True, use_arcsinh=True,
                            max_output_patches=2))
    model = Chronos2Model(config)
    model.save_pretrained(directory)
    return model


def chronos_t5(directory):
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        **TINY_T5, vocab_size=64, num_decoder_layers=1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
        architectures=["T5ForConditionalGeneration"],
        chronos_config=dict(tokenizer_class="MeanScaleUniformBins",
                            tokenizer_kwargs={"low_limit": -15.0, "high_limit": 15.0},
                            context_length=CONTEXT, prediction_length=PREDICTION, n_tokens=64, n_special_tokens=2,
                            pad_token_id=0, eos_token_id=1, use_eos_token=True, model_type="seq2seq", num_samples=8,
                            temperature=1.0, top_k=50, top_p=1.0))
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(directory)
    return model


BUILDERS = {"chronos-bolt": bolt, "chronos-2": chronos2, "chronos": chronos_t5}
