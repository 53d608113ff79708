"""Classify one video with a trained classifier: top-k labels, softmax averaged over the test views.

    python run_inference.py clip.mp4 --checkpoint output/checkpoint-best.pth [--class_names classes.txt]
    python run_inference.py clip.webm --checkpoint hf://MCG-NJU/videomae-base-finetuned-kinetics --json
    python run_inference.py clip.avi --checkpoint weights.pth --model vit_base_patch16_224 --topk 3

--checkpoint: a fine-tuning checkpoint (ours or the reference's), a .safetensors file, a transformers
VideoMAEForVideoClassification folder, a model-zoo name or hf://org/name[@revision]. The views, frame
count and input size default to what the checkpoint records (its training run's args / config.json),
else the fine-tuning recipes' 16 frames every 4, 224 px, 5 clips x 3 crops.
--json prints one object: {"video": VIDEO, "top": [{"label": ..., "prob": ...}, ...]}.
"""

from __future__ import annotations

import json
import sys
from functools import partial

import torch

from datasets.decoding import DECODERS
from engine.args import PRECISIONS, OneLineParser, UsageError, check_decoder_flag
from engine.cli import run
from engine.inference import check_video, label_names, load_classifier, predict_video, top_k
from engine.precision import autocast_context

# the fine-tuning recipes' test settings, for checkpoints that record none
DEFAULTS = {"sampling_rate": 4, "test_num_segment": 5, "test_num_crop": 3}


def parse(argv: list[str] | None):
    p = OneLineParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument(
        "video", metavar="VIDEO", help="a video file (any container PyAV / decord reads) or a frame folder"
    )
    p.add_argument(
        "--checkpoint", required=True, help="file, transformers folder, zoo name or hf://org/name[@rev]"
    )
    p.add_argument(
        "--model", default=None, help="vit_* name; needed only when the checkpoint records no architecture"
    )
    p.add_argument(
        "--class_names", default=None,
        help="names in class order: one per line, an index,name .csv, or a .json list / {name: index} / "
        "{index: name}; default: the checkpoint's id2label, else class_<i>",
    )  # fmt: skip
    p.add_argument("--topk", type=int, default=5, help="labels to print (at most the number of classes)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    g = p.add_argument_group("test views (default: as the checkpoint records, else the recipes')")
    g.add_argument("--num_frames", type=int, default=None, help="frames per clip (default 16)")
    g.add_argument("--sampling_rate", type=int, default=None, help="frame stride (default 4)")
    g.add_argument("--input_size", type=int, default=None, help="crop size (default 224)")
    g.add_argument(
        "--short_side_size",
        type=int,
        default=None,
        help="resize the short side to it (default: --input_size)",
    )
    g.add_argument("--test_num_segment", type=int, default=None, help="clips along the video (default 5)")
    g.add_argument("--test_num_crop", type=int, default=None, help="crops per clip (default 3)")
    g.add_argument("--decoder", choices=DECODERS, default="auto")
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    g.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp16 needs --device cuda")
    args = p.parse_args(argv)
    check_decoder_flag(args.decoder)
    for name in ("topk", *DEFAULTS, "num_frames", "input_size", "short_side_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be >= 1, got {value}")
    return args


def pick_device(requested: str | None, precision: str) -> torch.device:
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UsageError(f"--device {requested!r} is not a device; use cuda, cuda:N or cpu") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs --device cuda; use bf16 or fp32 on a CPU")
    return device


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    device = pick_device(args.device, args.precision)
    check_video(args.video, args.decoder)
    classifier = load_classifier(args.checkpoint, args.model, args.num_frames, args.input_size)
    names = label_names(classifier, args.class_names)
    views = {k: getattr(args, k) or classifier.recorded.get(k, v) for k, v in DEFAULTS.items()}
    short_side = args.short_side_size or classifier.input_size
    if short_side < classifier.input_size:
        raise UsageError(
            f"--short_side_size {short_side} is smaller than the input size {classifier.input_size}"
        )
    probs = predict_video(
        classifier.model.to(device), args.video, num_frames=classifier.num_frames,
        sampling_rate=views["sampling_rate"], input_size=classifier.input_size, short_side_size=short_side,
        segments=views["test_num_segment"], crops=views["test_num_crop"], device=device,
        autocast=partial(autocast_context, device, args.precision), decoder=args.decoder,
    )  # fmt: skip
    result = {"video": args.video, "top": top_k(probs, names, args.topk)}
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.video}: mean softmax over {views['test_num_segment']} clips x {views['test_num_crop']} crops "
            f"({classifier.num_frames} frames every {views['sampling_rate']}, {classifier.input_size} px), "
            f"{classifier.num_classes} classes"
        )
        for rank, row in enumerate(result["top"], 1):
            print(f"{rank:>3}. {row['prob']:.4f}  {row['label']}")
    return result


if __name__ == "__main__":
    sys.exit(run(main))
