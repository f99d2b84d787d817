"""Generation on vLLM servers of their own (``engine: vllm_server``), with the policy's weights pushed live.

The servers are vLLM's own OpenAI-compatible server started apart, on their own devices
(``reasonkit vllm-serve MODEL``: cli/vllm_serve.py). This engine talks to them through vLLM's routes only:

- sampling: ``/inference/v1/generate`` (token ids in; token ids, processed log-probs and the weight
  version that sampled each token out), one request per prompt with ``n = G``, all in flight at once,
  prompts spread over the servers (data-parallel rollout);
- weights: vLLM's RL routes. Each push is ``/pause?mode=wait`` (requests in flight finish, new ones wait),
  then a weight-transfer engine from vLLM's trainer-side registry (``nccl`` between GPUs, or our ``gloo``,
  weight_transfer_gloo.py) drives ``/start_weight_update`` → ``/update_weights`` (the tensors travel
  beside it) → ``/finish_weight_update`` with the push's version number, then ``/resume``. Every completion
  is tagged by the server with the version that sampled it (``Rollout.weight_version``).

Several trainer processes: each sends its own prompts; the weight push is made by every process (under
ZeRO-3 its gathers are collectives) but only the first one talks to the servers and sends, and all wait
for it before generating again, so no process samples the old weights after a push.

Failures:
- a server not up yet: every process waits up to ``startup_timeout`` for ``/health``, then stops naming the
  URL and the command that starts it;
- a server whose model is not the policy's (another vocabulary, another number of layers, or weights the
  push cannot load): the run stops before step 1, saying what differs;
- a generation request that fails (timeout, dropped connection, server error): sent again, up to
  ``retries`` times, once its server answers ``/health``; a server that comes back *restarted* has lost
  the policy's weights (it answers with its start-up weights), and a push that fails leaves the servers
  with partial weights: in both cases the run stops with an ``EngineError`` naming the URL. Checkpoints
  are written only between steps, so the last one is intact: restart the server and
  ``reasonkit run RECIPE --resume`` (which pushes the checkpoint's weights before generating).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import requests
import torch

from reasonkit.engine_settings import VLLMServerSettings
from reasonkit.rollout.base import (
    EngineError,
    EngineInputs,
    Rollout,
    SamplingSettings,
    end_at_first_stop,
    prompt_seed,
    prompt_token_ids,
    stop_token_ids,
)
from reasonkit.rollout.policy_weights import policy_weight_metadata, policy_weights

log = logging.getLogger(__name__)

# Token text for the vocabulary probe: digits, words, the think tags and punctuation.
PROBE_TEXT = "<think>12 * 34 = 408.</think> The answer is 408! Hello, world?"
REQUEST_ERRORS = (requests.ConnectionError, requests.Timeout, requests.HTTPError)


class Server:
    """One vLLM server's HTTP surface."""

    def __init__(self, url: str, timeout: float):
        self.url, self.timeout = url.rstrip("/"), timeout

    def get(self, path: str, **params) -> Any:
        response = requests.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        _raise_for_status(response)
        return response.json()

    def post(self, path: str, body: dict | None = None, **params) -> Any:
        response = requests.post(f"{self.url}{path}", json=body, params=params, timeout=self.timeout)
        _raise_for_status(response)
        return response.json()

    def is_up(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False


def _raise_for_status(response: requests.Response) -> None:
    """``raise_for_status`` with the server's own error text, which vLLM puts in the body."""
    if response.status_code >= 400:
        raise requests.HTTPError(
            f"{response.status_code} from {response.url}: {response.text[:2000]}", response=response
        )


def serve_command(url: str, model_path: str) -> str:
    """The command that starts a server for ``url``.

    >>> serve_command("http://10.0.0.2:8001", "runs/x/sft/model")
    'reasonkit vllm-serve runs/x/sft/model --host 0.0.0.0 --port 8001'
    >>> serve_command("http://127.0.0.1:8000/", "m")
    'reasonkit vllm-serve m --host 127.0.0.1 --port 8000'
    """
    parsed = urlparse(url)
    host = "127.0.0.1" if parsed.hostname in ("127.0.0.1", "localhost") else "0.0.0.0"
    return f"reasonkit vllm-serve {model_path} --host {host} --port {parsed.port or 8000}"


def wait_until_up(servers: list[Server], seconds: float, model_path: str) -> None:
    """Return once every server answers ``/health``; after ``seconds``, raise naming those that do not."""
    deadline = time.monotonic() + seconds
    down = list(servers)
    while True:
        down = [s for s in down if not s.is_up()]
        if not down or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    if down:
        raise EngineError(
            "engine vllm_server: no vLLM server answered at "
            + ", ".join(s.url for s in down)
            + f" within {seconds:.0f} s (vllm_server.startup_timeout). Start one there with:\n  "
            + "\n  ".join(serve_command(s.url, model_path) for s in down)
        )


def model_differences(
    policy_layers: int, server_weight_names: list[str], policy_ids: list[int], server_ids: list[int]
) -> list[str]:
    """What shows that a server's model is not the policy's: another tokenisation of the same text, or
    another number of decoder layers (counted from the server's parameter names, as its ``/weight_checker``
    lists them: ``dp0:pp0:pcp0:tp0:model.layers.3.mlp.down_proj.weight``).

    >>> names = [f"tp0:model.layers.{i}.mlp.down_proj.weight" for i in range(2)] + ["tp0:lm_head.weight"]
    >>> model_differences(2, names, [5, 6], [5, 6])
    []
    >>> model_differences(3, names, [5, 6], [5, 7])
    ['the vocabulary: it reads the probe text as [5, 7], the policy as [5, 6]', 'the layers: it has 2, the policy 3']
    """
    problems = []
    if policy_ids != server_ids:
        problems.append(
            f"the vocabulary: it reads the probe text as {server_ids}, the policy as {policy_ids}"
        )
    layers = {
        part.split(".")[parts.index("layers") + 1]
        for part in server_weight_names
        for parts in [part.split(".")]
        if "layers" in parts
    }
    if layers and len(layers) != policy_layers:
        problems.append(f"the layers: it has {len(layers)}, the policy {policy_layers}")
    return problems


class FanOutClient:
    """vLLM's weight-sync client protocol (``VLLMWeightSyncClient``) over several servers at once.

    One transfer group holds the trainer's sender (rank 0) and every worker of every server: the handshake
    gives each server the rank its first worker takes (``rank_offsets``), and each call goes to all
    servers in parallel (their workers block inside it until the whole group has joined the collective).
    ``finish_weight_update`` labels the new weights with ``version`` (set before each push).
    """

    def __init__(self, servers: list[Server], rank_offsets: list[int]):
        self.servers, self.rank_offsets = servers, rank_offsets
        self.version: str | None = None
        self.pool = ThreadPoolExecutor(max_workers=len(servers))

    def _all(self, path: str, bodies: list[dict | None]) -> None:
        futures = [self.pool.submit(_post_naming_url, s, path, body) for s, body in zip(self.servers, bodies)]
        for future in futures:
            future.result()

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        self._all(
            "/init_weight_transfer_engine",
            [{"init_info": {**init_info, "rank_offset": offset}} for offset in self.rank_offsets],
        )

    def start_weight_update(self) -> None:
        self._all("/start_weight_update", [None] * len(self.servers))

    def update_weights(self, update_info) -> None:
        self._all("/update_weights", [{"update_info": update_info}] * len(self.servers))

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        version = weight_version if weight_version is not None else self.version
        self._all("/finish_weight_update", [{"weight_version": version}] * len(self.servers))


def _post_naming_url(server: Server, path: str, body: dict | None):
    try:
        return server.post(path, body)
    except REQUEST_ERRORS as exc:
        raise EngineError(f"engine vllm_server: {path} failed at {server.url}: {exc}") from exc


def policy_source(model):
    """The policy as vLLM's trainer-side transfer engines read weights: a ``WeightSource`` whose metadata
    (names, dtypes, full shapes) comes without gathering and whose iteration is ``policy_weights``."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class PolicySource(WeightSource):
        def __init__(self, model):
            self.model = model

        def metadata(self):
            return [
                ParamMeta(name, dtype, shape) for name, dtype, shape in policy_weight_metadata(self.model)
            ]

        def __iter__(self):
            return policy_weights(self.model)

    return PolicySource(model)


class VLLMServerEngine:
    logprobs_are_trainers = False  # another process's kernels (and maybe precision): the trainer corrects
    generates_apart = True

    @classmethod
    def from_inputs(cls, inputs: EngineInputs) -> VLLMServerEngine:
        if inputs.model is None:
            raise EngineError(
                "engine vllm_server samples a policy being trained (GRPO); use vllm or transformers here"
            )
        return cls(
            inputs.vllm_server or VLLMServerSettings(),
            inputs.tokenizer,
            inputs.model,
            inputs.model_path,
            process_index=inputs.process_index,
            num_processes=inputs.num_processes,
        )

    def __init__(
        self,
        settings: VLLMServerSettings,
        tokenizer,
        model,
        model_path: str,
        *,
        process_index: int = 0,
        num_processes: int = 1,
    ):
        """Waits for the servers, checks their model against ``model`` (the policy), then pushes its weights
        (version 0): a server may hold another run's weights, or its start-up checkpoint's."""
        self.settings, self.tokenizer, self.model_path = settings, tokenizer, model_path
        self.rank, self.world = process_index, num_processes
        self.servers = [Server(url, settings.timeout) for url in settings.urls]
        if not self.servers:
            raise EngineError("vllm_server.urls: name at least one server")
        wait_until_up(self.servers, settings.startup_timeout, model_path)
        self.stop_token_ids = stop_token_ids(tokenizer, _checkpoint_eos(model_path))
        self.pool = ThreadPoolExecutor(max_workers=64)
        self.source = policy_source(model)
        self.transfer = None
        self.weight_version = -1  # the policy's: pushes so far, minus one (the first push is version 0)
        if self.rank == 0:
            self._check_model(model)
        self.sync_weights(model)

    def _check_model(self, model) -> None:
        probe = self.tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        for s in self.servers:
            try:
                server_ids = s.post("/tokenize", {"prompt": PROBE_TEXT, "add_special_tokens": False})[
                    "tokens"
                ]
                names = list(s.post("/weight_checker", {"action": "checksum"})["checksums"])
            except REQUEST_ERRORS as exc:
                raise EngineError(
                    f"engine vllm_server: {s.url} did not answer its model check: {exc}"
                ) from exc
            problems = model_differences(_num_layers(model), names, probe, server_ids)
            if problems:
                raise EngineError(
                    f"engine vllm_server: the server at {s.url} serves another model than the policy "
                    f"({self.model_path}): {'; '.join(problems)}. Start it with: {serve_command(s.url, self.model_path)}"
                )

    def generate(
        self, prompts, sampling: SamplingSettings, progress=None, with_logprobs: bool = True
    ) -> list[Rollout]:
        """``sampling.n`` completions per prompt, grouped prompt by prompt, with the servers' log-probs and
        the weight version that sampled each. Safe to call from another thread while the trainer trains."""
        prompt_ids = prompt_token_ids(self.tokenizer, prompts)
        # Spread over the servers, each process starting at another one.
        servers = [self.servers[(i + self.rank) % len(self.servers)] for i in range(len(prompt_ids))]
        futures = [
            self.pool.submit(
                self._generate_one, s, ids, sampling, prompt_seed(sampling, index), with_logprobs
            )
            for index, (s, ids) in enumerate(zip(servers, prompt_ids))
        ]
        rollouts = []
        for index, (ids, future) in enumerate(zip(prompt_ids, futures)):
            for choice in future.result():
                rollouts.append(self._rollout(index, ids, choice, with_logprobs))
            if progress is not None:
                progress.update(1)
        return rollouts

    def _generate_one(
        self,
        server: Server,
        prompt_ids: list[int],
        sampling: SamplingSettings,
        seed: int | None,
        with_logprobs: bool,
    ) -> list[dict]:
        greedy = sampling.temperature == 0
        body = {
            "token_ids": prompt_ids,
            "sampling_params": {
                "n": sampling.n,
                "temperature": sampling.temperature,
                "top_p": 1.0 if greedy else sampling.top_p,
                "top_k": -1 if greedy or sampling.top_k == 0 else sampling.top_k,
                "max_tokens": sampling.max_new_tokens,
                "stop_token_ids": self.stop_token_ids,
                "seed": seed,
                "logprobs": 0 if with_logprobs else None,  # 0: only the sampled token's
            },
        }
        for attempt in range(1, self.settings.retries + 2):
            try:
                choices = server.post("/inference/v1/generate", body)["choices"]
                break
            except REQUEST_ERRORS as exc:
                if attempt > self.settings.retries:
                    raise self._stopped(server, f"failed {attempt} times ({exc})") from exc
                log.warning("generation at %s failed (%s); trying again once it answers", server.url, exc)
                try:
                    wait_until_up([server], self.settings.startup_timeout, self.model_path)
                except EngineError:
                    raise self._stopped(
                        server,
                        f"failed ({exc}) and the server did not come back within "
                        f"{self.settings.startup_timeout:.0f} s",
                    ) from exc
        for choice in choices:
            if _oldest_version(choice) is None:
                raise EngineError(
                    f"engine vllm_server: the server at {server.url} sampled with weights the trainer never "
                    "pushed (it was restarted?): it no longer holds the policy. The run stops here, its last "
                    "checkpoint intact: resume with `reasonkit run RECIPE --resume`, which pushes the weights again"
                )
        return choices

    def _stopped(self, server: Server, what: str) -> EngineError:
        return EngineError(
            f"engine vllm_server: generation at {server.url} {what}. The run stops here, its last checkpoint "
            f"intact: restart the server ({serve_command(server.url, self.model_path)}) and resume with "
            "`reasonkit run RECIPE --resume`"
        )

    def _rollout(self, index: int, prompt_ids: list[int], choice: dict, with_logprobs: bool) -> Rollout:
        token_ids, truncated = end_at_first_stop(list(choice["token_ids"]), self.stop_token_ids)
        logprobs = None
        if with_logprobs:
            logprobs = [step["logprob"] for step in choice["logprobs"]["content"]][: len(token_ids)]
        text_ids = token_ids if truncated else token_ids[:-1]
        return Rollout(
            prompt_index=index,
            prompt_ids=prompt_ids,
            completion_ids=token_ids,
            rollout_logprobs=logprobs,
            text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
            truncated=truncated,
            weight_version=_oldest_version(choice),
        )

    def sync_weights(self, model) -> None:
        """Push the policy's weights to every server (all processes call it; see the module docstring)."""
        self.source.model = model
        self.weight_version += 1
        try:
            if self.transfer is None:
                self.transfer = self._connect()
            if self.rank == 0:
                self.transfer.client.version = str(self.weight_version)
                for server in self.servers:  # running requests finish on the old weights; queued ones wait
                    server.post("/pause", None, mode="wait")
            try:
                self.transfer.send_weights()
            finally:
                if self.rank == 0:
                    for server in self.servers:
                        server.post("/resume")
        except EngineError as exc:
            if self.weight_version == 0:  # the first push is where a different model shows (names, shapes)
                raise EngineError(f"{exc}\nDoes the server serve {self.model_path}?") from exc
            raise
        # HTTP failures, and the transfer's own (a gloo/NCCL peer gone or timed out: RuntimeError)
        except (*REQUEST_ERRORS, RuntimeError) as exc:
            raise EngineError(
                f"engine vllm_server: pushing weights version {self.weight_version} failed: {exc}. The servers "
                "may hold partial weights; the run stops here, its last checkpoint intact: restart the servers "
                "and resume with `reasonkit run RECIPE --resume`"
            ) from exc
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()  # no process generates before the push is over

    def _connect(self):
        """vLLM's trainer-side transfer engine for this process, joined with every server's workers."""
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

        from reasonkit.rollout.weight_transfer_gloo import register

        register()
        backend = self.settings.weight_transfer
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        sizes = [s.get("/get_world_size")["world_size"] for s in self.servers] if self.rank == 0 else [0]
        offsets = [1 + sum(sizes[:i]) for i in range(len(sizes))]
        host, port = self._rendezvous_address()
        fields = {
            "master_address": host,
            "master_port": port,
            "world_size": 1 + sum(sizes),
            "rank": self.rank,
        }
        if backend == "nccl":
            from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo as InitInfo
        else:
            from reasonkit.rollout.weight_transfer_gloo import GlooTrainerInitInfo as InitInfo

            fields["timeout_s"] = self.settings.timeout
        client = FanOutClient(self.servers, offsets)
        return WeightTransferTrainerFactory.trainer_init(
            InitInfo(**fields), client=client, source=self.source
        )

    def _rendezvous_address(self) -> tuple[str, int]:
        host = self.settings.transfer_host
        if host is None:
            local = all(urlparse(s.url).hostname in ("127.0.0.1", "localhost") for s in self.servers)
            host = "127.0.0.1" if local else socket.gethostbyname(socket.gethostname())
        port = self.settings.transfer_port
        if not port and self.rank == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        return host, port

    def close(self) -> None:
        if self.transfer is not None:
            self.transfer.shutdown()
            self.transfer.client.pool.shutdown(wait=False)
            self.transfer = None
        self.pool.shutdown(wait=False, cancel_futures=True)


def _oldest_version(choice: dict) -> int | None:
    """The oldest weight version that sampled part of a completion; None for weights no trainer pushed.

    >>> _oldest_version({"weight_versions": [{"version": "4", "start": 0, "end": 3}, {"version": "5", "start": 3, "end": 9}]})
    4
    >>> _oldest_version({"weight_versions": [{"version": "default", "start": 0, "end": 2}]}) is None
    True
    """
    versions = [span["version"] for span in choice.get("weight_versions") or []]
    if not versions or not all(v.isdigit() for v in versions):
        return None
    return min(int(v) for v in versions)


def _num_layers(model) -> int:
    config = getattr(model, "config", None)
    return getattr(config, "num_hidden_layers", 0) or 0


def _checkpoint_eos(model_path: str):
    """The EOS ids of the checkpoint's generation config (vLLM stops at them whatever it is told)."""
    from pathlib import Path

    path = Path(model_path) / "generation_config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("eos_token_id")
