"""Imported by vLLM into every worker process when the server is started with
``--worker-extension-cls reasonkit.rollout.vllm_worker_extension.WeightTransferPlugins``
(``reasonkit vllm-serve`` adds it).

Why: the worker is where vLLM builds the weight-transfer engine named by ``--weight-transfer-config``,
and on CPU vLLM always *spawns* its workers, so a registration made in the launching process does not
reach them. vLLM's other route, a ``vllm.general_plugins`` entry point (declared in pyproject.toml), needs
reasonkit installed as a package; this one only needs it importable (PYTHONPATH, an editable install).
"""

from reasonkit.rollout.weight_transfer_gloo import register

register()


class WeightTransferPlugins:
    """No methods: vLLM mixes this class into its worker class; importing its module registered gloo."""
