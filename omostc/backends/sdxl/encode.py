"""Text encoding of the IR's prompt bags for SDXL (OMOST.md section 5).

All 77-token chunks of a render go through each text encoder in one batched forward; the
penultimate hidden states of the two encoders are concatenated (768 + 1280 = 2048 features in
SDXL). Encodings are cached by token ids, so a sub-prompt bag seen before costs nothing; the
cache is least-recently-used, bounded in bytes of tensor storage (``TEXT_CACHE_BYTES``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omostc.backends.sdxl.options import POOLED_MODES
from omostc.diagnostics import RenderError
from omostc.ir.clip.bags import ClipBags, bag_text_ids, chunk, tokenize_layer
from omostc.ir.clip.tokenize import TransformersClipTokenizer
from omostc.ir.model import SceneIR
from omostc.lru import LRU

# The text-encoding cache's default bound. An SDXL chunk in fp16 is 77 x 2048 hidden states plus
# two 1280-feature pooled vectors: 320,512 bytes (about 313 KiB), so 256 MiB holds about 840
# chunks (about 420 in fp32): every chunk of dozens of large scenes (the README's scene has 23),
# more where scenes share prompts, for a few percent of the memory SDXL itself takes on the GPU.
TEXT_CACHE_BYTES = 256 * 2**20

ChunkKey = tuple[tuple[int, ...], tuple[int, ...]]  # (ids for encoder 1, ids for encoder 2)
Encoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # hidden, pooled, projected pooled


@dataclass
class Conditioning:
    """What the UNet needs from text, for one render."""

    layers: list[torch.Tensor]  # per IR layer: (77 * bags, 2048)
    pooled: torch.Tensor  # (pooled_dim,): from the global layer's first chunk
    negative: torch.Tensor  # (77, 2048)
    negative_pooled: torch.Tensor  # (pooled_dim,)

    @property
    def tokens(self) -> int:
        return sum(c.shape[0] for c in self.layers)


def encoded_bytes(entry: Encoded) -> int:
    """Bytes of tensor storage an entry holds (each entry owns its storage: see ``_encode``)."""
    return sum(t.numel() * t.element_size() for t in entry if t is not None)


class TextEncoderCache(LRU[ChunkKey, Encoded]):
    """Encoded chunks by (ids for encoder 1, ids for encoder 2), least recently used evicted
    once their tensors pass ``max_bytes`` (``None``: unbounded). Counts ``hits``, ``misses``,
    ``evictions``; ``bytes`` is the storage held now."""

    def __init__(self, max_bytes: int | None = TEXT_CACHE_BYTES):
        super().__init__(max_bytes, size=encoded_bytes)

    @property
    def max_bytes(self) -> int | None:
        return self.bound

    @property
    def bytes(self) -> int:
        return self.size


class SDXLTextEncoder:
    def __init__(self, model, cache: TextEncoderCache | None = None):
        self.model = model
        self.tok1 = TransformersClipTokenizer(model.tokenizer, name="tokenizer")
        self.tok2 = TransformersClipTokenizer(model.tokenizer_2, name="tokenizer_2")
        self.cache = cache if cache is not None else TextEncoderCache()

    # --- chunks ---------------------------------------------------------------------------

    def layer_chunks(self, ir: SceneIR) -> list[list[tuple[list[int], list[int]]]]:
        """Per layer, its chunks as (encoder-1 ids, encoder-2 ids), bags as the IR has them.

        Encoder 2's ids come from its own tokenizer; where it splits text differently (it reads
        ``!`` as its pad token) its chunk is cut at 75 tokens like any other."""
        t1, t2 = self.tok1, self.tok2
        out = []
        for layer, bags in zip(ir.layers, clip_plan(ir).layers):
            tokens2 = tokenize_layer(layer.prefixes, layer.suffixes, t2)
            ids1 = bags.chunks(t1.bos_id, t1.eos_id, t1.pad_id)
            ids2 = [chunk(bag_text_ids(tokens2, bag), t2.bos_id, t2.eos_id, t2.pad_id) for bag in bags.bags]
            out.append(list(zip(ids1, ids2)))
        return out

    def negative_chunk(self, prompt: str) -> tuple[list[int], list[int]]:
        """The negative prompt the ordinary way: one 77-token chunk, truncated."""
        (a,), (b,) = self.tok1.encode([prompt]), self.tok2.encode([prompt])
        return (chunk(a, self.tok1.bos_id, self.tok1.eos_id, self.tok1.pad_id),
                chunk(b, self.tok2.bos_id, self.tok2.eos_id, self.tok2.pad_id))

    # --- encoders -------------------------------------------------------------------------

    @torch.inference_mode()
    def _encode(self, missing: list[ChunkKey]) -> list[Encoded]:
        """Chunks through both encoders in one batch. Each row is cloned so that an entry owns
        its storage: a view would keep the whole batch alive after its neighbours are evicted."""
        te1, te2 = self.model.text_encoder, self.model.text_encoder_2
        device = getattr(self.model, "execution_device", None) or te1.device
        ids1 = torch.tensor([k[0] for k in missing], dtype=torch.long, device=device)
        ids2 = torch.tensor([k[1] for k in missing], dtype=torch.long, device=device)
        h1 = te1(ids1, output_hidden_states=True).hidden_states[-2]
        text_model = getattr(te2, "text_model", te2)  # CLIPTextModelWithProjection or CLIPTextModel
        out2 = text_model(ids2, output_hidden_states=True)
        h2 = out2.hidden_states[-2]
        pooled = out2.pooler_output
        projection = getattr(te2, "text_projection", None)
        projected = projection(pooled) if projection is not None else None
        hidden = torch.cat([h1.to(h2.device, h2.dtype), h2], dim=-1)
        return [(hidden[i].clone(), pooled[i].clone(), projected[i].clone() if projected is not None else None)
                for i in range(len(missing))]

    def encode(self, ir: SceneIR, negative_prompt: str, pooled: str = "omost") -> Conditioning:
        if pooled not in POOLED_MODES:
            raise ValueError(f"pooled must be one of {POOLED_MODES}, not {pooled!r}")
        per_layer = [[(tuple(a), tuple(b)) for a, b in layer] for layer in self.layer_chunks(ir)]
        neg_ids1, neg_ids2 = self.negative_chunk(negative_prompt)
        neg: ChunkKey = (tuple(neg_ids1), tuple(neg_ids2))
        # Every chunk of this render, held here: storing new ones may evict others of this render.
        encoded = self.cache.get_many([k for layer in per_layer for k in layer] + [neg], self._encode)

        def pick(key):
            hidden, raw, projected = encoded[key]
            if pooled == "projected":
                if projected is None:
                    raise ValueError("this text_encoder_2 has no projection; use pooled='omost'")
                return hidden, projected
            return hidden, raw

        layers = [torch.cat([pick(k)[0] for k in layer], dim=0) for layer in per_layer]
        return Conditioning(layers=layers, pooled=pick(per_layer[0][0])[1],
                            negative=pick(neg)[0], negative_pooled=pick(neg)[1])


def clip_plan(ir: SceneIR) -> ClipBags:
    """The IR's CLIP bags; a RenderError for an IR lowered without them."""
    if not isinstance(ir.text, ClipBags):
        raise RenderError("this IR has no CLIP token bags: lower it with the model's tokenizer (backend.lower)")
    return ir.text
