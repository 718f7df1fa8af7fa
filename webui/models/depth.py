"""MiDaS depth for ControlNet from the file users have (``dpt_hybrid-midas-501f0c75.pt`` of
lllyasviel/Annotators), run on transformers' DPT-hybrid model -- no timm or torchvision.

The original checkpoint (timm ViT-hybrid "pretrained.*" + MiDaS "scratch.*" names) is renamed
to transformers' layout here; the architecture sizes are read from the file's tensor shapes.
The renaming follows the one transformers used to convert this model (its DPT-hybrid
conversion script, Apache-2.0), and matches the timm-based MiDaS output exactly on random
weights.
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

DEPTH_FILE = "dpt_hybrid-midas-501f0c75.pt"

_RENAMES = (
    (r"pretrained\.model\.cls_token", "dpt.embeddings.cls_token"),
    (r"pretrained\.model\.pos_embed", "dpt.embeddings.position_embeddings"),
    (r"pretrained\.model\.patch_embed\.backbone\.stem\.conv\.", "dpt.embeddings.backbone.bit.embedder.convolution."),
    (r"pretrained\.model\.patch_embed\.backbone\.stem\.norm\.", "dpt.embeddings.backbone.bit.embedder.norm."),
    (r"pretrained\.model\.patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.",
     r"dpt.embeddings.backbone.bit.encoder.stages.\1.layers.\2."),
    (r"pretrained\.model\.patch_embed\.proj\.", "dpt.embeddings.projection."),
    (r"pretrained\.model\.blocks\.(\d+)\.norm1\.", r"dpt.encoder.layer.\1.layernorm_before."),
    (r"pretrained\.model\.blocks\.(\d+)\.norm2\.", r"dpt.encoder.layer.\1.layernorm_after."),
    (r"pretrained\.model\.blocks\.(\d+)\.attn\.proj\.", r"dpt.encoder.layer.\1.attention.output.dense."),
    (r"pretrained\.model\.blocks\.(\d+)\.mlp\.fc1\.", r"dpt.encoder.layer.\1.intermediate.dense."),
    (r"pretrained\.model\.blocks\.(\d+)\.mlp\.fc2\.", r"dpt.encoder.layer.\1.output.dense."),
    (r"pretrained\.model\.norm\.", "dpt.layernorm."),
    (r"pretrained\.act_postprocess(\d)\.0\.project\.0\.", lambda m: f"neck.reassemble_stage.readout_projects.{int(m[1]) - 1}.0."),
    (r"pretrained\.act_postprocess(\d)\.3\.", lambda m: f"neck.reassemble_stage.layers.{int(m[1]) - 1}.projection."),
    (r"pretrained\.act_postprocess(\d)\.4\.", lambda m: f"neck.reassemble_stage.layers.{int(m[1]) - 1}.resize."),
    (r"scratch\.layer(\d)_rn\.", lambda m: f"neck.convs.{int(m[1]) - 1}."),
    # MiDaS fuses from the deepest level (refinenet4) up; transformers counts from there.
    (r"scratch\.refinenet(\d)\.out_conv\.", lambda m: f"neck.fusion_stage.layers.{4 - int(m[1])}.projection."),
    (r"scratch\.refinenet(\d)\.resConfUnit(\d)\.conv(\d)\.",
     lambda m: f"neck.fusion_stage.layers.{4 - int(m[1])}.residual_layer{m[2]}.convolution{m[3]}."),
    (r"scratch\.output_conv\.", "head.head."),
)


def to_transformers(sd: dict) -> dict:
    """The MiDaS DPT-hybrid state dict in DPTForDepthEstimation names (the ImageNet head dropped,
    each fused q/k/v projection split in three)."""
    out = {}
    for key, value in sd.items():
        if key.startswith("pretrained.model.head."):
            continue
        qkv = re.fullmatch(r"pretrained\.model\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key)
        if qkv:
            for name, part in zip(("query", "key", "value"), value.chunk(3, 0)):
                out[f"dpt.encoder.layer.{qkv[1]}.attention.attention.{name}.{qkv[2]}"] = part
            continue
        for pattern, repl in _RENAMES:
            new, hits = re.subn("^" + pattern, repl, key)
            if hits:
                out[new] = value
                break
        else:
            raise KeyError(f"unexpected tensor {key}")
    return out


def config_for(sd: dict):
    """A DPT-hybrid config with the sizes the file's tensors have (the real file: ViT-B/16 on a
    ResNet-50 stem of 3 + 4 + 9 blocks, 384 px positions, 256 fusion channels)."""
    from transformers import DPTConfig

    hidden = sd["pretrained.model.cls_token"].shape[-1]
    layers = len({k.split(".")[3] for k in sd if k.startswith("pretrained.model.blocks.")})
    stage = "pretrained.model.patch_embed.backbone.stages.{}.blocks."
    depths = [len({k.split(".")[7] for k in sd if k.startswith(stage.format(s))}) for s in range(3)]
    widths = [sd[f"{stage.format(s)}0.conv3.weight"].shape[0] for s in range(3)]
    grid = round((sd["pretrained.model.pos_embed"].shape[1] - 1) ** 0.5)
    return DPTConfig(
        is_hybrid=True, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
        intermediate_size=sd["pretrained.model.blocks.0.mlp.fc1.weight"].shape[0], layer_norm_eps=1e-6,
        image_size=grid * 16, patch_size=16, backbone_out_indices=[0, 1, layers * 2 // 3, layers - 1],
        reassemble_factors=[1, 1, 1, 0.5], neck_hidden_sizes=[widths[0], widths[1], hidden, hidden],
        fusion_hidden_size=sd["scratch.layer1_rn.weight"].shape[0], readout_type="project",
        backbone_featmap_shape=[1, widths[2], grid, grid], use_auxiliary_head=False,
        backbone_config={"model_type": "bit", "depths": depths, "hidden_sizes": widths + [widths[2] * 2],
                         "embedding_size": sd["pretrained.model.patch_embed.backbone.stem.conv.weight"].shape[0],
                         "out_features": ["stage1", "stage2", "stage3"], "layer_type": "bottleneck",
                         "global_padding": "same", "embedding_dynamic_padding": True})


class MidasDepth(nn.Module):
    """Holds the transformers model built for the file once its weights are known."""

    def __init__(self):
        super().__init__()
        self.net = None

    def load_file_dict(self, sd: dict) -> None:
        from transformers import DPTForDepthEstimation

        try:
            cfg = config_for(sd)
        except (KeyError, IndexError, ValueError) as e:
            raise KeyError(f"not a MiDaS DPT-hybrid file ({e})") from None
        self.net = DPTForDepthEstimation(cfg)
        self.net.load_state_dict(to_transformers(sd))


@torch.no_grad()
def depth_map(model: MidasDepth, img: Image.Image, resolution: int) -> Image.Image:
    """Near is bright, far is dark, normalised per picture (as MiDaS maps for ControlNet are)."""
    # transformers' DPT-hybrid takes square inputs (in multiples of 32); the map is resized after.
    side = int(min(1024, max(64, round(resolution / 32) * 32)))
    rgb = np.asarray(img.convert("RGB").resize((side, side), Image.BICUBIC), dtype=np.float32) / 127.5 - 1
    param = next(model.parameters())
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(param.device, param.dtype)
    model.net.dpt.embeddings.image_size = (side, side)  # only its size check; positions are interpolated
    depth = model.net(pixel_values=x).predicted_depth[0].float()
    depth = (depth - depth.min()) / (depth.max() - depth.min()).clamp_min(1e-8)
    return Image.fromarray((depth.cpu().numpy() * 255).clip(0, 255).astype(np.uint8)).convert("RGB")
