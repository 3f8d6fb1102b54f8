"""The stand-in's resampler: learned queries attend over the vision tower's patches.

Like OpenBMB's resampler.py it takes `torch.nn.functional`'s names with a star
import and annotates with `List`, which it never imports: `List` used to come
through that star import, and on torch 2.7 and later this module fails to
import with `NameError: name 'List' is not defined`, as the published one does.
"""

import torch
from torch import Tensor, nn
from torch.nn.functional import *  # noqa: F403


def unbatch(states: Tensor) -> List[Tensor]:  # noqa: F405
    return list(states.unbind(0))


class Resampler(nn.Module):
    def __init__(self, num_queries, embed_dim, kv_dim):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(num_queries, embed_dim))
        self.kv_proj = nn.Linear(kv_dim, embed_dim, bias=False)
        self.attn = nn.MultiheadAttention(embed_dim, max(embed_dim // 16, 1), batch_first=True)
        nn.init.normal_(self.query, std=0.02)

    def forward(self, patches: Tensor) -> Tensor:
        keys = self.kv_proj(patches)
        queries = self.query.unsqueeze(0).expand(len(patches), -1, -1)
        return self.attn(queries, keys, keys, need_weights=False)[0]
