"""run_extract_features.py and run_linear_probe.py end to end on generated videos (CPU, pico preset)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from datasets import build_multiview_dataset
from datasets.collate import collate_batch
from engine.evaluation import video_to_device
from engine.features import build_feature_encoder, pool_features
from engine.probe import train_probe
from tests.engine.conftest import run_script

CLIP = ["--num_frames", "8", "--sampling_rate", "2", "--input_size", "32", "--device", "cpu",
        "--test_num_segment", "2", "--test_num_crop", "2", "--model", "vit_pico_patch8"]  # fmt: skip


@pytest.fixture
def video_list(videos, tmp_path):
    """The train videos with an unreadable file third in the list."""
    lines = (videos / "train.csv").read_text().splitlines()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    lines.insert(2, f"{bad} 1")
    path = tmp_path / "list.csv"
    path.write_text("\n".join(f"{videos / x.rsplit(' ', 1)[0]} {x.rsplit(' ', 1)[1]}" if i != 2 else x
                              for i, x in enumerate(lines)) + "\n")  # fmt: skip
    return path, bad, lines


def _extract(video_list, out, *extra, torchrun=0):
    argv = [*CLIP, "--data_path", str(video_list), "--output_dir", str(out), "--num_workers", "0", *extra]
    proc = run_script("run_extract_features.py", argv, torchrun=torchrun)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def _read(out):
    data = load_file(str(out / "features.safetensors"))
    with open(out / "index.csv") as fh:
        index = list(csv.DictReader(fh))
    return data, index


def test_features_shapes_index_and_broken_videos(video_list, tmp_path):
    path, bad, lines = video_list
    out = tmp_path / "feats"
    proc = _extract(path, out, "--shard_size", "3", "--batch_size", "5")
    data, index = _read(out)
    n = len(lines) - 1
    assert data["features"].shape == (n, 32) and data["features"].dtype == torch.float32
    assert data["labels"].dtype == torch.int64
    assert torch.isfinite(data["features"]).all() and data["features"].abs().sum(1).min() > 0  # no zero rows
    assert (out / "broken.txt").read_text().splitlines() == [str(bad)]
    assert "1 broken" in proc.stdout
    assert [r["views"] for r in index] == ["4"] * n
    assert str(bad) not in [r["path"] for r in index]
    assert data["labels"].tolist() == [int(r["label"]) for r in index]
    # oracle: the same encoder object and views, averaged here by hand
    torch.manual_seed(0)
    model, _ = build_feature_encoder("vit_pico_patch8", "", num_frames=8, input_size=32)
    ds = build_multiview_dataset(path, num_frames=8, sampling_rate=2, input_size=32, short_side_size=32,
                                 test_num_segment=2, test_num_crop=2, normalize=False)  # fmt: skip
    batch = collate_batch([ds[i] for i in range(12, 16)])  # the 4th list entry = row 2 (after the broken one)
    with torch.no_grad():
        want = model.forward_features(video_to_device(batch["video"], torch.device("cpu"))).mean(0)
    torch.testing.assert_close(data["features"][2], want, rtol=1e-5, atol=1e-5)


def test_temporal_pool_is_the_per_slice_space_means_in_time_order():
    torch.manual_seed(0)
    model, _ = build_feature_encoder("vit_pico_patch8", "", num_frames=8, input_size=32)
    video = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        got = pool_features(model, video, "temporal")
        tokens = model.forward_tokens(video).features  # [2, 4 * 16, 32]: 4 slices of 4 x 4 patches
        want = [model.fc_norm(tokens[:, t * 16 : (t + 1) * 16].mean(1)) for t in range(4)]
        assert got.shape == (2, 4 * 32)
        torch.testing.assert_close(got, torch.cat(want, 1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(pool_features(model, video, "mean"), model.forward_features(video))
        # reversing time reverses the slices' order: the direction of a motion survives
        flipped = pool_features(model, video.flip(2), "temporal").view(2, 4, 32)
        assert not torch.allclose(flipped, got.view(2, 4, 32), atol=1e-3)


def test_extraction_with_temporal_pool_writes_slices(video_list, tmp_path):
    path, _, lines = video_list
    out = tmp_path / "feats"
    _extract(path, out, "--pool", "temporal", "--test_num_segment", "1", "--test_num_crop", "1")
    data, _ = _read(out)
    assert data["features"].shape == (len(lines) - 1, 4 * 32)
    torch.manual_seed(0)
    model, _ = build_feature_encoder("vit_pico_patch8", "", num_frames=8, input_size=32)
    ds = build_multiview_dataset(path, num_frames=8, sampling_rate=2, input_size=32, short_side_size=32,
                                 test_num_segment=1, test_num_crop=1, normalize=False)  # fmt: skip
    with torch.no_grad():
        want = pool_features(
            model, video_to_device(collate_batch([ds[0]])["video"], torch.device("cpu")), "temporal"
        )
    torch.testing.assert_close(data["features"][0], want[0], rtol=1e-5, atol=1e-5)
    # features of another pooling never mix with these shards
    proc = run_script("run_extract_features.py", [*CLIP, "--data_path", str(path), "--output_dir", str(out),
                      "--num_workers", "0", "--test_num_segment", "1", "--test_num_crop", "1"])  # fmt: skip
    assert proc.returncode != 0 and "another extraction" in proc.stderr


@pytest.mark.slow
def test_two_ranks_merge_in_list_order(video_list, tmp_path):
    path, _, _ = video_list
    _extract(path, tmp_path / "one", "--shard_size", "2")
    _extract(path, tmp_path / "two", "--shard_size", "2", torchrun=2)
    (a, ia), (b, ib) = _read(tmp_path / "one"), _read(tmp_path / "two")
    assert [r["path"] for r in ia] == [r["path"] for r in ib]
    assert torch.equal(a["labels"], b["labels"])
    torch.testing.assert_close(a["features"], b["features"], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "two" / "broken.txt").read_text() == (tmp_path / "one" / "broken.txt").read_text()


def test_resume_reuses_finished_shards_and_refuses_other_settings(video_list, tmp_path):
    path, _, _ = video_list
    out = tmp_path / "feats"
    _extract(path, out, "--shard_size", "4")
    first, _ = _read(out)
    kept = out / "shards" / "shard-00000.safetensors"
    stamp = kept.stat().st_mtime_ns
    (out / "shards" / "shard-00001.safetensors").unlink()  # as if killed before shard 1 was written
    (out / "features.safetensors").unlink()
    proc = _extract(path, out, "--shard_size", "4")
    assert "3 shard(s) reused" in proc.stdout  # 13 videos in 4 shards: 0, 2, 3 kept, 1 recomputed
    assert kept.stat().st_mtime_ns == stamp
    again, _ = _read(out)
    assert torch.equal(first["features"], again["features"])
    argv = [
        *CLIP,
        "--data_path",
        str(path),
        "--output_dir",
        str(out),
        "--num_workers",
        "0",
        "--test_num_crop",
        "1",
    ]
    proc = run_script("run_extract_features.py", argv)
    assert proc.returncode == 2 and "holds shards of another extraction" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_probe_learns_separable_features():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 3

    def split(n):
        y = torch.arange(n) % 4
        return centres[y] + torch.randn(n, 16, generator=g), y

    # LARS scales each step by 1e-3 |w| / |g|: small batches need MAE's large lr (6.4 = 0.1 x 16384 / 256)
    for opt, blr in (("lars", 10.0), ("sgd", 1.0)):
        res = train_probe(
            split(200), split(80), 4, epochs=30, batch_size=32, blr=blr, warmup_epochs=3, opt=opt
        )
        assert res["top1"] > 90, (opt, res["top1"])


def _colour_videos(folder, per_class: int = 8) -> None:
    """Noisy videos whose class is their dominant colour (red / green / blue): a random encoder sees it."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir()
    for split, n in (("train", per_class), ("val", per_class // 2)):
        lines = []
        for c in range(3):
            for i in range(n):
                path = folder / f"{split}_{c}_{i}.mp4"
                with av.open(str(path), "w") as box:
                    stream = box.add_stream("libx264", rate=25)
                    stream.width = stream.height = 32
                    stream.pix_fmt = "yuv420p"
                    for _ in range(16):
                        frame = rng.integers(0, 90, (32, 32, 3), dtype=np.uint8)
                        frame[..., c] += 150
                        box.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                    box.mux(stream.encode())
                lines.append(f"{path.name} {c}")
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")


def test_linear_probe_on_the_fly_learns_above_chance(tmp_path):
    data = tmp_path / "colours"
    _colour_videos(data)
    argv = [*CLIP, "--data_path", str(data), "--output_dir", str(tmp_path / "probe"), "--num_workers", "0",
            "--test_num_segment", "1", "--test_num_crop", "1", "--epochs", "30", "--warmup_epochs", "3",
            "--probe_batch_size", "8", "--blr", "10"]  # fmt: skip
    proc = run_script("run_linear_probe.py", argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    final = json.loads((tmp_path / "probe" / "result.json").read_text())
    assert final["num_train"] == 24 and final["num_val"] == 12 and final["num_classes"] == 3
    assert final["top1"] > 60  # chance: 33 %
    assert (tmp_path / "probe" / "features_train" / "features.safetensors").exists()
    # the same probe from the feature files
    argv = ["--train_features", str(tmp_path / "probe" / "features_train"), "--val_features",
            str(tmp_path / "probe" / "features_val"), "--output_dir", str(tmp_path / "again"), "--epochs", "30",
            "--warmup_epochs", "3", "--probe_batch_size", "8", "--blr", "10", "--device", "cpu"]  # fmt: skip
    proc = run_script("run_linear_probe.py", argv)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "again" / "result.json").read_text())["top1"] == final["top1"]
