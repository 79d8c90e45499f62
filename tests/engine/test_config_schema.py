"""Every config value is checked against the schema (types, ranges) and the model factory's
signature when a config is loaded: a bad value ends every CLI with exit code 2 and a message
naming the key, what was expected and what was given, before anything is written."""

import pytest

from msrcnn_fast.demo import main as demo_main
from msrcnn_fast.engine.config import DEFAULTS, SCHEMA, ConfigError, Section, Value, load_config
from msrcnn_fast.evaluate import main as evaluate_main
from msrcnn_fast.predict import main as predict_main
from msrcnn_fast.train import main as train_main
from tests.engine.conftest import tiny_config, write_config

MINIMAL = "model: {name: msrcnn_resnet18_fpn}\nsolver: {max_iter: 10}\n"

# (override, a fragment of the error it must give)
BAD_VALUES = [
    ("solver.base_lr=abc", "solver.base_lr must be a number > 0, got 'abc' (str)"),
    ("solver.base_lr=0", "solver.base_lr must be a number > 0, got 0"),
    ("solver.base_lr=-1e-3", "solver.base_lr must be a number > 0, got '-1e-3'"),
    ("solver.base_lr=.nan", "solver.base_lr must be a number > 0, got nan (float)"),
    ("solver.base_lr=[0.1]", "solver.base_lr must be a number > 0, got [0.1]"),
    ("solver.max_iter=-5", "solver.max_iter must be an integer >= 1 or null, got -5"),
    ("solver.max_iter=0", "solver.max_iter must be an integer >= 1 or null, got 0"),
    ("solver.max_iter=10.5", "solver.max_iter must be an integer >= 1 or null, got 10.5 (float)"),
    ("solver.max_iter=true", "solver.max_iter must be an integer >= 1 or null, got True (bool)"),
    ("solver.max_iter=1e3", "solver.max_iter must be an integer >= 1 or null, got '1e3' (str)"),
    ("solver.images_per_batch=0", "solver.images_per_batch must be an integer >= 1, got 0"),
    ("solver.warmup_iters=-1", "solver.warmup_iters must be an integer >= 0, got -1"),
    ("solver.warmup_factor=0", "solver.warmup_factor must be a number in (0, 1], got 0"),
    ("solver.warmup_factor=1.5", "solver.warmup_factor must be a number in (0, 1], got 1.5"),
    ("solver.momentum=1", "solver.momentum must be a number in [0, 1), got 1"),
    ("solver.weight_decay=-0.1", "solver.weight_decay must be a number >= 0, got -0.1"),
    ("solver.gamma=0", "solver.gamma must be a number > 0, got 0"),
    ("solver.lr_steps=4", "solver.lr_steps must be a list of integers >= 1, got 4"),
    ("solver.lr_steps=[0, 4]", "solver.lr_steps must be a list of integers >= 1, got [0, 4]"),
    ("solver.lr_steps=[4, 2]", "solver.lr_steps must be strictly increasing, got [4, 2]"),
    ("solver.lr_steps=[4, 4]", "solver.lr_steps must be strictly increasing, got [4, 4]"),
    ("solver.lr_step_epochs=[1]", "solver.lr_step_epochs goes with solver.epochs, but the schedule is solver.max_iter"),
    ("solver.epochs=0", "solver.epochs must be a number >= 1 or null, got 0"),
    ("solver.epochs=2", "set exactly one of solver.epochs"),
    ("solver.checkpoint_period=-1", "solver.checkpoint_period must be an integer >= 0, got -1"),
    ("solver.keep_checkpoints=-1", "solver.keep_checkpoints must be an integer >= 0, got -1"),
    ("solver.log_period=0", "solver.log_period must be an integer >= 1, got 0"),
    ("solver.grad_clip_norm=0", "solver.grad_clip_norm must be a number > 0 or null, got 0"),
    ("solver.amp=maybe", "solver.amp must be true or false, got 'maybe' (str)"),
    ("solver.amp=1", "solver.amp must be true or false, got 1"),
    ("solver.seed=0.5", "solver.seed must be an integer, got 0.5 (float)"),
    ("solver.sync_bn=", "solver.sync_bn must be true or false, got None"),
    ("solver=3", "solver must be a mapping, got 3"),
    ("data.num_workers=-1", "data.num_workers must be an integer >= 0, got -1"),
    ("data.hflip_prob=1.5", "data.hflip_prob must be a number in [0, 1], got 1.5"),
    ("data.train_min_size=0", "data.train_min_size must be an integer >= 1 or a non-empty list of them or null"),
    ("data.train_min_size=[]", "data.train_min_size must be an integer >= 1 or a non-empty list of them or null"),
    ("data.train_max_size=-64", "data.train_max_size must be an integer >= 1 or null, got -64"),
    ("data.train.skip_empty=2", "data.train.skip_empty must be true or false, got 2"),
    ("data.val.images=7", "data.val.images must be a non-empty string or null, got 7"),
    ("data.train=train", "data.train must be a mapping, got 'train' (str)"),
    ("data.shapes={train: 4}", "data.shapes.val must be set (an integer >= 1)"),
    ("data.shapes={train: 4, val: 0}", "data.shapes.val must be an integer >= 1, got 0"),
    ("data.shapes={train: 4, val: 2, colours: 3}", "unknown key 'data.shapes.colours'"),
    ("data.shapes={train: 4, val: 2, min_size: 90, max_size: 80}", "data.shapes.min_size (90) must be <="),
    ("test.images_per_batch=0", "test.images_per_batch must be an integer >= 1, got 0"),
    ("test.max_detections=0", "test.max_detections must be an integer >= 1, got 0"),
    ("device=tpu", "device must be one of 'auto', 'cpu', 'cuda', got 'tpu'"),
    ("output_dir=", "output_dir must be a non-empty string, got None"),
    ("model.name=resnet", "model.name: 'resnet' is not a model factory (available: ['mask_scoring_rcnn',"),
    ("model.box_fc_dim=abc", "model.box_fc_dim must be an integer, got 'abc' (str)"),
    ("model.box_fc_dim=32.5", "model.box_fc_dim must be an integer, got 32.5 (float)"),
    (
        "model.box_fcdim=32",
        "unknown key 'model.box_fcdim': msrcnn_resnet18_fpn takes no 'box_fcdim' (did you mean 'box_fc_dim'? it "
        "takes: ",
    ),
    ("model.soft_nms=1", "model.soft_nms must be true or false, got 1"),
    ("model.norm=[gn]", "model.norm must be a string, got ['gn']"),
    ("model.box_nms_thresh=half", "model.box_nms_thresh must be a number, got 'half' (str)"),
    ("model.image_mean=[0.5, 0.5]", "model.image_mean must be a list of 3 numbers, got [0.5, 0.5]"),
    ("model.returned_stages=3", "model.returned_stages must be a list of integers, got 3"),
    ("model.anchor_sizes=[[32], [64, x]]", "model.anchor_sizes must be a list of lists of integers or null"),
    ("model.backbone_weights=3", "model.backbone_weights must be a string or null, got 3"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES, ids=[case[0] for case in BAD_VALUES])
def test_bad_values_end_training_with_exit_2_and_nothing_written(tmp_path, rectangles_root, capsys, override, message):
    out = tmp_path / "out"
    config = tiny_config(tmp_path / "c.yaml", rectangles_root, out)
    assert train_main(["--config", config, "--no-progress", override]) == 2
    error = capsys.readouterr().err
    assert f"override {override!r}" in error or "set exactly one of" in error, error  # where it came from
    assert message in error, error
    assert not out.exists()


def test_a_value_from_the_file_is_named_with_the_file(tmp_path, rectangles_root, capsys):
    out = tmp_path / "out"
    config = tiny_config(tmp_path / "c.yaml", rectangles_root, out, solver={"base_lr": "abc"})
    assert train_main(["--config", config, "--no-progress"]) == 2
    assert f"{config}: solver.base_lr must be a number > 0, got 'abc' (str)" in capsys.readouterr().err
    assert not out.exists()


def test_the_model_rejects_a_value_of_the_right_type_as_a_config_error(tmp_path, rectangles_root, capsys):
    # the model's own checks (choices, ranges) run when it is built: still before anything is written
    out = tmp_path / "out"
    config = tiny_config(tmp_path / "c.yaml", rectangles_root, out)
    assert train_main(["--config", config, "--no-progress", "model.norm=layer"]) == 2
    assert "model (msrcnn_resnet18_fpn): norm: expected one of" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("solver.base_lr=abc", "solver.base_lr must be a number > 0, got 'abc' (str)"),
        ("solver.max_iter=-5", "solver.max_iter must be an integer >= 1 or null, got -5"),
        ("model.box_fc_dim=abc", "model.box_fc_dim must be an integer, got 'abc' (str)"),
    ],
)
def test_every_cli_checks_the_config(tmp_path, rectangles_root, capsys, override, message):
    out = tmp_path / "out"
    config = tiny_config(tmp_path / "c.yaml", rectangles_root, out)
    checkpoint, image = str(tmp_path / "model.pth"), str(rectangles_root / "val" / "0000.png")
    (tmp_path / "model.pth").write_bytes(b"never read")
    runs = {
        "evaluate": lambda: evaluate_main(["--config", config, "--checkpoint", checkpoint, "--no-progress", override]),
        "predict": lambda: predict_main(
            ["--config", config, "--checkpoint", checkpoint, image, "--out", str(out / "p"), "--set", override]
        ),
        "demo": lambda: demo_main(["--config", config, "--no-progress", override]),
    }
    for name, run in runs.items():
        assert run() == 2, name
        assert message in capsys.readouterr().err, name
        assert not out.exists(), name


def test_demo_checks_the_shapes_section_before_generating(tmp_path, capsys):
    root = tmp_path / "shapes"
    config = tiny_config(
        tmp_path / "demo.yaml",
        root,
        tmp_path / "out",
        data={
            "train": {"images": "train", "annotations": "annotations/instances_train.json"},
            "val": {"images": "val", "annotations": "annotations/instances_val.json"},
            "shapes": {"train": 4, "val": "two"},
        },
    )
    assert demo_main(["--config", config, "--no-progress"]) == 2
    assert "data.shapes.val must be an integer >= 1, got 'two' (str)" in capsys.readouterr().err
    assert not root.exists()


def test_floats_accept_ints_and_numeric_strings(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as the string '1e-3': a float key takes it as 0.001
    cfg = load_config(
        write_config(tmp_path, MINIMAL + "data: {hflip_prob: 1}\n"),
        ["solver.base_lr=1e-3", "solver.weight_decay=5E-5", "solver.momentum=0", "model.maskiou_tau=2.5e-1"],
    )
    assert cfg.solver.base_lr == 0.001 and isinstance(cfg.solver.base_lr, float)
    assert cfg.solver.weight_decay == 5e-5 and cfg.model.maskiou_tau == 0.25
    assert cfg.solver.momentum == 0 and cfg.data.hflip_prob == 1
    text = "model: {name: msrcnn_resnet18_fpn}\nsolver: {max_iter: 1, base_lr: 1e-3}\n"
    cfg = load_config(write_config(tmp_path, text))
    assert cfg.solver.base_lr == 0.001


def test_good_values_pass_unchanged(tmp_path):
    cfg = load_config(
        write_config(tmp_path, MINIMAL),
        [
            "solver.grad_clip_norm=10",
            "solver.lr_steps=[3, 8, 20]",  # a step past max_iter never takes effect (a shortened schedule)
            "solver.keep_checkpoints=0",
            "data.train_min_size=[48, 56]",
            "data.train_max_size=64",
            "data.shapes={train: 4, val: 2}",
            "model.image_mean=[0.5, 0.5, 0.5]",
            "model.anchor_sizes=[[32], [64]]",
            "model.returned_stages=[2, 3]",
            "model.backbone_weights=null",
            "model.num_classes=3",
        ],
    )
    assert cfg.solver.lr_steps == [3, 8, 20] and cfg.data.train_min_size == [48, 56]
    assert cfg.data.shapes == {"train": 4, "val": 2, "seed": 0, "min_size": 224, "max_size": 320}  # defaults
    assert cfg.model.anchor_sizes == [[32], [64]] and cfg.model.image_mean == [0.5, 0.5, 0.5]
    text = "model: {name: msrcnn_resnet50_fpn}\nsolver: {epochs: 2.5, lr_step_epochs: [2]}"
    cfg = load_config(write_config(tmp_path, text))
    assert cfg.solver.epochs == 2.5


def test_a_factory_that_needs_an_argument_gets_it_from_the_config(tmp_path):
    with pytest.raises(ConfigError, match=r"model.depth must be set \(msrcnn_resnet_fpn requires it\)"):
        load_config(write_config(tmp_path, "model: {name: msrcnn_resnet_fpn}\nsolver: {max_iter: 1}\n"))
    cfg = load_config(
        write_config(tmp_path, "model: {name: msrcnn_resnet_fpn, depth: 18, maskiou_tau: 0.5}\nsolver: {max_iter: 1}\n")
    )
    assert cfg.model.depth == 18 and cfg.model.maskiou_tau == 0.5  # mask_scoring_rcnn's, through **options


def test_the_schema_covers_every_default():
    def walk(schema, defaults, prefix=""):
        assert set(schema) == set(defaults), prefix
        for name, spec in schema.items():
            if isinstance(spec, dict):
                walk(spec, defaults[name], f"{prefix}{name}.")
            else:
                assert isinstance(spec, Value | Section), f"{prefix}{name}"
                if isinstance(spec, Value) and spec.default is not None:  # every default passes its own check
                    assert spec.check(f"{prefix}{name}", spec.default) == spec.default

    walk(SCHEMA, DEFAULTS)
