"""A decoder-only patch transformer with multi-quantile output patches.

Input patches of `patch_len` (values, missing mask) are embedded by a residual MLP, run through
pre-norm causal blocks with rotary attention, and every position emits `len(quantiles)` x
`output_patch_len` values: the quantiles of the next `output_patch_len` steps after that patch.
Longer horizons roll out autoregressively along quantile paths (tsfm_core.predict.Forecaster._rollout).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class ModelConfig:
    patch_len: int = 16
    output_patch_len: int = 32
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.0
    max_context: int = 512
    quantiles: tuple[float, ...] = field(default=DEFAULT_QUANTILES)

    def __post_init__(self) -> None:
        self.quantiles = tuple(float(q) for q in self.quantiles)
        if self.output_patch_len % self.patch_len:
            raise ValueError("output_patch_len must be a multiple of patch_len (rollout appends patches)")
        if self.max_context % self.patch_len:
            raise ValueError("max_context must be a multiple of patch_len")
        if 0.5 not in self.quantiles:
            raise ValueError("quantiles must include the median 0.5")

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["quantiles"] = list(self.quantiles)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# Named sizes; `base` is what ships in tsfm_core/weights.
SIZES = {
    "tiny": ModelConfig(d_model=64, n_layers=2, n_heads=2, d_ff=128),
    "compact": ModelConfig(),  # the 1.1M-parameter base bundled before the GPU-pretrained one
    "base": ModelConfig(d_model=256, n_layers=8, n_heads=4, d_ff=1024),
    "small": ModelConfig(d_model=256, n_layers=6, n_heads=8, d_ff=1024),
}


class ResidualMLP(nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0):
        super().__init__()
        self.up = nn.Linear(d_in, d_hidden)
        self.down = nn.Linear(d_hidden, d_out)
        self.skip = nn.Linear(d_in, d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.silu(self.up(x)))) + self.skip(x)


def rotary(x: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding over the sequence axis of [B, H, N, D]."""
    n, d = x.shape[-2], x.shape[-1]
    half = d // 2
    freqs = 10000 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = torch.arange(n, device=x.device, dtype=torch.float32)[:, None] * freqs[None]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, x[..., 2 * half :]], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)

        q, k, v = rotary(heads(self.q_proj(x))), rotary(heads(self.k_proj(x))), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.o_proj(out.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), attn_mask))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class PatchTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = ResidualMLP(2 * cfg.patch_len, cfg.d_ff, cfg.d_model, cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model)
        self.head = ResidualMLP(cfg.d_model, cfg.d_ff, len(cfg.quantiles) * cfg.output_patch_len)

    def forward(self, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """patches, mask: [B, N, P] (scaled values, 1 = observed) -> [B, N, Q, output_patch_len]."""
        b, n, _ = patches.shape
        x = self.embed(torch.cat([patches, mask], dim=-1))
        for block in self.blocks:
            x = block(x, attention_mask(mask))
        out = self.head(self.final_norm(x))
        return out.view(b, n, len(self.config.quantiles), self.config.output_patch_len)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def attention_mask(mask: torch.Tensor) -> torch.Tensor:
    """Causal mask that also hides fully-missing (padding) patches; a patch always sees itself."""
    n = mask.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()
    key_has_data = (mask.sum(-1) > 0)[:, None, None, :]  # [B, 1, 1, N]
    eye = torch.eye(n, dtype=torch.bool, device=mask.device)
    return causal & (key_has_data | eye)


def init_weights(model: PatchTransformer, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            bound = 1.0 / math.sqrt(p.shape[1])
            with torch.no_grad():
                p.uniform_(-bound, bound, generator=gen)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
