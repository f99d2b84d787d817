"""A recurrent-depth causal LM (Huginn; Geiping et al. 2025), a transformers model of its own type.

Layout: embeddings -> prelude (Llama decoder layers) -> e; a state s_0, then r times
``s_i = core(adapter([s_{i-1}, e]))`` (ONE shared core block, the prelude's output e injected at every
iteration by concatenation and a linear projection back to the hidden size) -> coda (Llama decoder
layers) -> final norm -> LM head (tied to the embeddings).

- **Training** (``model.train()``): every forward draws r (``depth.sample_depth``: 1 + Poisson of a
  log-normal rate of mean ``mean_recurrence``) and runs the first iterations under ``no_grad``, the last
  ``backprop_depth`` with gradients (truncated backpropagation); s_0 is Gaussian noise of std ``state_std``.
  The draws come from a generator seeded with ``(recurrence_seed, draws)``, where ``draws`` is a buffer
  saved with the weights: a run resumed from a checkpoint draws what the uninterrupted one drew.
- **Evaluation** (``model.eval()``): s_0 = 0 (the noise's mean, so an answer depends on nothing but the
  input) and r = ``recurrences`` (a forward argument; default ``mean_recurrence``). With ``exit_kl``, each
  position stops iterating once KL(p_{i-1} ‖ p_i) of its next-token distribution falls below it (its state
  then stays as it is, and later positions attend to it), r being the cap. ``recurrence_steps`` in the
  output says how many iterations each position used.

No KV cache (the config says ``use_cache: false``, so ``generate`` passes the whole sequence each step, as
the recurrent engine does): the per-position exit stays exact, at the cost of recomputing the prompt.
``RecurrentModel`` is the backbone (embeddings to final norm, at a fixed depth: TRL's fused LM head reads its
``last_hidden_state``); ``RecurrentForCausalLM`` adds the tied head, the loss and the adaptive exit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, LlamaConfig
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import (
    LlamaDecoderLayer,
    LlamaPreTrainedModel,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
)

from reasonkit.recurrent.depth import sample_depth, successive_kl
from reasonkit.recurrent.schema import MODEL_TYPE


@strict
class RecurrentConfig(LlamaConfig):
    """A Llama config plus the recurrent layout; ``num_hidden_layers`` is set to the distinct layers."""

    model_type = MODEL_TYPE
    prelude_layers: int = 1
    core_layers: int = 2  # the shared block's layers, applied r times
    coda_layers: int = 1
    mean_recurrence: int = 4  # the log-normal rate's mean in training; r at test time by default
    backprop_depth: int = 2  # iterations the gradient flows through (the last ones)
    state_std: float | None = None  # the initial state's noise in training; null: sqrt(2 / (5 * hidden))
    recurrence_seed: int = 0

    def __post_init__(self, **kwargs):
        self.num_hidden_layers = self.prelude_layers + self.core_layers + self.coda_layers
        self.use_cache = False  # there is none: generate must run the whole sequence every step
        if self.state_std is None:
            self.state_std = math.sqrt(2 / (5 * self.hidden_size))  # Huginn's "like-init" scale
        super().__post_init__(**kwargs)


@dataclass
class RecurrentModelOutput(BaseModelOutputWithPast):
    recurrence_steps: torch.LongTensor | None = None  # [B, T] core iterations behind each position's state


@dataclass
class RecurrentOutput(CausalLMOutputWithPast):
    recurrence_steps: torch.LongTensor | None = None  # [B, T] core iterations behind each position's logits


class RecurrentModel(LlamaPreTrainedModel):
    """The backbone, embeddings to final norm; at fixed depth (the adaptive exit needs the head: the LM does it)."""

    config_class = RecurrentConfig
    config: RecurrentConfig

    def __init__(self, config: RecurrentConfig):
        super().__init__(config)
        layer_ids = iter(range(config.num_hidden_layers))
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.prelude = nn.ModuleList(
            LlamaDecoderLayer(config, next(layer_ids)) for _ in range(config.prelude_layers)
        )
        self.adapter = nn.Linear(2 * config.hidden_size, config.hidden_size, bias=False)
        self.core = nn.ModuleList(
            LlamaDecoderLayer(config, next(layer_ids)) for _ in range(config.core_layers)
        )
        self.coda = nn.ModuleList(
            LlamaDecoderLayer(config, next(layer_ids)) for _ in range(config.coda_layers)
        )
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        # Training forwards so far: with recurrence_seed, what seeds the next draw of r (saved, so resumable).
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        recurrences: int | None = None,
        **kwargs,  # use_cache and the like: there is no cache
    ) -> RecurrentModelOutput:
        injected, layer_args = self.prelude_pass(input_ids, attention_mask, position_ids, inputs_embeds)
        if self.training:
            state, steps = self._train_iterations(injected, layer_args)
        else:
            r = recurrences or self.config.mean_recurrence
            state = torch.zeros_like(injected)
            for _ in range(r):
                state = self.core_step(state, injected, layer_args)
            steps = torch.full(injected.shape[:2], r, device=injected.device)
        return RecurrentModelOutput(
            last_hidden_state=self.coda_pass(state, layer_args), recurrence_steps=steps
        )

    @torch.no_grad()
    def states(self, input_ids, attention_mask=None, position_ids=None, recurrences: int = 8) -> torch.Tensor:
        """s_0 .. s_r of a test-time forward at fixed depth r: [r + 1, B, T, hidden] (diagnostics)."""
        injected, layer_args = self.prelude_pass(input_ids, attention_mask, position_ids, None)
        states = [torch.zeros_like(injected)]
        for _ in range(recurrences):
            states.append(self.core_step(states[-1], injected, layer_args))
        return torch.stack(states)

    def prelude_pass(self, input_ids, attention_mask, position_ids, inputs_embeds):
        """The injected input e [B, T, hidden], and what every decoder layer is called with."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if position_ids is None:
            position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)[None]
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            past_key_values=None,
            position_ids=position_ids,
        )
        layer_args = {
            "attention_mask": mask,
            "position_ids": position_ids,
            "position_embeddings": self.rotary_emb(inputs_embeds, position_ids=position_ids),
        }
        return _run(self.prelude, inputs_embeds, layer_args), layer_args

    def core_step(self, state, injected, layer_args):
        """One iteration: s_i = core(adapter([s_{i-1}, e]))."""
        return _run(self.core, self.adapter(torch.cat([state, injected], dim=-1)), layer_args)

    def coda_pass(self, state, layer_args):
        """The hidden states the LM head reads."""
        return self.norm(_run(self.coda, state, layer_args))

    def _train_iterations(self, injected, layer_args):
        generator = torch.Generator().manual_seed((self.config.recurrence_seed << 32) + int(self.draws))
        self.draws += 1
        without_grad, with_grad = sample_depth(
            self.config.mean_recurrence, self.config.backprop_depth, generator
        )
        noise = torch.randn(injected.shape, generator=generator) * self.config.state_std
        state = noise.to(injected)
        with torch.no_grad():
            for _ in range(without_grad):
                state = self.core_step(state, injected, layer_args)
        for _ in range(with_grad):
            state = self.core_step(state, injected, layer_args)
        steps = torch.full(injected.shape[:2], without_grad + with_grad, device=injected.device)
        return state, steps


class RecurrentForCausalLM(LlamaPreTrainedModel, GenerationMixin):
    config_class = RecurrentConfig
    config: RecurrentConfig
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: RecurrentConfig):
        super().__init__(config)
        self.model = RecurrentModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        recurrences: int | None = None,
        exit_kl: float | None = None,
        **kwargs,  # use_cache, past_key_values (there is no cache), the loss's num_items_in_batch
    ) -> RecurrentOutput:
        if exit_kl is not None and not self.training:
            hidden, steps = self._adaptive_exit(
                input_ids, attention_mask, position_ids, inputs_embeds, recurrences, exit_kl
            )
        else:
            out = self.model(input_ids, attention_mask, position_ids, inputs_embeds, recurrences)
            hidden, steps = out.last_hidden_state, out.recurrence_steps
        logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config.vocab_size, **kwargs)
        return RecurrentOutput(loss=loss, logits=logits, recurrence_steps=steps)

    def _adaptive_exit(self, input_ids, attention_mask, position_ids, inputs_embeds, recurrences, exit_kl):
        """Up to r iterations; each position stops (its state kept as it is) once its next-token distribution
        moved less than ``exit_kl`` since the previous iteration. The last hidden states and the iterations
        each position used."""
        backbone = self.model
        r = recurrences or self.config.mean_recurrence
        injected, layer_args = backbone.prelude_pass(input_ids, attention_mask, position_ids, inputs_embeds)
        state = torch.zeros_like(injected)
        steps = torch.full(injected.shape[:2], r, device=injected.device)
        # Padding never needs to converge: it starts exited.
        exited = torch.zeros_like(steps, dtype=torch.bool) if attention_mask is None else attention_mask == 0
        previous = None
        for i in range(1, r + 1):
            state = torch.where(exited[..., None], state, backbone.core_step(state, injected, layer_args))
            hidden = backbone.coda_pass(state, layer_args)
            logprobs = self.lm_head(hidden).float().log_softmax(-1)
            if previous is not None:
                now = ~exited & (successive_kl(previous, logprobs) < exit_kl)
                steps[now] = i
                exited |= now
                if exited.all():
                    break
            previous = logprobs
        return hidden, steps


def _run(layers: nn.ModuleList, hidden: torch.Tensor, layer_args: dict) -> torch.Tensor:
    for layer in layers:
        hidden = layer(hidden, **layer_args)
    return hidden


AutoConfig.register(MODEL_TYPE, RecurrentConfig, exist_ok=True)
AutoModelForCausalLM.register(RecurrentConfig, RecurrentForCausalLM, exist_ok=True)
