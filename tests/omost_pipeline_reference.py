"""Omost's renderer as Omost structures it (OMOST.md 5 to 7), for tests and benchmarks only.

Everything here follows Omost's own pipeline, not omostc's: prompts tokenised and bagged per
condition with the model's tokenizers, each 77-token chunk encoded alone, the unprojected
pooler output of the first global chunk, the negative prompt encoded the ordinary way, two UNet
calls per step (positive through the regional processor, negative through the same processor
with one all-ones mask), masks resized at every call, scores materialised, k-diffusion's
DPM++ 2M on Karras sigmas, and the truncating uint8 conversion. Omost learns each layer's
latent size from a patched ``Transformer2DModel.forward``; here it comes from the sequence
length (the latent sizes of a UNet are known), so no library class is patched.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class OmostCrossAttn:
    """Omost's cross-attention processor. ``holder["conds"]`` is [(mask 90x90, cond (1, T, C))];
    ``holder["resolutions"]`` maps a layer's sequence length to its latent (h, w)."""

    def __init__(self, holder: dict):
        self.holder = holder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kw):
        h, w = self.holder["resolutions"][hidden_states.shape[1]]
        conds, masks = [], []
        for m, c in self.holder["conds"]:
            m = F.interpolate(m[None, None], (h, w), mode="nearest-exact").flatten().unsqueeze(1).repeat(1, c.size(1))
            conds.append(c)
            masks.append(m)
        conds, masks = torch.cat(conds, dim=1), torch.cat(masks, dim=1)
        mask_bool = masks > 0.5
        mask_scale = (h * w) / torch.sum(masks, dim=0, keepdim=True)
        b = conds.shape[0]
        q, k, v = attn.to_q(hidden_states), attn.to_k(conds), attn.to_v(conds)
        d = k.shape[-1] // attn.heads
        q, k, v = (t.view(b, -1, attn.heads, d).transpose(1, 2) for t in (q, k, v))
        mask_bool = mask_bool[None, None].repeat(q.size(0), q.size(1), 1, 1)
        mask_scale = mask_scale[None, None].repeat(q.size(0), q.size(1), 1, 1)
        sim = q @ k.transpose(-2, -1) * attn.scale
        sim = sim * mask_scale.to(sim)
        sim.masked_fill_(mask_bool.logical_not(), float("-inf"))
        out = (sim.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, -1, attn.heads * d)
        return attn.to_out[1](attn.to_out[0](out))


def use_omost_cross_attention(unet, holder: dict) -> None:
    unet.set_attn_processor({name: (OmostCrossAttn(holder) if name.endswith("attn2.processor") else p)
                             for name, p in unet.attn_processors.items()})


def chunk77(ids: list[int], tokenizer) -> list[int]:
    return ([tokenizer.bos_token_id] + ids[:75] + [tokenizer.eos_token_id] + [tokenizer.pad_token_id] * 75)[:77]


def encode_chunk(ids1, ids2, text_encoder, text_encoder_2):
    """One chunk through both encoders: penultimate states concatenated, and te2's pooler output."""
    out1 = text_encoder(torch.tensor([ids1]), output_hidden_states=True)
    out2 = getattr(text_encoder_2, "text_model", text_encoder_2)(torch.tensor([ids2]), output_hidden_states=True)
    return torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1), out2.pooler_output


def encode_condition(prefixes, suffixes, tok1, tok2, te1, te2):
    """encode_bag_of_subprompts_greedy: prefix ids, suffixes cropped to 75, greedy bags, chunks."""
    def ids(tokenizer, text):
        return tokenizer(text, truncation=False, add_special_tokens=False).input_ids

    p1 = [t for p in prefixes for t in ids(tok1, p)]
    p2 = [t for p in prefixes for t in ids(tok2, p)]
    items = [(ids(tok1, s)[:75], ids(tok2, s)[:75]) for s in suffixes]
    bags, current, total = [], [], 0
    for item in items:
        if total + len(item[0]) > 75 - len(p1):
            if current:
                bags.append(current)
            current, total = [item], len(item[0])
        else:
            current.append(item)
            total += len(item[0])
    if current:
        bags.append(current)
    encoded = [encode_chunk(chunk77(p1 + [t for a, _ in bag for t in a], tok1),
                            chunk77(p2 + [t for _, b in bag for t in b], tok2), te1, te2) for bag in bags]
    return torch.cat([c for c, _ in encoded], dim=1), encoded[0][1]


def encode_negative(prompt: str, tok1, tok2, te1, te2):
    ids1 = tok1(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    ids2 = tok2(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    return encode_chunk(ids1, ids2, te1, te2)


class KModel:
    """Omost's k-diffusion wrapper: schedule, nearest-log-sigma timestep, two calls per step."""

    def __init__(self, unet, holder: dict):
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        alphas_cumprod = torch.tensor(np.cumprod((1.0 - betas).numpy(), axis=0), dtype=torch.float32)
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()
        self.unet, self.holder = unet, holder

    def karras(self, n: int, rho: float = 7.0) -> torch.Tensor:
        ramp = torch.linspace(0, 1, n)
        lo, hi = self.sigmas[0] ** (1 / rho), self.sigmas[-1] ** (1 / rho)
        return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1)])

    def __call__(self, x, sigma, cfg, positive, negative):
        x_in = x / (sigma[:, None, None, None] ** 2 + 1.0) ** 0.5
        t = (sigma.log() - self.log_sigmas[:, None]).abs().argmin(dim=0).view(sigma.shape)
        eps = []
        for conds, added in (positive, negative):
            self.holder["conds"] = conds
            dummy = conds[0][1][:, :77]  # the processor reads its conditions from the holder
            eps.append(self.unet(x_in, t, encoder_hidden_states=dummy, added_cond_kwargs=added, return_dict=False)[0])
        return x - (eps[1] + cfg * (eps[0] - eps[1])) * sigma[:, None, None, None]


def sample_dpmpp_2m(model, x, sigmas, **extra):
    """k-diffusion's DPM-Solver++(2M)."""
    def sigma_fn(t):
        return t.neg().exp()

    def t_fn(sigma):
        return sigma.log().neg()

    s_in = x.new_ones([x.shape[0]])
    old = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra)
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old is None or sigmas[i + 1] == 0:
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - t_fn(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old = denoised
    return x


@torch.inference_mode()
def render_like_omost(model, canvas_outputs: dict, *, width: int, height: int, steps: int, cfg: float, seed: int,
                      negative_prompt: str, resolutions, sketch_strength: float | None = None,
                      highres: tuple[float, int, float] | None = None,
                      batch: tuple[int, int] | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """The final latents and the image from Omost's canvas outputs (``Canvas.process()``), Omost's
    way. ``model`` holds unet, vae, text encoders and tokenizers; its UNet gets Omost's
    cross-attention. ``resolutions(h, w)`` maps sequence lengths to latent sizes for an h x w
    latent; ``highres`` is (scale, steps, denoise). ``batch`` (images, index): Omost's app renders
    ``images`` pictures in one batch whose noise is one draw of ``randn((images, 4, h, w))`` from
    the one generator (each pass); this is picture ``index`` of it (the UNet treats the pictures
    of a batch independently, so it is computed alone)."""
    from PIL import Image

    tok1, tok2, te1, te2, vae = model.tokenizer, model.tokenizer_2, model.text_encoder, model.text_encoder_2, model.vae
    positive, pooled = [], None
    for item in canvas_outputs["bag_of_conditions"]:
        cond, pooler = encode_condition(item["prefixes"], item["suffixes"], tok1, tok2, te1, te2)
        pooled = pooler if pooled is None else pooled
        positive.append((torch.from_numpy(item["mask"]).float(), cond))
    negative_cond, negative_pooled = encode_negative(negative_prompt, tok1, tok2, te1, te2)
    negative = [(torch.ones(90, 90), negative_cond)]
    holder: dict = {}
    use_omost_cross_attention(model.unet, holder)
    k_model = KModel(model.unet, holder)
    generator = torch.Generator().manual_seed(seed)  # one generator for both passes, as in Omost's app

    def pipeline(initial: torch.Tensor, strength: float, steps: int) -> torch.Tensor:
        """StableDiffusionXLOmostPipeline.__call__: Karras sigmas for int(steps / strength), noise."""
        h, w = initial.shape[-2:]
        holder["resolutions"] = resolutions(h, w)
        sigmas = k_model.karras(int(steps / strength))[-(steps + 1):]
        images, index = batch or (1, 0)
        noise = torch.randn((images, 4, h, w), generator=generator, dtype=model.unet.dtype)[index:index + 1]
        time_ids = torch.tensor([[h * 8, w * 8, 0, 0, h * 8, w * 8]], dtype=torch.float32)
        return sample_dpmpp_2m(k_model, initial + noise * sigmas[0], sigmas, cfg=cfg,
                               positive=(positive, {"text_embeds": pooled, "time_ids": time_ids}),
                               negative=(negative, {"text_embeds": negative_pooled, "time_ids": time_ids}))

    def decode(latents: torch.Tensor) -> np.ndarray:
        pixels = vae.decode(latents / vae.config.scaling_factor).sample
        return (pixels[0].movedim(0, -1) * 127.5 + 127.5).float().numpy().clip(0, 255).astype(np.uint8)

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        return vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor

    initial = torch.zeros((1, 4, height // 8, width // 8))
    if sketch_strength is not None:  # the colour sketch, blurred on the grid, resized, VAE-encoded (mode)
        sketch = torch.from_numpy(canvas_outputs["initial_latent"]).float()[None].movedim(-1, 1) / 127.5 - 1.0
        sketch = F.avg_pool2d(F.pad(sketch, (40, 40, 40, 40), mode="reflect"), kernel_size=81, stride=1)
        initial = encode(F.interpolate(sketch, (height, width)))
    latents = pipeline(initial, sketch_strength or 1.0, steps)
    image = decode(latents)
    if highres is not None:  # resize_without_crop (Lanczos), numpy2pytorch, encode, sample again
        scale, highres_steps, denoise = highres
        size = (int(round(width * scale / 64.0) * 64), int(round(height * scale / 64.0) * 64))
        resized = np.array(Image.fromarray(image).resize(size, Image.LANCZOS))
        pixels = torch.from_numpy(resized[None]).float().movedim(-1, 1) / 127.5 - 1.0
        latents = pipeline(encode(pixels), denoise, highres_steps)
        image = decode(latents)
    return latents, image
