"""dqn/logger.py: real TensorBoard event files, read back the way TensorBoard reads them."""

from __future__ import annotations

import io
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from dqn.logger import RunLogger, flatten, hparams_markdown

CONFIG = {"agent": {"lr": 1e-4, "n_step": 3, "double_q": True}, "env": {"id": "pong"}, "seed": 1}


def read(run_dir: Path) -> EventAccumulator:
    """Every scalar, text and image event in the run directory."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_flatten_joins_nested_keys_with_dots():
    assert flatten(CONFIG) == {
        "agent.lr": 1e-4,
        "agent.n_step": 3,
        "agent.double_q": True,
        "env.id": "pong",
        "seed": 1,
    }
    assert flatten({}) == {}


def test_hparams_markdown_is_a_two_column_table():
    assert hparams_markdown({"agent": {"lr": 0.001}, "seed": 2}) == (
        "|param|value|\n|-|-|\n|agent.lr|0.001|\n|seed|2|"
    )


def test_scalars_and_the_config_table_read_back(tmp_path):
    log = RunLogger(tmp_path, total_steps=100)
    log.hparams(CONFIG)
    for step in range(0, 100, 20):
        log.scalars(step, {"charts/SPS": 300.0 + step, "losses/td_loss": step / 100})
    log.advance(100, sps=300)
    log.close()
    events = read(tmp_path)
    assert {"charts/SPS", "losses/td_loss"} <= set(events.Tags()["scalars"])
    sps = events.Scalars("charts/SPS")
    assert [(e.step, e.value) for e in sps] == [(s, 300.0 + s) for s in range(0, 100, 20)]
    assert events.Scalars("losses/td_loss")[-1].value == pytest.approx(0.8)
    (text,) = events.Tensors("hyperparameters/text_summary")
    assert text.tensor_proto.string_val[0].decode() == hparams_markdown(CONFIG)


def test_a_resumed_writer_drops_what_came_after_its_checkpoint(tmp_path):
    """The first process logged up to step 80 but checkpointed at 40: the resumed one purges
    40 and later, so the curve has no duplicated tail."""
    first = RunLogger(tmp_path, total_steps=100)
    for step in range(0, 100, 20):
        first.scalars(step, {"charts/SPS": 1.0})
    first.close()
    resumed = RunLogger(tmp_path, total_steps=100, initial_step=40, purge_step=40)
    for step in range(40, 100, 20):
        resumed.scalars(step, {"charts/SPS": 2.0})
    resumed.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    sps = [(e.step, e.value) for e in read(tmp_path).Scalars("charts/SPS")]
    assert sps == [(0, 1.0), (20, 1.0), (40, 2.0), (60, 2.0), (80, 2.0)]


def test_a_video_is_an_animated_gif_in_the_images_tab(tmp_path):
    frames = [np.full((10, 12), 40 * i, dtype=np.uint8) for i in range(4)]
    log = RunLogger(tmp_path, total_steps=100)
    log.video("eval/agent_view", frames, step=20, fps=15)
    log.video("eval/nothing", [], step=20, fps=15)  # no frames: nothing is written
    log.close()
    events = read(tmp_path)
    assert events.Tags()["images"] == ["eval/agent_view"]
    (image,) = events.Images("eval/agent_view")
    assert (image.step, image.width, image.height) == (20, 12, 10)
    decoded = imageio.mimread(io.BytesIO(image.encoded_image_string), format="GIF")
    assert len(decoded) == 4
    assert [int(np.asarray(frame)[..., 0].mean()) for frame in decoded] == [0, 40, 80, 120]


def test_the_final_figures_go_to_the_hparams_tab(tmp_path):
    log = RunLogger(tmp_path, total_steps=100)
    config = {**CONFIG, "env": {"id": "pong", "action_subset": [1, 2]}}
    log.hparams_result(config, {"eval_return": 19.5, "best_eval_return": None})
    log.close()
    events = plugin_event_accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert set(hparams) == set(flatten(config))
    assert hparams["agent.lr"].number_value == pytest.approx(1e-4)
    assert hparams["env.id"].string_value == "pong"
    assert hparams["env.action_subset"].string_value == "[1, 2]"  # a list, shown as text
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert [m.name.tag for m in experiment.experiment.metric_infos] == ["hparams/eval_return"]
    assert "hparams/eval_return" in events.Tags()["tensors"]  # the figure itself; None is left out
