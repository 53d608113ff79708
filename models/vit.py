"""The video Vision Transformer used everywhere in this project.

One trunk (`VideoEncoder`: tubelet patch embedding, fixed sinusoidal positions, pre-norm blocks)
serves three roles, with parameter names and constructor arguments identical to VideoMAE so that
every public VideoMAE / MMKD checkpoint loads with ``strict=True``:

* `PretrainVisionTransformer` -- VideoMAE pre-training (encoder on visible tokens + decoder).
  With ``decoder_depth=0`` it is encoder-only: the MMKD student and teacher.
* `VisionTransformer` -- the fine-tuning classifier (all tokens, mean pooling, linear head).

Tokens are flattened time-major: index = t * (H' * W') + h * W' + w.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from models import onednn
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
    """Video to tubelet tokens: [B, 3, T, H, W] -> [B, N, C] with a strided Conv3d."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        num_frames: int = 16,
        tubelet_size: int = 2,
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
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
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
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
        norm_layer: type[nn.Module] = nn.LayerNorm,
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


def _run_blocks(
    blocks: nn.ModuleList, x: Tensor, use_checkpoint: bool, attn_from_last: bool = False
) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """Runs the blocks; only the last one returns its attention logits/values, and only if asked."""
    extras = None
    last = len(blocks) - 1
    for i, blk in enumerate(blocks):
        want = attn_from_last and i == last
        if use_checkpoint and torch.is_grad_enabled():
            x, extras_i = checkpoint(blk, x, want, use_reentrant=False, context_fn=onednn.checkpoint_contexts)
        else:
            x, extras_i = blk(x, want)
        if want:
            extras = extras_i
    return x, extras


def _build_blocks(depth, dim, num_heads, drop_path_rate, **block_kwargs) -> nn.ModuleList:
    rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth else []
    return nn.ModuleList([Block(dim, num_heads, drop_path=rates[i], **block_kwargs) for i in range(depth)])


def _init_linear_xavier(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _init_linear_trunc(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def count_visible(mask: Tensor) -> int:
    """Visible tokens per clip P of a mask [B, N] (True = hidden); every clip must have the same P.

    Reads the mask on the host: call it where the mask still lives on the CPU (`collate_batch`
    does, and ships the count as ``batch["num_visible"]``).
    """
    counts = (~mask).sum(dim=1)
    if counts.numel() and not bool((counts == counts[0]).all()):
        raise ValueError(
            f"every clip of a batch needs the same number of visible tokens, got {counts.tolist()}"
        )
    return int(counts[0]) if counts.numel() else 0


def split_tokens(mask: Tensor, num_visible: int | None = None) -> tuple[Tensor, Tensor]:
    """mask [B, N] (True = hidden) -> (visible [B, P], hidden [B, N - P]) token indices, ascending.

    A stable sort of the mask puts the visible indices first, each group in increasing order:
    exactly the tokens and the order of ``x[~mask]`` / ``x[mask]``. With ``num_visible`` given the
    output shapes follow from the arguments alone, so ``torch.compile`` needs no graph break.
    """
    if num_visible is None:
        num_visible = count_visible(mask)
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    return order[:, :num_visible], order[:, num_visible:]


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x [B, N, C], index [B, P] -> x[b, index[b]] as [B, P, C]."""
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))


@dataclass
class EncoderOutput:
    """What the encoder returns, whatever was asked.

    features:    [B, P, C] last block output for the P visible tokens (no final LayerNorm).
    attn_logits: [B, H, P, P] last block's pre-softmax attention (q * scale @ k^T), or None.
    values:      [B, H, P, d] last block's values (v_bias included), or None.
    extras:      further named outputs (e.g. an objective's own layer), carried through unchanged.
    """

    features: Tensor
    attn_logits: Tensor | None = None
    values: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def map(self, fn: Callable[[Tensor], Tensor]) -> EncoderOutput:
        """The same output with ``fn`` applied to every tensor, the extras included."""
        return EncoderOutput(
            fn(self.features),
            *(None if t is None else fn(t) for t in (self.attn_logits, self.values)),
            {k: fn(v) for k, v in self.extras.items()},
        )


class VideoEncoder(nn.Module):
    """Patch embedding + positions + blocks (+ optional final norm) over the visible tokens."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        init_values: float | None = None,
        use_learnable_pos_emb: bool = False,
        use_checkpoint: bool = False,
        num_frames: int = 16,
        tubelet_size: int = 2,
        final_norm: bool = True,
    ):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embedding width {embed_dim} is not divisible by {num_heads} heads")
        self.embed_dim = self.num_features = embed_dim
        self.num_heads = num_heads
        self.use_checkpoint = use_checkpoint
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, num_frames, tubelet_size)
        n = self.patch_embed.num_patches
        if use_learnable_pos_emb:
            self.pos_embed = nn.Parameter(torch.zeros(1, n, embed_dim))
            trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.register_buffer("pos_embed", sinusoid_table(n, embed_dim), persistent=False)
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = _build_blocks(
            depth,
            embed_dim,
            num_heads,
            drop_path_rate,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop=drop_rate,
            attn_drop=attn_drop_rate,
            init_values=init_values,
            norm_layer=norm_layer,
        )
        self.norm = norm_layer(embed_dim) if final_norm else nn.Identity()

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """(T', H', W') token grid."""
        return self.patch_embed.grid_size

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def embed(self, x: Tensor, mask: Tensor | None = None, num_visible: int | None = None) -> Tensor:
        """[B, 3, T, H, W] (+ mask [B, N], True = hidden) -> visible tokens with positions [B, P, C].

        Only the visible tubelets are embedded; ``num_visible`` (P, see `split_tokens`) lets a
        compiled model select them without reading the mask on the host.
        """
        if mask is None:
            x = self.patch_embed(x)
            return self.pos_drop(x + self.pos_embed.to(dtype=x.dtype))
        visible, _ = split_tokens(mask, num_visible)
        x = self.patch_embed.forward_selected(x, visible)
        pos = self.pos_embed.to(dtype=x.dtype).expand(x.shape[0], -1, -1)
        return self.pos_drop(x + gather_tokens(pos, visible))

    def forward_tokens(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        return_attention: bool = False,
        num_visible: int | None = None,
    ) -> EncoderOutput:
        """Blocks over the visible tokens; final norm NOT applied (MMKD distils this output)."""
        tokens = self.embed(x, mask, num_visible)
        tokens, extras = _run_blocks(self.blocks, tokens, self.use_checkpoint, return_attention)
        if extras is None:
            return EncoderOutput(tokens)
        return EncoderOutput(tokens, *extras)

    def forward(self, x: Tensor, mask: Tensor | None = None, num_visible: int | None = None) -> Tensor:
        """Normalised visible-token features [B, P, C]."""
        return self.norm(self.forward_tokens(x, mask, num_visible=num_visible).features)


class Decoder(nn.Module):
    """VideoMAE decoder: blocks -> norm -> head applied to the last ``num_masked`` positions."""

    def __init__(
        self, embed_dim, depth, num_heads, num_classes, drop_path_rate, norm_layer, use_checkpoint, **kw
    ):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = _build_blocks(depth, embed_dim, num_heads, drop_path_rate, norm_layer=norm_layer, **kw)
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: Tensor, num_masked: int) -> Tensor:
        x, _ = _run_blocks(self.blocks, x, self.use_checkpoint)
        return self.head(self.norm(x[:, x.shape[1] - num_masked :]))  # [B, num_masked, p*p*t*3]; 0 -> none


class PretrainVisionTransformer(nn.Module):
    """VideoMAE pre-training model; with ``decoder_depth=0`` the MMKD encoder-only model.

    The keyword arguments are VideoMAE's; ``num_frames`` (default 16) replaces its hard-coded
    16-frame patch embedding. ``decoder_num_classes`` defaults to 3 * tubelet * patch^2.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        encoder_in_chans: int = 3,
        encoder_num_classes: int = 0,
        encoder_embed_dim: int = 768,
        encoder_depth: int = 12,
        encoder_num_heads: int = 12,
        decoder_num_classes: int | None = None,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        init_values: float = 0.0,
        use_learnable_pos_emb: bool = False,
        use_checkpoint: bool = False,
        tubelet_size: int = 2,
        num_frames: int = 16,
        num_classes: int = 0,  # accepted for VideoMAE compatibility; unused
        in_chans: int = 0,  # accepted for VideoMAE compatibility; unused
    ):
        super().__init__()
        if encoder_num_classes:
            raise ValueError("encoder_num_classes must be 0: the pre-training encoder has no head")
        self.encoder = VideoEncoder(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=encoder_in_chans,
            embed_dim=encoder_embed_dim,
            depth=encoder_depth,
            num_heads=encoder_num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            norm_layer=norm_layer,
            init_values=init_values,
            use_learnable_pos_emb=use_learnable_pos_emb,
            use_checkpoint=use_checkpoint,
            num_frames=num_frames,
            tubelet_size=tubelet_size,
            final_norm=decoder_depth > 0,
        )
        self.encoder.apply(_init_linear_xavier)
        self.decoder_depth = decoder_depth
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        if decoder_depth == 0:
            return
        self.decoder_num_classes = decoder_num_classes or 3 * tubelet_size * patch_size**2
        self.decoder = Decoder(
            decoder_embed_dim,
            decoder_depth,
            decoder_num_heads,
            self.decoder_num_classes,
            drop_path_rate,
            norm_layer,
            use_checkpoint,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop=drop_rate,
            attn_drop=attn_drop_rate,
            init_values=init_values,
        )
        self.decoder.apply(_init_linear_xavier)
        self.encoder_to_decoder = nn.Linear(encoder_embed_dim, decoder_embed_dim, bias=False)
        nn.init.xavier_uniform_(self.encoder_to_decoder.weight)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        trunc_normal_(self.mask_token, std=0.02)
        table = sinusoid_table(self.encoder.patch_embed.num_patches, decoder_embed_dim)
        self.register_buffer("pos_embed", table, persistent=False)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "mask_token", "encoder.pos_embed"}

    def encode(
        self, x: Tensor, mask: Tensor, return_attention: bool = False, num_visible: int | None = None
    ) -> EncoderOutput:
        """MMKD view: un-normalised last-block features of the visible tokens (+ attention)."""
        return self.encoder.forward_tokens(x, mask, return_attention, num_visible)

    def forward(
        self, x: Tensor, mask: Tensor, return_attention: bool = False, num_visible: int | None = None
    ) -> Tensor | EncoderOutput:
        """[B, 3, T, H, W], mask [B, N] -> predictions of the masked tokens [B, N_mask, 3*t*p*p].

        Encoder-only models (decoder_depth=0) return `encode(x, mask, return_attention)` instead,
        so that a compiled model (``model.compile()`` wraps ``__call__``) compiles the MMKD view.
        """
        if self.decoder_depth == 0:
            return self.encode(x, mask, return_attention, num_visible)
        if return_attention:
            raise ValueError("return_attention needs an encoder-only model (decoder_depth=0)")
        visible, hidden = split_tokens(mask, num_visible)
        x_vis = self.encoder_to_decoder(self.encoder(x, mask, visible.shape[1]))  # [B, P, Cd]
        pos = self.pos_embed.to(dtype=x_vis.dtype).expand(x_vis.shape[0], -1, -1)
        pos_vis, pos_mask = gather_tokens(pos, visible), gather_tokens(pos, hidden)
        x_full = torch.cat([x_vis + pos_vis, self.mask_token.to(x_vis.dtype) + pos_mask], dim=1)
        return self.decoder(x_full, hidden.shape[1])


class VisionTransformer(VideoEncoder):
    """Fine-tuning classifier: all tokens -> blocks -> mean pool -> fc_norm -> dropout -> head."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_scale: float | None = None,
        fc_drop_rate: float = 0.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        init_values: float = 0.0,
        use_learnable_pos_emb: bool = False,
        init_scale: float = 0.0,
        all_frames: int = 16,
        tubelet_size: int = 2,
        use_checkpoint: bool = False,
        use_mean_pooling: bool = True,
    ):
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            norm_layer=norm_layer,
            init_values=init_values,
            use_learnable_pos_emb=use_learnable_pos_emb,
            use_checkpoint=use_checkpoint,
            num_frames=all_frames,
            tubelet_size=tubelet_size,
            final_norm=not use_mean_pooling,
        )
        self.num_classes = num_classes
        self.use_mean_pooling = use_mean_pooling
        self.fc_norm = norm_layer(embed_dim) if use_mean_pooling else None
        self.fc_dropout = nn.Dropout(fc_drop_rate) if fc_drop_rate > 0 else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_linear_trunc)
        if isinstance(self.head, nn.Linear) and init_scale:
            with torch.no_grad():
                self.head.weight.mul_(init_scale)
                self.head.bias.mul_(init_scale)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def get_num_layers(self) -> int:
        return len(self.blocks)

    def forward_features(self, x: Tensor) -> Tensor:
        """[B, 3, T, H, W] -> pooled features [B, C]."""
        tokens = self.forward_tokens(x).features
        if self.use_mean_pooling:
            return self.fc_norm(tokens.mean(1))
        return self.norm(tokens)[:, 0]  # no cls token: the first patch token, as VideoMAE

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(self.fc_dropout(features))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def set_attn_impl(model: nn.Module, impl: str) -> nn.Module:
    """Switches every attention layer between fused SDPA and explicit ("eager") softmax."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f"unknown attention implementation {impl!r}; choose one of {ATTN_IMPLS}")
    for m in model.modules():
        if isinstance(m, Attention):
            m.attn_impl = impl
    return model
