"""Which extra brings each optional module: one table behind every command's "not installed" line."""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRA_FOR_MODULE", "missing_extra", "require"]

# Top-level import name -> (the package pip installs, the smallest edgekd extra that brings it).
EXTRA_FOR_MODULE: dict[str, tuple[str, str]] = {
    "torch": ("torch", "distill"),
    "torchao": ("torchao", "export"),
    "onnx": ("onnx", "export"),
    "onnxscript": ("onnxscript", "export"),
    "litert_torch": ("litert-torch", "export"),
    "onnxruntime": ("onnxruntime", "bench"),
    "ai_edge_litert": ("ai-edge-litert", "bench"),
    "psutil": ("psutil", "bench"),
    "PIL": ("Pillow", "predict"),
    "asyncssh": ("asyncssh", "remote"),
    "optuna": ("optuna", "sweep"),
    "ray": ("ray[tune]", "ray"),
    "tokenizers": ("tokenizers", "text"),
    "transformers": ("transformers", "text"),
    "matplotlib": ("matplotlib", "report"),
    "scipy": ("scipy", "report"),
    "onnxslim": ("onnxslim", "simplify"),
    "tensorflow": ("tensorflow", "onnx2tf"),
    "onnx2tf": ("onnx2tf", "onnx2tf"),
    "executorch": ("executorch", "executorch"),
    "executorch_numpy_runtime": ("executorch-numpy-runtime", "bench"),
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """One line naming the missing package and the extra that brings it; None for a module edgekd does not
    list (a real bug, which should keep its traceback)."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRA_FOR_MODULE:
        return None
    package, extra = EXTRA_FOR_MODULE[top]
    return f"{package} is not installed; this command needs it: pip install 'edgekd[{extra}]'"


def require(*modules: str) -> None:
    """`ModuleNotFoundError` for the first of `modules` this install lacks: a command checks before it writes
    anything, rather than failing halfway on its first import."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
