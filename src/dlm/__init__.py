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
