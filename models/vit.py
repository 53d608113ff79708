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

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn

from models.layers import (
    PatchEmbed,
    build_blocks,
    init_linear_trunc,
    init_linear_xavier,
    run_blocks,
    sinusoid_table,
)
from models.tokens import gather_tokens, split_tokens


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
    """Patch embedding + positions + blocks (+ optional final norm) over the visible tokens.

    Its keyword arguments are the one list of the trunk's options: `PretrainVisionTransformer` and
    `VisionTransformer` pass theirs through under VideoMAE's names.
    """

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
        # what a block is made of: the pre-training decoder and the classifier's fc_norm reuse it
        self.block_options = dict(
            drop_path_rate=drop_path_rate,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            drop=drop_rate,
            attn_drop=attn_drop_rate,
            init_values=init_values,
            norm_layer=norm_layer,
        )
        self.blocks = build_blocks(depth, embed_dim, num_heads, **self.block_options)
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
        tokens, extras = run_blocks(self.blocks, tokens, self.use_checkpoint, return_attention)
        if extras is None:
            return EncoderOutput(tokens)
        return EncoderOutput(tokens, *extras)

    def forward(self, x: Tensor, mask: Tensor | None = None, num_visible: int | None = None) -> Tensor:
        """Normalised visible-token features [B, P, C]."""
        return self.norm(self.forward_tokens(x, mask, num_visible=num_visible).features)


class Decoder(nn.Module):
    """VideoMAE decoder: blocks -> norm -> head applied to the last ``num_masked`` positions."""

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        num_classes: int,
        use_checkpoint: bool,
        block_options: dict,
    ):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = build_blocks(depth, embed_dim, num_heads, **block_options)
        self.norm = block_options["norm_layer"](embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: Tensor, num_masked: int) -> Tensor:
        x, _ = run_blocks(self.blocks, x, self.use_checkpoint)
        return self.head(self.norm(x[:, x.shape[1] - num_masked :]))  # [B, num_masked, p*p*t*3]; 0 -> none


class PretrainVisionTransformer(nn.Module):
    """VideoMAE pre-training model; with ``decoder_depth=0`` the MMKD encoder-only model.

    The keyword arguments are VideoMAE's: the ``encoder_*`` / ``decoder_*`` sizes here, the rest
    (``img_size``, ``patch_size``, ``mlp_ratio``, ``qkv_bias``, ``qk_scale``, ``drop_rate``,
    ``attn_drop_rate``, ``drop_path_rate``, ``norm_layer``, ``init_values``, ``use_learnable_pos_emb``,
    ``use_checkpoint``, ``tubelet_size``, ``num_frames``) are `VideoEncoder`'s and shape the decoder's
    blocks too. ``num_frames`` (default 16) replaces VideoMAE's hard-coded 16-frame patch embedding;
    ``decoder_num_classes`` defaults to 3 * tubelet * patch^2.
    """

    def __init__(
        self,
        *,
        encoder_in_chans: int = 3,
        encoder_num_classes: int = 0,
        encoder_embed_dim: int = 768,
        encoder_depth: int = 12,
        encoder_num_heads: int = 12,
        decoder_num_classes: int | None = None,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 8,
        num_classes: int = 0,  # accepted for VideoMAE compatibility; unused
        in_chans: int = 0,  # accepted for VideoMAE compatibility; unused
        **encoder,
    ):
        super().__init__()
        if encoder_num_classes:
            raise ValueError("encoder_num_classes must be 0: the pre-training encoder has no head")
        self.encoder = VideoEncoder(
            in_chans=encoder_in_chans,
            embed_dim=encoder_embed_dim,
            depth=encoder_depth,
            num_heads=encoder_num_heads,
            final_norm=decoder_depth > 0,
            **encoder,
        )
        self.encoder.apply(init_linear_xavier)
        self.decoder_depth = decoder_depth
        self.patch_size = self.encoder.patch_embed.patch_size
        self.tubelet_size = self.encoder.patch_embed.tubelet_size
        if decoder_depth == 0:
            return
        self.decoder_num_classes = decoder_num_classes or 3 * self.tubelet_size * self.patch_size**2
        self.decoder = Decoder(
            decoder_embed_dim,
            decoder_depth,
            decoder_num_heads,
            self.decoder_num_classes,
            self.encoder.use_checkpoint,
            self.encoder.block_options,
        )
        self.decoder.apply(init_linear_xavier)
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
    """Fine-tuning classifier: all tokens -> blocks -> mean pool -> fc_norm -> dropout -> head.

    The keyword arguments are VideoMAE's: the head's here, ``all_frames`` (the clip length), and
    `VideoEncoder`'s for the trunk (``img_size``, ``patch_size``, ``embed_dim``, ``depth``, ...).
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        fc_drop_rate: float = 0.0,
        init_scale: float = 0.0,
        all_frames: int = 16,
        use_mean_pooling: bool = True,
        **encoder,
    ):
        super().__init__(num_frames=all_frames, final_norm=not use_mean_pooling, **encoder)
        self.num_classes = num_classes
        self.use_mean_pooling = use_mean_pooling
        self.fc_norm = self.block_options["norm_layer"](self.embed_dim) if use_mean_pooling else None
        self.fc_dropout = nn.Dropout(fc_drop_rate) if fc_drop_rate > 0 else nn.Identity()
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_linear_trunc)
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
