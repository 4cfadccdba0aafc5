"""The DVC graph reruns exactly what a change touches: each stage lists the params sections it reads."""

from pathlib import Path

import yaml

from pipeline.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _params(stage: str) -> set[str]:
    body = DVC[stage].get("do", DVC[stage])
    return set(body.get("params", []))


def test_hcl_knobs_rerun_embed_and_after_only():
    assert "embed" in _params("embed") and "embed" in _params("pretrain")
    for upstream in ("synth", "ingest", "cohort", "population", "features_pretraining", "features"):
        assert "embed" not in _params(upstream), upstream
    # predict and report depend on embed's outputs, so an embed change reaches them through deps
    assert any("data/embeddings" in d for d in DVC["predict"]["do"]["deps"])
    assert any(d.startswith("metrics/") for d in DVC["report"]["do"]["deps"])


def test_every_params_section_is_read_by_a_stage():
    listed = set().union(*(_params(s) for s in DVC))
    sections = set(PARAMS) - {"cohorts"}
    assert sections <= listed, f"params sections no stage declares: {sections - listed}"


def test_every_cohort_has_a_yaml_and_every_stage_is_a_cli_command():
    for cohort in PARAMS["cohorts"]:
        assert (ROOT / "cohorts" / f"{cohort}.yaml").exists()
    stages = build_parser([])._subparsers._group_actions[0].choices
    for stage in DVC:
        cmd = DVC[stage].get("do", DVC[stage])["cmd"]
        command = stage.split("_")[0]  # features_pretraining runs `ehr-hcl features`
        assert cmd.startswith(f"ehr-hcl {command} "), cmd
        assert command in stages


def test_representations_are_fit_once_and_cohort_features_use_the_pretraining_vocabulary():
    assert "--fitted data/features/pretraining" in DVC["features"]["do"]["cmd"]
    assert "data/features/pretraining" in DVC["features"]["do"]["deps"]
    assert "--pretrained models/pretraining" in DVC["embed"]["do"]["cmd"]
    assert "models/pretraining" in DVC["embed"]["do"]["deps"]
    assert "foreach" not in DVC["pretrain"] and "foreach" not in DVC["features_pretraining"]
    assert PARAMS["embed"]["fit_on"] == "pretraining"
    # every representation the library has takes part
    from pipeline.embed import METHODS

    assert set(PARAMS["embed"]["methods"]) == set(METHODS)
