"""Which execution providers a benchmark can use, and proof that a session really uses them.

Rules:

1. Users name providers by short alias (``cpu``, ``cuda``, ``tensorrt``, ``openvino``,
   ``xnnpack``, ``coreml``, ``nnapi``, ``qnn``, ...) or by full ONNX Runtime name.
   An unknown name is a :class:`UsageError` listing the aliases.
2. A provider is *available* only when ``get_available_providers()`` lists it.
   ``get_all_providers()`` is not used: it lists every provider ORT knows of, also
   those the installed build lacks, and asking a session for a missing one only warns
   and silently runs on CPU.
3. Unavailable providers are reported as "not available in this build"; it is an
   error (:class:`RuntimeMissingError`) only when every requested provider is missing.
4. After a session is created its ``get_providers()`` must contain the provider, else
   the provider is reported as having fallen back to CPU and is not timed: a CPU
   timing is never reported under another provider's name.
5. CUDA and TensorRT sessions are timed with IO binding (inputs copied to the device
   once, outputs left on the device), so host/device copies are not timed.
"""

from __future__ import annotations

__all__ = [
    "ALIASES",
    "DEVICE_PROVIDERS",
    "ProviderChoice",
    "alias_of",
    "check_session",
    "parse_providers",
    "select_providers",
    "session_providers",
]

import dataclasses
from typing import Any

from onnxprune.errors import RuntimeMissingError, UsageError

CPU = "CPUExecutionProvider"

ALIASES: dict[str, str] = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "dml": "DmlExecutionProvider",
    "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider",
}

# providers whose inputs/outputs live on a device; value: OrtValue device type (rule 5)
DEVICE_PROVIDERS: dict[str, str] = {
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "cuda",
}

_SHORT = {name: alias for alias, name in reversed(list(ALIASES.items()))}


def alias_of(name: str) -> str:
    """Short alias of a full provider name (the name itself when it has none)."""
    return _SHORT.get(name, name)


@dataclasses.dataclass(frozen=True)
class ProviderChoice:
    """One requested provider: ``alias`` as reported, ``name`` as ORT spells it."""

    alias: str
    name: str
    available: bool
    reason: str = ""

    @property
    def device(self) -> str | None:
        return DEVICE_PROVIDERS.get(self.name)

    def session_providers(self) -> list[Any]:
        """Providers list for ``InferenceSession``: the provider, then CPU for the nodes it
        cannot take (what ORT does for every accelerator)."""
        return session_providers(self.name)


def session_providers(name: str, options: dict[str, str] | None = None) -> list[Any]:
    first: Any = (name, options) if options else name
    return [first] if name == CPU else [first, CPU]


def _canonical(name: str) -> str:
    key = name.strip()
    if key.lower() in ALIASES:
        return ALIASES[key.lower()]
    for full in ALIASES.values():
        if key.lower() == full.lower():
            return full
    raise UsageError(f"unknown execution provider {name!r}; use one of "
                     f"{', '.join(sorted(set(ALIASES) - {'trt'}))} or a full ORT provider name")


def parse_providers(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"cpu,cuda"`` or ``["cpu", "cuda"]`` -> canonical names, duplicates dropped (rule 1)."""
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    names: list[str] = []
    for item in items:
        if item.strip() and (name := _canonical(item)) not in names:
            names.append(name)
    if not names:
        raise UsageError("no execution provider given")
    return names


def select_providers(requested: list[str], ort: Any) -> list[ProviderChoice]:
    """Mark each requested provider available or not in the installed build (rules 2, 3)."""
    available = list(ort.get_available_providers())
    choices = []
    for name in parse_providers(requested):
        alias = alias_of(name)
        if name in available:
            choices.append(ProviderChoice(alias, name, True))
        else:
            choices.append(ProviderChoice(
                alias, name, False,
                f"not available in this build (onnxruntime {ort.__version__} has "
                f"{', '.join(available) or 'no provider'})"))
    if not any(c.available for c in choices):
        missing = ", ".join(c.alias for c in choices)
        raise RuntimeMissingError(
            f"none of the requested execution providers ({missing}) is available in this "
            f"ONNX Runtime build (onnxruntime {ort.__version__}: {', '.join(available)}); "
            "install a build that has them (e.g. onnxruntime-gpu for cuda/tensorrt, "
            "onnxruntime-openvino for openvino) or benchmark on cpu")
    return choices


def check_session(choice: ProviderChoice, session: Any) -> str | None:
    """None when ``session`` really uses the provider, else why it is not timed (rule 4)."""
    used = list(session.get_providers())
    if choice.name in used:
        return None
    return (f"session fell back to {', '.join(used) or 'nothing'}: {choice.alias} was "
            "requested but not registered (not timed, to avoid reporting a CPU timing "
            f"under the {choice.alias} name)")
