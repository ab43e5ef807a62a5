"""lm-eval's own command line with dlm's model registered:

    python -m dlm.harness --model dlm --model_args pretrained=runs/tiny,mc_num=64 --tasks ...
"""

from lm_eval.__main__ import cli_evaluate

from . import DLMHarness  # noqa: F401  (importing the package registers the model "dlm")

cli_evaluate()
