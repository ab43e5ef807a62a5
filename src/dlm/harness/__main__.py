"""lm-eval's own command line with dlm's model registered:

    python -m dlm.harness --model dlm --model_args pretrained=runs/tiny,mc_num=64 --tasks ...

Unlike lm-eval's default (``cuda:0``), the device is dlm's ``auto`` unless ``--device`` is
given, so the same line runs on a machine without a GPU; a user mistake is one line, exit 2.
"""

import sys

from lm_eval.__main__ import cli_evaluate

from ..errors import DLMError
from . import DLMHarness  # noqa: F401  (importing the package registers the model "dlm")

SUBCOMMANDS = ("run", "ls", "validate")  # lm-eval's; a bare flag list means "run"


def with_device(argv: list[str]) -> list[str]:
    """``argv`` + ``--device auto`` for an evaluation that names no device (help, ``ls`` and
    ``validate`` are left alone; ``--dev…`` counts, as argparse takes abbreviations)."""
    evaluates = bool(argv) and argv[0] not in ("-h", "--help", *SUBCOMMANDS[1:]) and \
        not any(a in ("-h", "--help") for a in argv)
    if evaluates and not any(a.startswith("--dev") for a in argv):
        return [*argv, "--device", "auto"]
    return argv


def main(argv: list[str]) -> int:
    argv = with_device(argv)
    sys.argv = [sys.argv[0], *argv]
    try:
        cli_evaluate()
    except (DLMError, ValueError) as e:  # lm-eval's own input errors are ValueErrors
        print(f"python -m dlm.harness: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
