"""The trainer with stand-in models: learning, bit-exact resume, files, sampling, recipes, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate
from train_helpers import StandInRoma, StandInTinyRoma, write_image_folder

import densematch.train.run as run_module
from densematch.cli import main as cli_main
from densematch.data.homography import HomographyConfig, HomographyPairs
from densematch.errors import DensematchError, UnknownModelError
from densematch.models.roma.targets import ground_truth_at
from densematch.train import TrainConfig, Trainer, get_recipe
from densematch.train.config import (
    TrainConfigError,
    group_learning_rates,
    resolved_resolution,
    resolved_schedule,
)
from densematch.train.sampling import ConcatPairs, PairStream, StepBatches, scene_weights
from densematch.train.sources import TrainingSource
from densematch.train.trainer import build_optimizer
from densematch.weights import load_strict, read_state_dict

RESOLUTION = (64, 64)


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: on a loaded 2-core machine, 2 OpenMP threads make these small steps ~10x slower."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    write_image_folder(folder, count=4, size=(96, 80))
    return folder


def tiny_config(image_dir, output, **changes) -> TrainConfig:
    values = dict(
        model="tiny_roma_v1_outdoor",
        data=(str(image_dir),),
        output=str(output),
        steps=6,
        batch_size=2,
        resolution=RESOLUTION,
        lr=2e-3,
        num_workers=0,
        log_every=1,
        checkpoint_every=100,
        progress=False,
    )
    values.update(changes)
    return TrainConfig(**values)


def make_trainer(config: TrainConfig, model=None, seed: int = 0, context=None) -> Trainer:
    """The trainer of ``config`` with a stand-in model of the recipe's family."""
    if model is None:
        torch.manual_seed(seed)
        model = StandInTinyRoma() if config.model.startswith("tiny_roma") else StandInRoma()
    return run_module.make_trainer(config, model=model, context=context)


def read_metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------------ the loop
def test_training_improves_matching(image_dir, tmp_path):
    """40 steps on mild homographies halve the stand-in's end-point error on held-out pairs."""
    mild = HomographyConfig(
        resolution=RESOLUTION, max_rotation_deg=5, scale_range=(0.9, 1.1), max_perspective=0.05
    )
    pairs = HomographyPairs(image_dir, mild)
    held_out = default_collate([pairs.sample(i % 4, np.random.default_rng(10_000 + i)) for i in range(8)])

    def epe_px(model) -> float:
        model.eval()
        with torch.no_grad():
            flow = model({"im_A": held_out["image0"], "im_B": held_out["image1"]})[4]["flow"]
        x2, prob = ground_truth_at(held_out, *flow.shape[-2:])
        return float(((flow.permute(0, 2, 3, 1) - x2).norm(dim=-1) * RESOLUTION[1] / 2)[prob > 0].mean())

    config = tiny_config(image_dir, tmp_path / "run", steps=40, batch_size=4, lr=3e-3, log_every=10)
    recipe = get_recipe(config.model)
    torch.manual_seed(0)
    model = StandInTinyRoma()
    before = epe_px(model)
    trainer = Trainer(
        model,
        [TrainingSource("mild", "homography", ConcatPairs([pairs]))],
        config,
        loss_for=lambda s, r: recipe.build_loss(s.kind, r),
        groups=recipe.groups,
        rates=group_learning_rates(config, recipe),
        schedule=resolved_schedule(config, recipe),
    )
    result = trainer.fit()
    assert result.step == 40 and [m["step"] for m in read_metrics(result.metrics)] == [10, 20, 30, 40]
    assert epe_px(model) < 0.7 * before


def test_resume_continues_bit_for_bit(image_dir, tmp_path):
    straight = make_trainer(tiny_config(image_dir, tmp_path / "straight"))
    straight.fit()
    first = make_trainer(tiny_config(image_dir, tmp_path / "split", num_workers=1))
    first.fit(until=3)
    assert first.step == 3 and read_metrics(tmp_path / "split" / "metrics.jsonl")[-1]["step"] == 3
    resumed = make_trainer(
        tiny_config(image_dir, tmp_path / "split"), seed=123
    )  # other init: all state reloaded
    resumed.fit(resume=True)
    assert resumed.step == 6
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    opt_a, opt_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_a)
    strip = ("elapsed_s", "pairs_per_s")
    runs = [
        [{k: v for k, v in m.items() if k not in strip} for m in read_metrics(tmp_path / d / "metrics.jsonl")]
        for d in ("straight", "split")
    ]
    assert runs[0] == runs[1]


def test_steps_zero_writes_the_initial_model(image_dir, tmp_path):
    trainer = make_trainer(tiny_config(image_dir, tmp_path / "zero", steps=0))
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.fit()
    assert result.step == 0 and result.last_loss is None
    fresh = StandInTinyRoma()
    load_strict(fresh, read_state_dict(result.weights, what="trained"), what="trained")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in initial.items())
    saved = json.loads((tmp_path / "zero" / "config.json").read_text())
    assert saved["steps"] == 0 and saved["model"] == "tiny_roma_v1_outdoor"
    assert torch.load(result.checkpoint, weights_only=True)["step"] == 0


def test_last_weights_are_a_flat_state_dict_of_the_trained_model(image_dir, tmp_path):
    trainer = make_trainer(tiny_config(image_dir, tmp_path / "run", steps=2))
    result = trainer.fit()
    state = torch.load(result.weights, weights_only=True)
    assert set(state) == set(trainer.model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in trainer.model.state_dict().items())


def test_output_and_resume_errors(image_dir, tmp_path):
    make_trainer(tiny_config(image_dir, tmp_path / "run", steps=2)).fit()
    with pytest.raises(DensematchError, match="already holds a training run"):
        make_trainer(tiny_config(image_dir, tmp_path / "run", steps=2)).fit()
    with pytest.raises(DensematchError, match="batch_size: 2 -> 4"):
        make_trainer(tiny_config(image_dir, tmp_path / "run", steps=2, batch_size=4)).fit(resume=True)
    with pytest.raises(DensematchError, match="no checkpoint"):
        make_trainer(tiny_config(image_dir, tmp_path / "other")).fit(resume=True)
    # changing only the logging cadence is allowed, and a finished run resumes to a no-op
    result = make_trainer(tiny_config(image_dir, tmp_path / "run", steps=2, log_every=5)).fit(resume=True)
    assert result.step == 2 and len(read_metrics(result.metrics)) == 2


def test_roma_recipe_groups_and_frozen_parameters(image_dir, tmp_path):
    config = tiny_config(
        image_dir, tmp_path / "roma", model="roma_outdoor", steps=2, lr=None, resolution=(112, 112)
    )
    trainer = make_trainer(config)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(5e-6 * 2 / 8) and groups["main"]["lr"] == pytest.approx(
        1e-4 / 4
    )
    encoder = trainer.model.encoder
    assert {id(p) for p in groups["backbone"]["params"]} == {id(p) for p in encoder["cnn"].parameters()}
    frozen = [p.clone() for p in encoder["dinov2"].parameters()]
    assert not any(p.requires_grad for p in encoder["dinov2"].parameters())
    trainer.fit()
    assert all(torch.equal(a, b) for a, b in zip(frozen, encoder["dinov2"].parameters(), strict=True))
    terms = read_metrics(tmp_path / "roma" / "metrics.jsonl")[-1]
    assert {"gm_cls_loss_16", "delta_regression_loss_4", "grad_norm"} <= set(terms)


def test_learning_rates_and_resolutions():
    roma, tiny = get_recipe("roma_outdoor"), get_recipe("tiny_roma_v1_outdoor")
    base = TrainConfig(model="roma_outdoor", data=("x",), output="o", steps=1, batch_size=32)
    assert group_learning_rates(base, roma) == pytest.approx(
        {"backbone": 2e-5, "main": 4e-4}
    )  # published at 32
    assert group_learning_rates(replace(base, lr=1e-3), roma) == pytest.approx(
        {"backbone": 5e-5, "main": 1e-3}
    )
    assert group_learning_rates(replace(base, lr_backbone=1e-6), roma)["backbone"] == 1e-6
    with pytest.raises(TrainConfigError, match="backbone"):
        group_learning_rates(replace(base, model="tiny_roma_v1_outdoor", lr_backbone=1e-6), tiny)
    assert resolved_resolution(base, roma, 14) == (560, 560)
    with pytest.raises(TrainConfigError, match="multiples of 32"):
        resolved_resolution(replace(base, resolution=(100, 96)), tiny, 32)
    with pytest.raises(TrainConfigError, match="steps"):
        replace(base, steps=-1)
    with pytest.raises(UnknownModelError, match="trainable models"):
        get_recipe("sift")


def test_build_optimizer_rejects_unmatched_parameters():
    from densematch.models.contract import ParamGroup

    model = StandInRoma()
    with pytest.raises(ValueError, match="matches no parameter group"):
        build_optimizer(model, (ParamGroup("backbone", ("encoder.",), 1e-5),), {"backbone": 1e-5}, 0.01)


# ------------------------------------------------------------------------------------------ sampling
def test_global_batches_do_not_depend_on_the_process_count():
    streams = [PairStream(10, seed=3, source=0), PairStream(7, seed=3, source=1)]
    single = list(StepBatches(streams, batch_size=4, start=0, stop=6))
    shares = [list(StepBatches(streams, batch_size=4, start=0, stop=6, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*shares, strict=True)] == single
    assert [batch[0][0] for batch in single] == [0, 1, 0, 1, 0, 1]  # sources alternate
    assert list(StepBatches(streams, batch_size=4, start=2, stop=6)) == single[2:]  # resumable
    with pytest.raises(ValueError, match="divisible"):
        StepBatches(streams, batch_size=3, start=0, stop=1, world_size=2)


def test_pair_stream_permutations_and_weights():
    stream = PairStream(5, seed=0, source=0)
    assert sorted(stream[p] for p in range(5)) == list(range(5)) and sorted(
        stream[p] for p in range(5, 10)
    ) == list(range(5))
    weights = scene_weights([90, 10], alpha=1.0)  # both scenes equally likely overall
    weighted = PairStream(100, seed=0, source=0, weights=weights, chunk=40)
    drawn = [weighted[p] for p in range(40)]
    assert len(set(drawn)) == 40 and 10 <= sum(i >= 90 for i in drawn) <= 30
    assert drawn == [PairStream(100, seed=0, source=0, weights=weights, chunk=40)[p] for p in range(40)]


def test_concat_pairs_dispatch():
    class Numbers(torch.utils.data.Dataset):
        def __init__(self, n, offset):
            self.n, self.offset = n, offset

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return {"value": self.offset + i}

    pairs = ConcatPairs([Numbers(3, 0), Numbers(2, 100)])
    assert [pairs[i]["value"] for i in range(5)] == [0, 1, 2, 100, 101]


# ------------------------------------------------------------------------------------------ CLI
def test_cli_trains_and_resumes(image_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run_module, "build_model", lambda config, recipe, device: StandInTinyRoma())
    out = tmp_path / "cli"
    args = [
        "train",
        "tiny_roma_v1_outdoor",
        "--data",
        str(image_dir),
        "--steps",
        "3",
        "--output",
        str(out),
        "--batch-size",
        "2",
        "--resolution",
        "64",
        "--workers",
        "0",
        "--log-every",
        "1",
        "--no-progress",
    ]
    assert cli_main(args) == 0
    assert "step 3" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"last.pth", "checkpoint.pth", "config.json", "metrics.jsonl",
                                              "loss_curve.png"}
    effective = json.loads((out / "config.json").read_text())["effective"]
    assert effective["resolution"] == [64, 64] and effective["schedule"]["grad_clip"] == 0.01
    assert effective["input"] == {"channels": "rgb", "normalisation": "unit", "size_multiple": 32}
    assert effective["sources"][0]["kind"] == "homography"
    import cv2

    curve = cv2.imread(str(out / "loss_curve.png"))
    assert curve.shape == (360, 720, 3) and (curve[..., 0] != curve[..., 2]).any()  # the blue line is drawn
    assert cli_main(args) == 2  # refuses to overwrite
    assert "already holds" in capsys.readouterr().err
    assert cli_main([*args[:5], "5", *args[6:], "--resume"]) == 2  # other step count: refused, named
    assert "steps: 3 -> 5" in capsys.readouterr().err


def test_cli_reports_bad_input(image_dir, tmp_path, capsys):
    base = ["train", "--data", str(image_dir), "--steps", "1", "--output", str(tmp_path / "x")]
    assert cli_main([*base[:1], "no_such_model", *base[1:]]) == 2
    assert "no_such_model" in capsys.readouterr().err
    assert cli_main([*base[:1], "tiny_roma_v1_outdoor", *base[1:], "--resolution", "100x96"]) == 2
    assert "multiples of 32" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "train",
                "tiny_roma_v1_outdoor",
                "--data",
                str(tmp_path / "missing"),
                "--steps",
                "1",
                "--output",
                str(tmp_path / "y"),
                "--resolution",
                "64",
            ]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# ------------------------------------------------------------------------------ precision / devices
def test_bf16_autocast_runs_on_cpu(image_dir, tmp_path):
    full = make_trainer(tiny_config(image_dir, tmp_path / "fp32", steps=2)).fit()
    mixed = make_trainer(tiny_config(image_dir, tmp_path / "bf16", steps=2, amp="bf16")).fit()
    first = [read_metrics(r.metrics)[0]["loss"] for r in (full, mixed)]
    assert first[1] == pytest.approx(first[0], rel=0.05) and first[1] != first[0]


@pytest.mark.gpu
def test_fp16_training_on_cuda(image_dir, tmp_path):
    model = StandInTinyRoma().cuda()
    trainer = make_trainer(tiny_config(image_dir, tmp_path / "cuda", steps=3), model=model)
    assert trainer.scaler.is_enabled() and trainer.amp_dtype == torch.float16
    result = trainer.fit()
    assert result.step == 3 and all(np.isfinite(m["loss"]) for m in read_metrics(result.metrics))
    assert trainer.scaler.get_scale() >= 1.0


def test_unreadable_images_are_skipped_and_counted_unless_strict(tmp_path, capsys):
    folder = tmp_path / "images"
    write_image_folder(folder, count=3)
    (folder / "img01.png").write_bytes(b"not a png")  # corrupt after the listing would accept it
    config = tiny_config(folder, tmp_path / "run", steps=3, batch_size=2)
    with pytest.warns(UserWarning, match="unreadable training pair"):
        result = make_trainer(config).fit()
    assert result.step == 3 and result.skipped > 0
    strict = tiny_config(folder, tmp_path / "strict", steps=3, batch_size=2, strict=True)
    with pytest.raises(DensematchError, match="img01.png"):
        make_trainer(strict).fit()


def test_a_resolution_the_model_cannot_take_is_refused_before_any_work(image_dir, tmp_path):
    """The model contract's optional check_input_size runs on the training resolution up front: IMAMatch's
    ScanNet model (height-60 reshape) refuses 96 x 96 before data is opened or anything is written."""
    import densematch
    from densematch.errors import InputShapeError

    model = densematch.load("imamatch_scannet", weights=False)
    config = tiny_config(image_dir, tmp_path / "out", model="imamatch_scannet", resolution=(96, 96))
    with pytest.raises(InputShapeError, match="144 cells at 1/8"):
        run_module.make_trainer(config, model=model)
    assert not (tmp_path / "out").exists()
