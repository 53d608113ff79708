"""engine.logger: meters, progress lines, TensorBoard, log.txt and args.json."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.logger import MetricLogger, SmoothedValue, TensorboardLogger, append_json_line, save_args


def test_smoothed_value_window_and_global() -> None:
    meter = SmoothedValue(window_size=3)
    for v in [1.0, 2.0, 3.0, 10.0]:
        meter.update(v)
    assert meter.median == 3.0
    assert meter.avg == pytest.approx(5.0)
    assert meter.global_avg == pytest.approx(4.0)
    assert meter.max == 10.0 and meter.value == 10.0
    meter.update(0.0, n=4)
    assert meter.global_avg == pytest.approx(16.0 / 8)
    assert math.isnan(SmoothedValue().median)


def test_metric_logger_prints_progress_lines() -> None:
    lines: list[str] = []
    logger = MetricLogger(print_fn=lines.append)
    logger.add_meter("lr", SmoothedValue(window_size=1, fmt="{value:.6f}"))
    seen = []
    for step in logger.log_every(range(5), print_freq=2, header="Epoch: [0]"):
        logger.update(loss=torch.tensor(float(step)), lr=1e-3, skipped=None)
        seen.append(step)
    assert seen == list(range(5))
    progress = [line for line in lines if "eta:" in line]
    assert [re.search(r"\[\s*(\d+)/5\]", line).group(1) for line in progress] == ["0", "2", "4"]
    assert all("time:" in line and "data:" in line and "loss:" in line for line in progress)
    assert "lr: 0.001000" in progress[-1]
    assert "Total time" in lines[-1]
    assert logger.global_averages()["loss"] == pytest.approx(2.0)
    assert logger.loss.global_avg == pytest.approx(2.0)
    assert "skipped" not in logger.meters
    with pytest.raises(AttributeError, match="no meter"):
        _ = logger.nope
    logger.synchronize_between_processes()  # single process: unchanged
    assert logger.loss.count == 5


def test_log_every_with_explicit_total_on_generator() -> None:
    lines: list[str] = []
    logger = MetricLogger(print_fn=lines.append)
    assert list(logger.log_every((i for i in range(3)), print_freq=10, total=3)) == [0, 1, 2]
    assert any("[0/3]" in line for line in lines) and any("[2/3]" in line for line in lines)


def test_tensorboard_logger_writes_events(tmp_path: Path) -> None:
    tb = TensorboardLogger(tmp_path / "tb")
    assert tb.enabled
    tb.update(3, **{"train/loss": torch.tensor(0.5), "lr": 1e-4, "skip": None})
    tb.flush()
    tb.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"train/loss", "lr"}
    (event,) = acc.Scalars("train/loss")
    assert event.step == 3 and event.value == pytest.approx(0.5)


def test_tensorboard_logger_noop_without_dir() -> None:
    tb = TensorboardLogger(None)
    assert not tb.enabled
    tb.update(0, loss=1.0)
    tb.flush()
    tb.close()


def test_append_json_line(tmp_path: Path) -> None:
    path = tmp_path / "run" / "log.txt"
    append_json_line(path, {"epoch": 0, "loss": torch.tensor(1.5), "acc": np.float32(0.25)})
    append_json_line(path, {"epoch": 1, "vec": torch.tensor([1.0, 2.0])})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"epoch": 0, "loss": 1.5, "acc": 0.25}, {"epoch": 1, "vec": [1.0, 2.0]}]


def test_save_args(tmp_path: Path) -> None:
    values = dict(lr=1e-3, output_dir=tmp_path, betas=(0.9, 0.95), flag=True)
    path = save_args(values, tmp_path / "out")
    assert path == tmp_path / "out" / "args.json"
    assert json.loads(path.read_text()) == {
        "lr": 1e-3,
        "output_dir": str(tmp_path),
        "betas": [0.9, 0.95],
        "flag": True,
    }
    assert json.loads(save_args({"a": 1}, tmp_path).read_text()) == {"a": 1}
