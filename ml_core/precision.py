"""The numeric precision a model serves in: bfloat16 on CPUs with native bfloat16 arithmetic,
float16 on GPUs, float32 elsewhere (mixed precision: weights stay float32, the probabilities
layer computes in float32). docs/benchmarks.md gives what each changes in speed and scores.
"""

from pathlib import Path

from ml_core.classifier import OUTPUT_LAYER

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# CPU flags of native bfloat16 arithmetic (Intel AVX512_BF16 or AMX, AMD Zen 4 and later).
BFLOAT16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


def resolve_precision(setting: str, *, cpu_flags: set[str] | None = None) -> str:
    """float32, bfloat16 or float16 for a setting; "auto" picks what the hardware runs fast."""
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {setting!r}")
    if setting != "auto":
        return setting
    if accelerator_present():
        return "float16"
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    return "bfloat16" if flags & BFLOAT16_CPU_FLAGS else "float32"


def with_precision(model, precision: str):
    """The model computing in `precision` (a copy with the same weights), or the model itself
    for float32. The output layer stays float32, so probabilities keep their resolution."""
    if precision == "float32":
        return model
    import keras

    policy = POLICIES[precision]

    def clone(layer):
        config = layer.get_config()
        if layer.name != OUTPUT_LAYER:
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def accelerator_present() -> bool:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()
