"""Invalid configs are refused where they are written, with a message naming the field and the rule."""

import pytest

from facts import facts  # tests/facts.py
from minisparse.config import PRESETS, ConfigError, ModelConfig, TrainConfig, preset


# Each refusal must name the field, the value given and the rule it breaks.
@pytest.mark.parametrize("field, value, rule", [
    ("d_model", 0, "positive integer"),
    ("n_head", 2.5, "positive integer"),
    ("vocab_size", True, "positive integer"),
    ("pos_emb", "rotary", "'none' or 'learned'"),
    ("afrac", 0.0, "(0, 1]"),
    ("afrac", 1.5, "(0, 1]"),
    ("attn_sink", "yes", "True or False"),
])
def test_bad_model_config_is_refused_with_its_reason(field, value, rule):
    with pytest.raises(ConfigError, match=facts(f"ModelConfig.{field}", repr(value), rule)):
        ModelConfig(**{field: value})


@pytest.mark.parametrize("field, value, rule", [
    ("weight_density", 0.0, "(0, 1]"),
    ("weight_density", 2.0, "(0, 1]"),
    ("lr", -1.0, "> 0"),
    ("lr", float("nan"), "> 0"),
    ("steps", 0, "positive integer"),
    ("beta2", 1.0, "[0, 1)"),
    ("min_per_neuron", -1, ">= 0"),
    ("anneal_start", 0.7, "anneal_start <= anneal_end"),
    ("density_overrides", {"wte.weight": 0}, "'wte.weight'"),
    ("weight_decay", 200.0, "weight_decay * lr < 1"),
])
def test_bad_train_config_is_refused_with_its_reason(field, value, rule):
    with pytest.raises(ConfigError, match=facts(field, rule)):
        TrainConfig(**{field: value})


def test_d_mlp_defaults_to_four_d_model():
    assert ModelConfig(d_model=24).d_mlp == 96


def test_config_round_trips_through_dict_and_refuses_unknown_fields():
    cfg = ModelConfig(d_model=64, bigram=True, pos_emb="learned")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=facts("unknown", "'dmodel'")):
        ModelConfig.from_dict({**cfg.to_dict(), "dmodel": 3})


def test_topk_count_follows_afrac():
    cfg = ModelConfig(afrac=0.25)
    assert [cfg.topk(n) for n in (1, 3, 4, 7, 8, 512)] == [1, 1, 1, 1, 2, 128]
    assert ModelConfig(afrac=1.0).topk(7) == 7


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match=facts("'huge'", str(sorted(PRESETS)))):
        preset("huge")
