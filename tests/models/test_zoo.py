"""models.zoo offline: downloads from a server on 127.0.0.1 (good, cut mid-transfer, wrong checksum,
Range ignored), the Hub path over a Hugging Face cache filled here, and the one-line errors."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from engine.cli import run
from models import zoo
from models.weights import read_state_dict
from tests.engine.conftest import ROOT, distill_argv, run_script, videos  # noqa: F401 (fixture)

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
ZOO_MD = (ROOT / "MODEL_ZOO.md").read_text()


class _Handler(http.server.BaseHTTPRequestHandler):
    """/good/ honours Range, /cut/ stops half-way through its first answer, /norange/ ignores Range."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        body = server.files.get(self.path.rsplit("/", 1)[-1], PAYLOAD)
        server.requests.append((self.path, self.headers.get("Range")))
        start = 0
        rng = self.headers.get("Range")
        if rng and not self.path.startswith("/norange/"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path.startswith("/cut/") and not server.cut_done:
            server.cut_done = True
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops mid-transfer
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests, httpd.cut_done, httpd.files = [], False, {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _zoo(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    """``python -m models.zoo ARGV`` in this process: (exit code, stdout lines, stderr lines)."""
    code = run(zoo.main, list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_fetch_good_file_verifies_and_prints_the_path_last(server, tmp_path, capsys):
    _, url = server
    code, out, err = _zoo(capsys, "fetch", f"{url}/good/teacher.pth", "--sha256", SHA, "--out", str(tmp_path))
    assert code == 0, err
    assert out[-1] == str(tmp_path / "teacher.pth")
    assert (tmp_path / "teacher.pth").read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == [".teacher.pth.lock", "teacher.pth"]
    # no --sha256: nothing published to check against, so the file's own SHA-256 is printed for pinning
    code, out, _ = _zoo(capsys, "verify", str(tmp_path / "teacher.pth"))
    assert code == 0 and out == [
        f"no published checksum; SHA-256 of the file is {SHA} (pin it with --sha256)"
    ]
    code, _, err = _zoo(capsys, "verify", str(tmp_path / "teacher.pth"), "--sha256", "0" * 64)
    assert code == 1 and len(err) == 1 and "does not match" in err[0]


def test_cut_transfer_keeps_the_part_and_the_next_fetch_resumes(server, tmp_path, capsys):
    httpd, url = server
    argv = ("fetch", f"{url}/cut/teacher.pth", "--sha256", SHA, "--out", str(tmp_path))
    code, _, err = _zoo(capsys, *argv)
    assert code == 1 and len(err) == 1 and "resume" in err[0]
    assert not (tmp_path / "teacher.pth").exists()
    assert (tmp_path / ".teacher.pth.part").stat().st_size == len(PAYLOAD) // 2
    code, out, err = _zoo(capsys, *argv)
    assert code == 0, err
    assert out[-1] == str(tmp_path / "teacher.pth")
    assert (tmp_path / "teacher.pth").read_bytes() == PAYLOAD
    assert not (tmp_path / ".teacher.pth.part").exists()
    assert httpd.requests[-1] == ("/cut/teacher.pth", f"bytes={len(PAYLOAD) // 2}-")


def test_wrong_checksum_is_one_line_and_leaves_no_file(server, tmp_path, capsys):
    _, url = server
    code, out, err = _zoo(
        capsys, "fetch", f"{url}/good/teacher.pth", "--sha256", "ab" * 32, "--out", str(tmp_path)
    )
    assert code == 1 and len(err) == 1 and "does not match" in err[0] and "deleted" in err[0]
    assert not (tmp_path / "teacher.pth").exists() and not (tmp_path / ".teacher.pth.part").exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, capsys):
    httpd, url = server
    (tmp_path / ".teacher.pth.part").write_bytes(b"stale bytes of another transfer")
    code, out, err = _zoo(
        capsys, "fetch", f"{url}/norange/teacher.pth", "--sha256", SHA, "--out", str(tmp_path)
    )
    assert code == 0, err
    assert (tmp_path / "teacher.pth").read_bytes() == PAYLOAD
    assert httpd.requests[-1][1] is not None  # it asked to resume, got 200 and the whole file


def test_read_state_dict_reads_a_url_through_torch_hub_dir(server, tmp_path, monkeypatch, capsys):
    httpd, url = server
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}}
    torch.save(state, tmp_path / "ckpt.pth")
    httpd.files["ckpt.pth"] = (tmp_path / "ckpt.pth").read_bytes()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    got = read_state_dict(f"{url}/good/ckpt.pth")
    assert torch.equal(got["w"], state["model"]["w"])
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "ckpt.pth").is_file()  # torch.hub.get_dir()
    assert "no published checksum" in capsys.readouterr().out


def test_plain_paths_and_unknown_names(tmp_path, capsys):
    with pytest.raises(zoo.CheckpointError, match=r"checkpoint .*missing\.pth does not exist"):
        read_state_dict(tmp_path / "missing.pth")  # a path keeps its reader's error
    code, _, err = _zoo(capsys, "fetch", "videomae-b-k400-pt160", "--out", str(tmp_path))
    assert code == 1 and len(err) == 1
    assert "did you mean videomae-b-k400-pt1600" in err[0] and "python -m models.zoo list" in err[0]
    code, _, err = _zoo(capsys, "fetch", "videomae-h-k400-pt1600")
    assert code == 1 and len(err) == 1 and "Google Drive only" in err[0]
    assert not list(tmp_path.iterdir())


def test_list_prints_one_entry_per_line_through_the_module():
    proc = subprocess.run(
        [sys.executable, "-m", "models.zoo", "list"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(zoo.ENTRIES)
    for line, entry in zip(lines, zoo.ENTRIES.values()):
        assert line.split()[0] == entry.name and entry.arch in line and entry.source in line
    assert "hf://MCG-NJU/videomae-base (follows main)" in proc.stdout


# ---- the Hub path, over a Hugging Face cache laid out as huggingface_hub writes it
REPO, COMMIT = "tiny-org/videomae-nano", "0123456789abcdef0123456789abcdef01234567"
# the nano teacher of tests/engine (width 64, 4 blocks, 4 heads, patch 8) on 8 frames of 32 x 32
NANO = dict(
    image_size=32, patch_size=8, num_frames=8, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
    intermediate_size=256, decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
    decoder_intermediate_size=128, use_mean_pooling=False, layer_norm_eps=1e-6,
)  # fmt: skip


@pytest.fixture
def hub_cache(tmp_path) -> Path:
    """<cache>/models--tiny-org--videomae-nano/{blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/main}."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**NANO))
    model.save_pretrained(tmp_path / "export")
    repo = tmp_path / "hub" / f"models--{REPO.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    for f in (tmp_path / "export").iterdir():
        blob = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.move(f, repo / "blobs" / blob)
        (repo / "snapshots" / COMMIT / f.name).symlink_to(f"../../blobs/{blob}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return tmp_path / "hub"


@pytest.fixture
def offline(hub_cache, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(hub_cache))
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}


def test_hub_snapshot_resolves_offline_from_the_cache(offline, hub_cache, capsys):
    snapshot = str(hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT)
    assert zoo.resolve(f"hf://{REPO}") == snapshot
    assert zoo.resolve(f"hf://{REPO}@{COMMIT}") == snapshot
    state = read_state_dict(f"hf://{REPO}")
    assert "encoder.blocks.3.attn.qkv.weight" in state  # read as a transformers folder, our key layout
    code, out, err = _zoo(capsys, "fetch", f"hf://{REPO}")
    assert code == 0 and out[-1] == snapshot, err
    code, _, err = _zoo(capsys, "fetch", "hf://tiny-org/not-cached")
    assert code == 1 and len(err) == 1
    assert "is not in the Hugging Face cache and HF_HUB_OFFLINE/no network" in err[0]
    assert "python -m models.zoo fetch hf://tiny-org/not-cached" in err[0]
    code, _, err = _zoo(capsys, "fetch", f"hf://{REPO}", "--sha256", SHA)
    assert code == 1 and len(err) == 1 and "pin a Hub snapshot" in err[0]


@pytest.mark.slow
def test_distill_takes_the_teacher_from_hf_and_refuses_another_architecture(videos, offline, tmp_path):  # noqa: F811
    teacher = f"hf://{REPO}"
    one_step = ("--epochs", "1", "--max_steps_per_epoch", "1")
    proc = run_script(
        "run_mmkd_distill.py", distill_argv(videos, teacher, tmp_path / "ok", *one_step), env=offline
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"teacher pretrain_videomae_nano_patch8 from {teacher}" in proc.stdout
    assert (tmp_path / "ok" / "checkpoint-0.pth").is_file()
    argv = distill_argv(videos, teacher, tmp_path / "bad", *one_step)
    argv[argv.index("pretrain_videomae_nano_patch8")] = "pretrain_videomae_pico_patch8"  # --model_t
    proc = run_script("run_mmkd_distill.py", argv, env=offline)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-2000:]
    assert "config.json has hidden_size 64 but the chosen model has 32" in errors[0]
    missing = distill_argv(videos, "videomae-b-k400-pt160", tmp_path / "unknown", *one_step)
    proc = run_script("run_mmkd_distill.py", missing, env=offline)
    assert proc.returncode != 0 and "python -m models.zoo list" in proc.stderr.splitlines()[-1]


@pytest.mark.slow
def test_hub_id_without_network_is_one_line_on_every_rank(videos, offline, tmp_path):  # noqa: F811
    argv = distill_argv(videos, "hf://tiny-org/not-cached", tmp_path / "out", "--epochs", "1")
    proc = run_script("run_mmkd_distill.py", argv, torchrun=2, env=offline)
    assert proc.returncode != 0
    for rank in (0, 1):
        said = [line for line in proc.stderr.splitlines() if f"[rank {rank}]: error" in line]
        assert len(said) == 1 and "is not in the Hugging Face cache" in said[0], proc.stderr[-3000:]


def test_model_zoo_md_lists_the_registry():
    """MODEL_ZOO.md's table and `ENTRIES` name the same checkpoints, architectures and Hub repos."""
    cells = [[c.strip(" `") for c in line.split("|")[1:-1]] for line in ZOO_MD.splitlines()]
    rows = [
        (c[0], c[1].split(",")[0].strip("`"), c[5])
        for c in cells
        if len(c) == 7 and c[0].startswith("videomae-")
    ]
    assert {name for name, _, _ in rows} == set(zoo.ENTRIES)
    for name, arch, hub in rows:
        entry = zoo.ENTRIES[name]
        assert entry.arch.split()[0] == arch and (entry.hub or "none") == hub, name


def test_finetune_and_feature_flags_take_hub_ids(offline, videos, tmp_path):  # noqa: F811
    """--finetune of the fine-tuning and feature entry points accepts hf:// (and zoo names): the argument
    checks used to refuse anything that was not an existing path, before the reader saw it."""
    import argparse

    from engine import args as cli_args
    from engine.feature_args import add_model_and_clip_args, validate_clip_args
    from engine.features import build_feature_encoder
    from tests.engine.conftest import finetune_argv

    argv = finetune_argv(videos, tmp_path / "ft", "--finetune", f"hf://{REPO}")
    assert cli_args.parse("finetune", argv).finetune.finetune == f"hf://{REPO}"
    encoder, report = build_feature_encoder("vit_nano_patch8", f"hf://{REPO}", num_frames=8, input_size=32)
    assert "tensors loaded" in report
    p = argparse.ArgumentParser()
    add_model_and_clip_args(p, "list")
    ns = p.parse_args(["--data_path", str(videos / "train.csv"), "--output_dir", str(tmp_path / "f"),
                       "--model", "vit_nano_patch8", "--finetune", "videomae-b-k400-pt1600"])  # fmt: skip
    assert validate_clip_args(ns).finetune == "videomae-b-k400-pt1600"
