"""dlm: train, sample, evaluate and hack diffusion language models (and their AR twins).

    import dlm
    model = dlm.load("runs/mdlm-tiny")
    print(model.generate("ROMEO:", steps=64, gen_length=128).text)
"""

from .errors import DLMError
from .pipeline import GenerationResult, Model, load
from .sample.config import SampleConfig
from .version import __version__

__all__ = ["DLMError", "GenerationResult", "Model", "SampleConfig", "__version__", "load"]

_SUBPACKAGES = ("train", "sft", "sample", "data", "models", "diffusion", "experiments")


def __getattr__(name: str):
    """``dlm.train.train(...)`` and the other subpackages without importing them first
    (imported on first use, so ``import dlm`` stays light)."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
