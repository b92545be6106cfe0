"""Model family: shapes, parameter counts (analytic = instantiated = by hand), Llama config."""

from __future__ import annotations

import pytest
import torch

from ftscale.errors import SpecError, UserError
from ftscale.models.family import (
    ModelSpec,
    ParamCounts,
    build_model,
    default_family,
    family,
    gated_intermediate_size,
    load_base_model,
    parameter_counts,
    spec_from_json,
)


def test_l_counts_match_hand_computation():
    spec = default_family()["l"]
    assert (spec.n_layers, spec.n_heads, spec.head_dim, spec.d_model, spec.d_ff) == (4, 4, 16, 64, 256)
    assert spec.intermediate_size == 168  # 2/3 × 256 = 170.7 → nearest multiple of 8
    # per layer: q 64·64 + o 64·64 + k 64·16 + v 64·16 (one KV head) + 3·64·168 (gated MLP) + 2·64 (norms)
    per_layer = 4096 + 4096 + 1024 + 1024 + 32256 + 128
    non_embedding = 4 * per_layer + 64  # + final norm
    assert non_embedding == 170_560
    expected = ParamCounts(total=170_560 + 1024 * 64, non_embedding=170_560, embedding=1024 * 64)
    assert parameter_counts(spec) == expected
    assert parameter_counts(build_model(spec)) == expected


def test_untied_embeddings_count_both_matrices():
    spec = default_family()["l"].model_copy(update={"tie_embeddings": False})
    counts = parameter_counts(build_model(spec))
    assert counts == parameter_counts(spec)
    assert counts.embedding == 2 * 1024 * 64
    assert counts.non_embedding == 170_560


@pytest.mark.parametrize("name", ["xs", "s", "m", "l", "xl"])
def test_every_cpu_size_analytic_equals_instantiated(name):
    spec = default_family()[name].with_vocab(500)  # small vocab keeps instantiation fast
    assert parameter_counts(spec) == parameter_counts(build_model(spec))


def test_cpu_ladder_spans_the_papers_ratios():
    ladder = list(default_family().values())
    x = [parameter_counts(s).non_embedding for s in ladder]
    assert x == sorted(x)
    assert 20e3 < x[0] < 30e3 and 300e3 < x[-1] < 400e3
    assert 14 < x[-1] / x[0] < 17
    paper = list(family("paper").values())
    x_paper = [parameter_counts(s).non_embedding for s in paper]
    assert 14 < x_paper[-1] / x_paper[0] < 17
    # 2.5x in depth and in width from the smallest to the largest, as Table 3
    for attr in ("n_layers", "d_model"):
        ours = getattr(ladder[-1], attr) / getattr(ladder[0], attr)
        assert ours == getattr(paper[-1], attr) / getattr(paper[0], attr) == 2.5


def test_paper_ladder_mirrors_table_3():
    table3 = {"1B": (16, 8, 8192, 2048), "2B": (20, 10, 10240, 2560), "4B": (24, 12, 12288, 3072),
              "8B": (32, 16, 16384, 4096), "16B": (40, 20, 20480, 5120)}  # fmt: skip
    for name, spec in family("paper").items():
        assert (spec.n_layers, spec.n_heads, spec.d_ff, spec.d_model) == table3[name]
        assert spec.head_dim == 256 and spec.n_kv_heads == 1


def test_llama_model_uses_multi_query_attention():
    model = build_model(default_family()["s"].with_vocab(300))
    attn = model.model.layers[0].self_attn
    assert attn.k_proj.weight.shape == (16, 48)  # one KV head of dim 16
    assert model.config.num_key_value_heads == 1


def test_same_seed_same_weights():
    spec = default_family()["xs"].with_vocab(300)
    a, b, c = build_model(spec, seed=1), build_model(spec, seed=1), build_model(spec, seed=2)
    assert torch.equal(a.model.layers[0].mlp.up_proj.weight, b.model.layers[0].mlp.up_proj.weight)
    assert not torch.equal(a.model.layers[0].mlp.up_proj.weight, c.model.layers[0].mlp.up_proj.weight)


def test_bad_shape_is_a_spec_error():
    with pytest.raises(SpecError, match="n_heads × head_dim"):
        ModelSpec(name="bad", n_layers=2, n_heads=3, head_dim=16, d_model=64, d_ff=256)
    with pytest.raises(SpecError, match="unknown model family"):
        family("gpu")  # type: ignore[arg-type]


def test_gated_intermediate_keeps_ungated_weight_count():
    for d in (64, 96, 160, 2048):
        i = gated_intermediate_size(4 * d)
        assert abs(3 * d * i - 8 * d * d) / (8 * d * d) < 0.03


def test_missing_hub_model_is_a_one_line_user_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no network retries
    with pytest.raises(UserError, match="cannot download 'no-such-org/no-such-model'"):
        load_base_model("no-such-org/no-such-model")
    with pytest.raises(UserError, match="does not exist"):
        load_base_model("./no/such/dir")


def test_spec_from_json_round_trips_and_bad_files_are_user_errors(tmp_path):
    spec = family("demo")["t1"]
    good = tmp_path / "spec.json"
    good.write_text(spec.model_dump_json())
    assert spec_from_json(good) == spec
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    for path in (tmp_path / "missing.json", tmp_path / "bad.json"):
        with pytest.raises(UserError, match="cannot read a model spec"):
            spec_from_json(path)
