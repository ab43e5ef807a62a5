"""lm-eval's own command line with dlm's model registered:

    python -m dlm.harness --model dlm --model_args pretrained=runs/tiny,mc_num=64 --tasks ...

Unlike lm-eval's default (``cuda:0``), the device is dlm's ``auto`` unless ``--device`` is
given, so the same line runs on a machine without a GPU; a user mistake is one line, exit 2.
"""

import sys

from lm_eval.__main__ import cli_evaluate

from ..errors import DLMError
from . import DLMHarness  # noqa: F401  (importing the package registers the model "dlm")


def main(argv: list[str]) -> int:
    if not any(a == "--device" or a.startswith("--device=") for a in argv):
        argv = [*argv, "--device", "auto"]
    sys.argv = [sys.argv[0], *argv]
    try:
        cli_evaluate()
    except (DLMError, ValueError) as e:  # lm-eval's own input errors are ValueErrors
        print(f"python -m dlm.harness: error: {e}", file=sys.stderr)
        return 2
    return 0


sys.exit(main(sys.argv[1:]))
