"""Analytic FLOPs of a VisionLanguageModel: per training sample (forward + backward) and per answered prompt.

Computed from the model's shapes, never measured: every matrix product of the vision tower (patch embedding
over the patches, its layers over patches + CLS/register tokens), the connector (`Connector.count_flops`), the
fusion (`Fusion.count_flops`, before each decoder layer) and the language model (its layers over the sequence,
the LM head), plus the attention products of every layer. A mixture-of-experts LM's layers count each token's
router and its `num_experts_per_tok` experts, not all experts. What counts and how backward is decided is in
`flop_tape`; a test checks the totals against torch's FlopCounterMode on real forward + backward passes.

Padding is not counted (FLOPs of the sample's own tokens), nor validation passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

from torch import nn

from vlmlab.models.flop_tape import FlopCount, Special, Tape
from vlmlab.models.fusion import decoder_layers
from vlmlab.models.vlm import VisionLanguageModel

View = tuple[int, int]  # (height, width) of one view of an image
# Parameters that put tokens before the patches in a vision encoder's sequence (CLIP, DINOv2, registers).
_PREFIX_PARAMETERS = ("class_embedding", "cls_token", "register_tokens")


def training_flops(
    model: VisionLanguageModel, images: Sequence[Sequence[View]], text_tokens: float, batch_size: int = 1,
) -> FlopCount:
    """FLOPs of one training sample: its images' views and `text_tokens` besides the image placeholders."""
    tape = Tape(batch_size=batch_size)
    visual_tokens, visual_grad = _encode(tape, model, images)
    length = text_tokens + sum(model.sequence_tokens(list(views)) for views in images)
    _language(tape, model, length, length, length, visual_tokens, visual_grad)
    return tape.result()


def inference_flops(
    model: VisionLanguageModel, images: Sequence[Sequence[View]], prompt_text_tokens: float, generated_tokens: float,
    batch_size: int = 1,
) -> float:
    """Forward FLOPs of answering one prompt greedily: encode the images, prefill, decode with the KV cache.

    The prefill's LM head runs on the last position only and gives the first new token; each later token is
    one decode step of a single position attending over the cache. Those steps are counted at the mean cache
    length (exact: their attention grows linearly with it).
    """
    tape = Tape(batch_size=batch_size)
    visual_tokens, _ = _encode(tape, model, images)
    prompt = prompt_text_tokens + sum(model.sequence_tokens(list(views)) for views in images)
    _language(tape, model, prompt, prompt, 1, visual_tokens, False)
    steps = max(0.0, generated_tokens - 1)
    decode = Tape(batch_size=batch_size)
    _language(decode, model, 1, prompt + generated_tokens / 2, 1, visual_tokens, False)
    return tape.result().total_forward + steps * decode.result().total_forward


def _encode(tape: Tape, model: VisionLanguageModel, images: Sequence[Sequence[View]]) -> tuple[int, bool]:
    """Count every view through the tower and the connector; the visual tokens and whether they require grad."""
    tokens, grad = 0, False
    for views in images:
        for height, width in views:
            tape.grad = False  # pixels
            grid = model.vision.grid(height, width)
            with tape.counting("vision"):
                _vision_view(tape, model.vision.encoder, grid, model.vision.feature_layer)
            with tape.counting("connector"):
                model.connector.count_flops(tape, grid)
            tokens += model.connector.num_tokens(grid)
            grad = grad or tape.grad
    return tokens, grad


def _vision_view(tape: Tape, encoder: nn.Module, grid: tuple[int, int], feature_layer: int) -> None:
    """A transformers vision encoder on one view: patch embedding, then its layers over patches + prefix tokens."""
    config = encoder.config
    patches = grid[0] * grid[1]
    prefix = sum(p.numel() // config.hidden_size for name, p in encoder.named_parameters()
                 if name.rsplit(".", 1)[-1] in _PREFIX_PARAMETERS)
    sequence = patches + prefix
    layers = _layer_stack(encoder, config.num_hidden_layers)
    # hidden_states[k] is the output of layer k: layers past the feature layer run but never reach the loss.
    live = feature_layer % (len(layers) + 1)
    special: dict[nn.Module, Callable[[], None]] = {
        conv: (lambda conv=conv: tape.conv(conv, patches)) for conv in encoder.modules() if isinstance(conv, nn.Conv2d)
    }
    special[layers] = lambda: _stack(tape, layers, sequence, lambda index: tape.attention(sequence, sequence,
                                                                                           config.hidden_size), live)
    tape.walk(encoder, sequence, special)


def _language(
    tape: Tape, model: VisionLanguageModel, queries: float, keys: float, head_rows: float, visual_tokens: int,
    visual_grad: bool,
) -> None:
    """The LM (and fusion blocks) on `queries` positions attending over `keys`, its head on `head_rows` of them."""
    hf = model.lm.model
    config = hf.config
    heads = config.num_attention_heads
    width = heads * (getattr(config, "head_dim", None) or config.hidden_size // heads)
    layers = decoder_layers(model.lm)
    # The sequence requires grad from the start when the embeddings train, or when it carries the visual tokens.
    tape.grad = model.lm.embed_tokens().weight.requires_grad or (model.fusion.in_sequence and visual_grad)

    def before(index: int) -> None:
        with tape.counting("fusion"):
            model.fusion.count_flops(tape, index, queries, visual_tokens, visual_grad)

    def attention(index: int) -> None:
        tape.attention(queries, keys, width)

    head = hf.get_output_embeddings()
    moe = _sparse_experts(tape, hf, queries)
    with tape.counting("lm"):
        tape.walk(hf, queries, {layers: lambda: _stack(tape, layers, queries, attention, len(layers), before, moe),
                                head: lambda: tape.linear(head, head_rows)})


def _sparse_experts(tape: Tape, hf: nn.Module, tokens: float) -> dict[nn.Module, Callable[[], None]]:
    """A mixture-of-experts LM's expert stacks and routers, counted as they run on `tokens` positions: each token
    through its config's `num_experts_per_tok` experts and through the router. Empty for a dense LM.

    transformers keeps a layer's experts as [experts, out, in] parameters of one module, and its router, beside
    it in the sparse block, as a bare [experts, hidden] weight: a walk would count neither (not linear layers)."""
    top_k = getattr(hf.config, "num_experts_per_tok", None)
    if not top_k:
        return {}
    special: dict[nn.Module, Callable[[], None]] = {}
    for block in hf.modules():
        for stack in block.children():
            stacked = [p.shape[0] for p in stack.parameters(recurse=False) if p.ndim == 3]
            if not stacked:
                continue
            special[stack] = lambda stack=stack: tape.experts(stack, tokens, top_k)
            for router in block.children():
                weight = dict(router.named_parameters(recurse=False)).get("weight")
                if (weight is not None and weight.ndim == 2 and weight.shape[0] == stacked[0]
                        and not isinstance(router, (nn.Linear, nn.Embedding))):
                    special[router] = lambda weight=weight: tape.weight(weight, tokens)
    return special


def _stack(
    tape: Tape, layers: nn.ModuleList, tokens: float, attention: Callable[[int], None], live: int,
    before: Callable[[int], None] = lambda index: None, special: Special | None = None,
) -> None:
    """Each transformer layer's products, its attention right after its attention block; backward below `live`.
    Modules in `special` (an MoE layer's experts and router) are counted by their callable."""
    for index, layer in enumerate(layers):
        before(index)
        with nullcontext() if index < live else tape.forward_only():
            attended = False
            for name, child in layer.named_children():
                tape.walk(child, tokens, special)
                # transformers names the block self_attn, attention or attn: its products come before the MLP's.
                if not attended and ("attn" in name or "attention" in name):
                    attention(index)
                    attended = True
            if not attended:
                attention(index)


def _layer_stack(module: nn.Module, count: int) -> nn.ModuleList:
    """The ModuleList of a transformers encoder's `count` layers."""
    for child in module.modules():
        if isinstance(child, nn.ModuleList) and len(child) == count:
            return child
    raise ValueError(f"{type(module).__name__} has no list of {count} layers")
