"""What VideoMAE reconstructs and what MMKD distils, drawn; the set-up both drawing entry points share.

``run_videomae_vis.py``: VideoMAE's figure, the original, masked and reconstructed frames of a clip.
``run_vis.py``: for one query token (i) MM-global: its top-k attention over all visible tokens,
(ii) MM-local: its top-k attention inside every temporal slice, (iii) MM-hint: the top-K tokens by
L1 feature norm. Heat maps are placed back on the token grid and over the frames.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import timm
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageDraw
from torch import Tensor

from common.cli import UsageError
from common.files import atomic_path
from datasets import VideoDecodeError, build_mask_generator
from datasets.decoding import DECODERS, open_video
from datasets.masking import MASK_GENERATORS
from engine.args import _writable_dir, check_decoder_flag
from engine.args_compat import UNUSED
from models import PretrainVisionTransformer
from models.checkpoint import TEACHER_EXPECTED_UNUSED
from models.convert import load_strict
from models.distill import topk_attention, topk_keep_mask
from models.registry import PRETRAIN_MODELS
from models.targets import IMAGENET_MEAN, IMAGENET_STD, patchify
from models.weights import CheckpointError, read_state_dict

# (positional name, flag spellings, attribute, what it is): the reference takes the three as
# positionals; the flag forms are ours (and those of some of its forks)
_IO = (
    ("img_path", ("--video", "--img_path"), "video", "input video"),
    ("save_path", ("--output_dir", "--save_path"), "output_dir", "output folder"),
    ("model_path", ("--model_path",), "model_path", "checkpoint"),
)
# weights an encoder-only model (``decoder_depth=0``) does not have
_DECODER_PARTS = TEACHER_EXPECTED_UNUSED
_NOT_MODEL = ("heads.", "teacher.")  # a distillation checkpoint's alignment heads / teacher


def add_vis_arguments(p: argparse.ArgumentParser, *, mask_type: str, mask_ratio: float, model: str) -> None:
    """The options both drawing entry points take, under the reference's names and defaults given."""
    g = p.add_argument_group("input and output: the reference's positionals, or the flags")
    for positional, flags, dest, what in _IO:
        g.add_argument(f"_{positional}", nargs="?", metavar=positional, help=f"{what} (or {flags[0]})")
        g.add_argument(*flags, dest=dest, default=None, help=f"{what} (or the positional {positional})")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=model, help=f"one of {', '.join(PRETRAIN_MODELS)}")
    g.add_argument(
        "--decoder_depth",
        type=int,
        default=None,
        help="default: the checkpoint's decoder; 0 leaves the decoder out; any other value must be the checkpoint's",
    )
    g.add_argument("--drop_path", type=float, default=0.0, help="stochastic depth (inactive: eval mode)")
    g = p.add_argument_group("clip and mask")
    g.add_argument(
        "--mask_type",
        default=mask_type,
        choices=sorted(MASK_GENERATORS),
        help="tube: one spatial mask for every temporal slice; random: hidden tokens anywhere",
    )
    g.add_argument("--mask_ratio", type=float, default=mask_ratio)
    g.add_argument("--num_frames", type=int, default=16)
    g.add_argument("--sampling_rate", type=int, default=4)
    g.add_argument("--input_size", type=int, default=224)
    g.add_argument("--seed", type=int, default=0, help="seeds the mask")
    g.add_argument("--decoder", default="auto", choices=DECODERS, help="video decoder")
    g = p.add_argument_group("runtime")
    g.add_argument(
        "--device", default="cuda:0", help="cpu, cuda or cuda:N (cuda falls back to the CPU without a GPU)"
    )
    g.add_argument(
        "--imagenet_default_mean_and_std",
        action="store_true",
        default=True,
        help=f"{UNUSED}: clips are always normalised with the ImageNet mean / std, as in the reference",
    )
    g.add_argument(
        "--times", type=int, default=1, help=f"{UNUSED} (MaskAgain: repeats the same forward pass)"
    )
    g.add_argument(
        "--context_ratio",
        type=float,
        default=0.25,
        help=f"{UNUSED}: read only for --mask_type time, not offered",
    )


def finish_vis_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Takes each input from its positional or its flag; checks values (one-line `UsageError`)."""
    check_decoder_flag(args.decoder)
    for positional, flags, dest, what in _IO:
        given, flagged = getattr(args, f"_{positional}"), getattr(args, dest)
        delattr(args, f"_{positional}")
        if given is not None and flagged is not None and given != flagged:
            raise UsageError(
                f"{what} given twice ({positional} {given!r}, {flags[0]} {flagged!r}); give it once"
            )
        if given is None and flagged is None:
            raise UsageError(f"give the {what}: the positional {positional} or {flags[0]}")
        setattr(args, dest, flagged if flagged is not None else given)
    if not os.path.exists(args.video):
        raise UsageError(f"--video {args.video!r} does not exist; give a video file or a folder of frames")
    if not _writable_dir(args.output_dir) or os.path.isfile(args.output_dir):
        raise UsageError(f"--output_dir {args.output_dir!r} is not a writable folder; choose another")
    for name in ("num_frames", "sampling_rate", "input_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0.0 <= args.mask_ratio < 1.0:
        raise UsageError(f"--mask_ratio must be in [0, 1), got {args.mask_ratio}")
    if args.decoder_depth is not None and args.decoder_depth < 0:
        raise UsageError(f"--decoder_depth must be >= 0, got {args.decoder_depth}")
    return args


def pick_device(requested: str) -> torch.device:
    """``cpu`` / ``cuda`` / ``cuda:N``; CUDA without a GPU falls back to the CPU, as training does."""
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise UsageError(f"--device {requested!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {requested!r}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("WARNING: CUDA requested but not available; running on the CPU.")
        return torch.device("cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {requested}: only {torch.cuda.device_count()} GPUs are visible")
    return device


def load_clip(
    path: str, num_frames: int, sampling_rate: int, input_size: int, decoder: str = "auto"
) -> Tensor:
    """The centred clip, short side resized to ``input_size`` and centre-cropped: [3, T, S, S] normalised."""
    try:
        with open_video(path, decoder) as reader:
            n = len(reader)
            start = max(0, (n - num_frames * sampling_rate) // 2)
            idx = np.minimum(start + np.arange(num_frames) * sampling_rate, n - 1)
            frames = reader.get_frames(idx.tolist()).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
    except VideoDecodeError as err:
        raise UsageError(f"--video {path!r} cannot be read: {err}") from None
    frames = TF.center_crop(TF.resize(frames, input_size, antialias=True), [input_size] * 2)
    x = TF.normalize(frames.float() / 255, IMAGENET_MEAN, IMAGENET_STD)
    return x.permute(1, 0, 2, 3)


def _model_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A pre-training model's keys from a pre-training or distillation checkpoint."""
    state = {k.removeprefix("student."): v for k, v in state.items() if not k.startswith(_NOT_MODEL)}
    if "patch_embed.proj.weight" in state:  # MMKD's encoder saved alone (the reference adds the prefix too)
        state = {f"encoder.{k}": v for k, v in state.items()}
    return state


def load_pretrain_model(
    name: str,
    path: str,
    *,
    img_size: int,
    num_frames: int,
    decoder_depth: int | None = None,
    drop_path: float = 0.0,
) -> PretrainVisionTransformer:
    """The pre-training model ``name`` with the weights at ``path`` (any form `read_state_dict`
    reads), loaded strictly, in eval mode.

    ``decoder_depth``: None takes the checkpoint's decoder (none: an MMKD student); 0 leaves it out
    (the reference's ``--decoder_depth 0``); any other value must be the checkpoint's.
    """
    if name not in PRETRAIN_MODELS:
        raise UsageError(f"--model {name!r} is unknown; choose one of {', '.join(PRETRAIN_MODELS)}")
    state = _model_keys(read_state_dict(path))
    saved = len({k.split(".")[2] for k in state if k.startswith("decoder.blocks.")})
    if decoder_depth not in (None, 0, saved):
        raise CheckpointError(
            f"{path} has a {saved}-block decoder but --decoder_depth is {decoder_depth}; "
            f"pass --decoder_depth {saved} (or 0 for the encoder alone)"
        )
    depth = saved if decoder_depth is None else decoder_depth
    try:
        model = timm.create_model(
            name, img_size=img_size, num_frames=num_frames, decoder_depth=depth, drop_path_rate=drop_path
        )
    except ValueError as err:  # the patch embedding refuses sizes its patch / tubelet do not divide
        raise UsageError(
            f"--model {name} at --input_size {img_size}, --num_frames {num_frames}: {err}"
        ) from None
    if depth == 0:
        state = {k: v for k, v in state.items() if not k.startswith(_DECODER_PARTS)}
    load_strict(model, state, path)
    return model.eval()


def draw_mask(mask_type: str, grid: tuple[int, int, int], mask_ratio: float, seed: int) -> Tensor:
    """Boolean mask [N] (True = hidden) over the token grid (T', H', W'), seeded."""
    return torch.from_numpy(build_mask_generator(mask_type, grid, mask_ratio)(np.random.default_rng(seed)))


def save_image(image: Image.Image, path: str) -> None:
    """Writes ``image`` whole or not at all (a partial file is renamed over nothing).

    JPEG at quality 95 without chroma subsampling: on the 32-pixel frames of a tiny model's figure
    PIL's default (75, 4:2:0, the reference's) is off by 3.6 levels per pixel on average, this by 1.2.
    """
    fmt = Image.registered_extensions()[os.path.splitext(path)[1].lower()]
    options = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **options)


def to_pixels(video: Tensor) -> Tensor:
    """Normalised clip [3, T, H, W] -> pixels in [0, 1] (float32, as `models.targets.pixel_target`)."""
    std = torch.tensor(IMAGENET_STD, device=video.device)[:, None, None, None]
    mean = torch.tensor(IMAGENET_MEAN, device=video.device)[:, None, None, None]
    return video.float() * std + mean


def to_uint8(pixels: Tensor) -> np.ndarray:
    """Pixels [3, T, H, W] in [0, 1] -> uint8 [T, H, W, 3], rounded."""
    return (pixels.detach().cpu().clamp(0, 1).permute(1, 2, 3, 0).numpy() * 255).round().astype(np.uint8)


def to_uint8_frames(video: Tensor) -> np.ndarray:
    """Normalised clip [3, T, H, W] -> uint8 [T, H, W, 3]."""
    return to_uint8(to_pixels(video))


def hidden_pixels(mask: Tensor, grid: tuple[int, int, int], patch: int, tubelet: int) -> Tensor:
    """Token mask [N] -> [T, H, W], True on every pixel of a hidden tube."""
    m = mask.cpu().reshape(grid)
    return m.repeat_interleave(tubelet, 0).repeat_interleave(patch, 1).repeat_interleave(patch, 2)


def reconstruct(
    model: PretrainVisionTransformer, video: Tensor, mask: Tensor, normalize_target: bool = True
) -> Tensor:
    """Pixels [3, T, H, W] in [0, 1] (CPU): the visible tubes as they are, the hidden ones predicted.

    The inverse of `models.targets.pixel_target`: with ``normalize_target`` a prediction is its tube's
    standardised pixels, so it gets that tube's own mean and std (unbiased, + 1e-6) back, as VideoMAE's
    figure does; without, a prediction is the pixels themselves. Channel is a tube's fastest axis.
    """
    p, q = model.patch_size, model.tubelet_size
    pixels = to_pixels(video)
    tubes = patchify(pixels[None], p, q)[0]  # [N, q*p*p, 3]
    if mask.any():  # the decoder returns every token when none is hidden
        with torch.no_grad():
            pred = model(video[None], mask[None])[0].float().reshape(-1, q * p * p, 3)
        hidden = tubes[mask]
        if normalize_target:
            std = hidden.var(dim=1, unbiased=True, keepdim=True).sqrt() + 1e-6
            pred = pred * std + hidden.mean(dim=1, keepdim=True)
        tubes[mask] = pred
    c, t, h, w = video.shape
    x = tubes.reshape(t // q, h // p, w // p, q, p, p, c).permute(6, 0, 3, 1, 4, 2, 5).reshape(c, t, h, w)
    return x.clamp(0, 1).cpu()


def videomae_frames(
    model: PretrainVisionTransformer, video: Tensor, mask: Tensor, normalize_target: bool = True
) -> dict[str, np.ndarray]:
    """VideoMAE's figure of a clip [3, T, H, W] and its mask [N]: three uint8 [T, H, W, 3] arrays.

    ``ori``: the frames; ``mask``: the frames with every hidden tube black (what the encoder sees);
    ``rec``: `reconstruct`.
    """
    visible = ~hidden_pixels(mask, model.encoder.grid_size, model.patch_size, model.tubelet_size)
    ori = to_pixels(video).cpu()
    rec = reconstruct(model, video, mask, normalize_target)
    return {"ori": to_uint8(ori), "mask": to_uint8(ori * visible), "rec": to_uint8(rec)}


def query_token(mask: Tensor, grid: tuple[int, int, int], idx_f: int, idx: int) -> int:
    """The visible-token index of the ``idx``-th visible token of temporal slice ``idx_f``."""
    per_slice = (~mask.cpu()).reshape(grid[0], -1).sum(1)  # [T'] visible tokens per slice
    if not 0 <= idx_f < grid[0] or not 0 <= idx < int(per_slice[idx_f]):
        limit = int(per_slice[idx_f]) if 0 <= idx_f < grid[0] else "the visible tokens of the slice"
        raise UsageError(
            f"--idx must be < {limit} and --idx_f < {grid[0]} for this clip and mask (got --idx {idx} --idx_f {idx_f})"
        )
    return int(per_slice[:idx_f].sum()) + idx


def scatter_visible(values: Tensor, mask: Tensor, grid: tuple[int, int, int]) -> np.ndarray:
    """Per-visible-token values [P] + mask [N] -> [T', H', W'] map (hidden positions are 0)."""
    full = torch.zeros(mask.numel(), dtype=torch.float32)
    full[~mask.cpu()] = values.detach().float().cpu()
    return full.reshape(grid).numpy()


def selection_maps(
    model: PretrainVisionTransformer,
    video: Tensor,
    mask: Tensor,
    query: int,
    num_k: int,
    num_f: int,
    kd_T: float = 1.0,
) -> dict[str, np.ndarray]:
    """Maps [T', H', W'] for one clip [3, T, H, W] and its mask [N]; ``query`` indexes visible tokens.

    MM-local takes the top-k inside each temporal slice's visible tokens, so it reads a random mask
    (slices of different sizes) as well as a tube mask.
    """
    grid = model.encoder.grid_size
    with torch.no_grad():
        out = model.encode(video[None], mask[None], return_attention=True)
    p = out.features.shape[1]
    if not 0 <= query < p:
        raise ValueError(f"query token {query} is outside the {p} visible tokens")
    logits = out.attn_logits[0, :, query].float().cpu()  # [H, P]
    glob = topk_attention(logits, min(num_k, p), kd_T).mean(0)  # [P]
    slice_of = torch.nonzero(~mask.cpu()).squeeze(1) // (grid[1] * grid[2])  # [P]
    local = torch.zeros(p)
    for t in range(grid[0]):
        keys = torch.nonzero(slice_of == t).squeeze(1)
        if len(keys):
            local[keys] = topk_attention(logits[:, keys], min(num_k, len(keys)), kd_T).mean(0)
    score = out.features[0].float().cpu().abs().sum(-1)
    hint = score * topk_keep_mask(score, min(num_f, p))
    maps = {"global": glob, "local": local, "hint": hint}
    return {name: scatter_visible(v, mask, grid) for name, v in maps.items()}


def heat_colors(values: np.ndarray) -> np.ndarray:
    """[...] in [0, 1] -> [..., 3] uint8 with a black-red-yellow-white ramp."""
    v = np.clip(values, 0, 1)[..., None]
    ramp = np.concatenate([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)
    return (ramp * 255).astype(np.uint8)


def overlay(frames: np.ndarray, maps: np.ndarray, tubelet: int, alpha: float = 0.6) -> np.ndarray:
    """frames [T, H, W, 3], token map [T', H', W'] -> blended [T', H, W, 3] (first frame of each tube)."""
    firsts = frames[::tubelet][: maps.shape[0]]
    m = maps / max(float(maps.max()), 1e-12)
    h, w = firsts.shape[1:3]
    up = np.stack([np.array(Image.fromarray(heat_colors(x)).resize((w, h), Image.NEAREST)) for x in m])
    return (alpha * up + (1 - alpha) * firsts).astype(np.uint8)


def masked_frames(frames: np.ndarray, mask: Tensor, grid: tuple[int, int, int], tubelet: int) -> np.ndarray:
    """Greys out the hidden tubes: [T, H, W, 3] -> [T', H, W, 3] (first frame of each tube)."""
    firsts = frames[::tubelet][: grid[0]].copy()
    hidden = hidden_pixels(mask, grid, frames.shape[1] // grid[1], tubelet)[::tubelet].numpy()
    firsts[hidden] = (0.3 * firsts[hidden] + 0.7 * 128).astype(np.uint8)
    return firsts


def strip(images: np.ndarray, label: str, pad: int = 2, min_height: int = 96) -> Image.Image:
    """[K, H, W, 3] -> one labelled row image; small clips are enlarged (nearest) to ``min_height``."""
    k, h, w, _ = images.shape
    scale = max(1, -(-min_height // h))
    h, w = h * scale, w * scale
    label_h = 14
    row = Image.new("RGB", (k * (w + pad) + pad, h + label_h + pad), "white")
    for i, img in enumerate(images):
        row.paste(Image.fromarray(img).resize((w, h), Image.NEAREST), (pad + i * (w + pad), label_h))
    ImageDraw.Draw(row).text((pad, 1), label, fill="black")
    return row


def stack_rows(rows: list[Image.Image]) -> Image.Image:
    width = max(r.width for r in rows)
    out = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height
    return out
