"""Runs one of msrcnn_fast's CLIs with the tests' stand-in model in place of msrcnn_fast.model:

    python -m tests.engine.standin_cli train|evaluate|predict|demo ARGS...

For subprocess tests (torchrun, SIGKILL) and for timing the demo before the real model lands."""

import sys

from tests.engine.standin import standin_msrcnn


def main():
    command, argv = sys.argv[1], sys.argv[2:]
    if command == "train":
        from msrcnn_fast.train import main as cli
    elif command == "evaluate":
        from msrcnn_fast.evaluate import main as cli
    elif command == "predict":
        from msrcnn_fast.predict import main as cli
    elif command == "demo":
        from msrcnn_fast.demo import main as cli
    else:
        raise SystemExit(f"unknown command {command!r}: train, evaluate, predict or demo")
    return cli(argv, model_factory=standin_msrcnn)


if __name__ == "__main__":
    sys.exit(main())
