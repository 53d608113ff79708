"""The layers of the video ViT (`models.vit`): tubelet patch embedding, fixed sinusoidal positions,
attention (fused SDPA or explicit softmax, optionally returning the last block's logits / values for
MMKD), pre-norm blocks, and VideoMAE's weight initialisations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from common import cpu_gemm
from models.targets import normalized

ATTN_IMPLS = ("sdpa", "eager")


def sinusoid_table(num_positions: int, dim: int) -> Tensor:
    """Fixed transformer position table [1, N, dim]: sin on even, cos on odd channels.

    Computed in float64 and rounded to float32 once, as the reference does, so that float32 and
    float64 copies of a model see the same table values.
    """
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    expo = 2 * torch.div(torch.arange(dim), 2, rounding_mode="floor").double() / dim
    angles = pos / torch.pow(10000.0, expo)[None, :]
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float().unsqueeze(0)


class PatchEmbed(nn.Module):
    """Video to tubelet tokens: [B, 3, T, H, W] -> [B, N, C] with a strided Conv3d.

    The layers here take no defaults: the model's constructor (`models.vit.VideoEncoder`) holds them.
    """

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        num_frames: int,
        tubelet_size: int,
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"input size {img_size} is not divisible by the patch size {patch_size}")
        if num_frames % tubelet_size:
            raise ValueError(f"{num_frames} frames are not divisible by the tubelet size {tubelet_size}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.grid_size = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = math.prod(self.grid_size)
        self.proj = nn.Conv3d(
            in_chans,
            embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )

    def _check_shape(self, x: Tensor) -> None:
        _, _, t, h, w = x.shape
        expected = (self.num_frames, self.img_size, self.img_size)
        if (t, h, w) != expected:
            raise ValueError(f"model expects clips of {expected} (frames, height, width), got {(t, h, w)}")

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, T, H, W] -> [B, N, C], time-major; uint8 clips are ImageNet-normalised first."""
        self._check_shape(x)
        return self.proj(normalized(x)).flatten(2).transpose(1, 2)

    def forward_selected(self, x: Tensor, index: Tensor) -> Tensor:
        """Embeds only the tubelets at ``index`` [B, P] (token indices): [B, 3, T, H, W] -> [B, P, C].

        The strided Conv3d is a linear map of each tubelet, so gathering the P tubelets first and
        applying the kernel as a matrix gives the tokens of ``forward(x)[b, index[b]]`` (to float
        rounding) at P / N of the cost: a tube mask of ratio 0.9 embeds a tenth of the clip. A uint8
        clip (as the data sets ship it) is normalised on the gathered tubelets only, so no float copy
        of the whole clip is ever made.
        """
        self._check_shape(x)
        b = x.shape[0]
        tt, hh, ww = self.grid_size
        t, p = self.tubelet_size, self.patch_size
        # a view [B, T', H', W', C, t, p, p]: indexing it copies only the selected tubelets
        tubes = x.unflatten(4, (ww, p)).unflatten(3, (hh, p)).unflatten(2, (tt, t))  # views, any strides
        tubes = tubes.permute(0, 2, 4, 6, 1, 3, 5, 7)
        ti, rest = index.div(hh * ww, rounding_mode="floor"), index.remainder(hh * ww)
        hi, wi = rest.div(ww, rounding_mode="floor"), rest.remainder(ww)
        rows = torch.arange(b, device=x.device)[:, None]
        patches = tubes[rows, ti, hi, wi]  # [B, P, C, t, p, p], the kernel's (c, t, y, x) order
        patches = normalized(patches)  # uint8: the same values as normalising the whole clip first
        return F.linear(patches.flatten(2), self.proj.weight.flatten(1), self.proj.bias)


class Attention(nn.Module):
    """Multi-head self-attention with VideoMAE's parameterisation.

    ``qkv`` has no bias; with ``qkv_bias`` separate ``q_bias`` / ``v_bias`` are learnt and the key
    bias is fixed at zero. Uses fused SDPA unless the caller asks for the attention logits
    (or ``attn_impl == "eager"``, the reference's explicit softmax, kept for benchmarking).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        qk_scale: float | None,
        attn_drop: float,
        proj_drop: float,
        attn_head_dim: int | None = None,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = attn_head_dim or dim // num_heads
        inner = self.head_dim * num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.qkv = nn.Linear(dim, inner * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(inner))
            self.v_bias = nn.Parameter(torch.zeros(inner))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.attn_impl = "sdpa"

    def forward(
        self, x: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """x [B, N, C] -> (out [B, N, C], (logits [B, H, N, N], values [B, H, N, d]) or None)."""
        b, n, _ = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, N, d]
        drop = self.attn_drop if self.training else 0.0
        extras = None
        if return_attention or self.attn_impl == "eager":
            logits = (q * self.scale) @ k.transpose(-2, -1)  # [B, H, N, N], pre-softmax
            out = F.dropout(logits.softmax(dim=-1), drop, self.training) @ v
            if return_attention:
                extras = (logits, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        out = out.transpose(1, 2).reshape(b, n, -1)
        return self.proj_drop(self.proj(out)), extras


class Block(nn.Module):
    """Pre-norm transformer block; ``gamma_1/2`` (layer scale) exist only when init_values > 0."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        drop: float,
        attn_drop: float,
        drop_path: float,
        init_values: float | None,
        norm_layer: type[nn.Module],
        attn_head_dim: int | None = None,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, attn_head_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        if init_values and init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(
        self, x: Tensor, return_attention: bool = False
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        y, extras = self.attn(self.norm1(x), return_attention)
        if self.gamma_1 is None:
            x = x + self.drop_path(y)
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        else:
            x = x + self.drop_path(self.gamma_1 * y)
            x = x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))
        return x, extras


def run_blocks(
    blocks: nn.ModuleList, x: Tensor, use_checkpoint: bool, attn_from_last: bool = False
) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """Runs the blocks; only the last one returns its attention logits/values, and only if asked."""
    extras = None
    last = len(blocks) - 1
    for i, blk in enumerate(blocks):
        want = attn_from_last and i == last
        if use_checkpoint and torch.is_grad_enabled():
            x, extras_i = checkpoint(
                blk, x, want, use_reentrant=False, context_fn=cpu_gemm.checkpoint_contexts
            )
        else:
            x, extras_i = blk(x, want)
        if want:
            extras = extras_i
    return x, extras


def build_blocks(
    depth: int, dim: int, num_heads: int, drop_path_rate: float = 0.0, **block_kwargs
) -> nn.ModuleList:
    """``depth`` `Block` s whose stochastic-depth rate grows linearly from 0 to ``drop_path_rate``."""
    rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth else []
    return nn.ModuleList([Block(dim, num_heads, drop_path=rates[i], **block_kwargs) for i in range(depth)])


def init_linear_xavier(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def init_linear_trunc(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def set_attn_impl(model: nn.Module, impl: str) -> nn.Module:
    """Switches every attention layer between fused SDPA and explicit ("eager") softmax."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f"unknown attention implementation {impl!r}; choose one of {ATTN_IMPLS}")
    for m in model.modules():
        if isinstance(m, Attention):
            m.attn_impl = impl
    return model
