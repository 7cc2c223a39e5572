"""The default model's architecture in PyTorch: LLaMA (RMSNorm, rotary positions on interleaved pairs as
GGUF's llama has them, causal multi-head attention, gated FFN) with a ReLU-family activation:
  relu  (ReluLLaMA):  down(relu(gate x) * up x)
  drelu (dReLU):      down(relu(gate x) * relu(up x))
No biases; untied output. `ffn_act` returns the FFN's intermediate activations for the sparsity
statistics and the optional L1 penalty."""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab: int = 4096
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 8
    ffn: int = 1024
    ctx: int = 256
    act: str = "relu"
    eps: float = 1e-5
    rope_base: float = 10000.0

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg, device, dtype=torch.float32):
    hd = cfg.dim // cfg.n_heads
    inv = cfg.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(cfg.ctx, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).to(device, dtype), torch.sin(ang).to(device, dtype)


def rope(x, cos, sin):
    # x: (B, H, T, hd); pairs (2i, 2i+1) rotate by angle pos * base^(-2i/hd)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[: x.shape[2]], sin[: x.shape[2]]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.attn_norm = RMSNorm(d, cfg.eps)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.ffn_norm = RMSNorm(d, cfg.eps)
        self.gate = nn.Linear(d, cfg.ffn, bias=False)
        self.up = nn.Linear(d, cfg.ffn, bias=False)
        self.down = nn.Linear(cfg.ffn, d, bias=False)

    def ffn_act(self, h):
        g = F.relu(self.gate(h))
        u = self.up(h)
        return g * (F.relu(u) if self.cfg.act == "drelu" else u)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        H = self.cfg.n_heads
        h = self.attn_norm(x)
        q, k, v = (w(h).view(B, T, H, D // H).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if hasattr(F, "scaled_dot_product_attention") and x.is_cuda:  # the same math, fused (PyTorch >= 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(D // H) + mask[:T, :T]
            y = F.softmax(att.float(), dim=-1).to(v.dtype) @ v
        y = y.transpose(1, 2).reshape(B, T, D)
        x = x + self.wo(y)
        a = self.ffn_act(self.ffn_norm(x))
        return x + self.down(a), a


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab, bias=False)
        cos, sin = rope_tables(cfg, "cpu")
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("mask", torch.full((cfg.ctx, cfg.ctx), float("-inf")).triu(1), persistent=False)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * cfg.n_layers) if n.endswith(("wo.weight", "down.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, acts=None):
        """Logits (B, T, vocab); with acts a list, each layer's FFN activations are appended to it."""
        x = self.embed(idx)
        for b in self.blocks:
            x, a = b(x, self.cos, self.sin, self.mask)
            if acts is not None:
                acts.append(a)
        return self.output(self.norm(x))

    def n_params(self):
        return sum(p.numel() for p in self.parameters())
