"""``python -m rolekd_tf.export RUN_DIR [--formats keras saved_model fp32 int8 w4] [--int8-logits]
[--int8-input pixels|normalised] [--integer-output] [--debug] [--verbose]``."""
from __future__ import annotations

import argparse
import sys

from rolekd_tf.cli import add_verbose_flag, run_cli


def main(argv=None) -> int:
    from rolekd_tf.export.run import DEFAULT_FORMATS, FORMATS

    p = argparse.ArgumentParser(prog="python -m rolekd_tf.export",
                                description="Export a run directory to RUN_DIR/export/ "
                                            "(Keras, SavedModel, TFLite fp32 / int8) and write report.json.")
    p.add_argument("run_dir", help="run directory with config.yaml and model.keras")
    p.add_argument("--formats", nargs="+", default=None,
                   help=f"any of {', '.join(FORMATS)} or all (default: all that apply; w4 only for "
                        "models with 2..3-bit layers and ai-edge-quantizer installed)")
    p.add_argument("--eval-size", type=int, default=1000, help="images of the holdout/val split evaluated (default 1000)")
    p.add_argument("--representative-size", type=int, default=300, help="training images for int8 calibration")
    p.add_argument("--threads", type=int, default=1, help="TFLite interpreter threads for the latency figure")
    p.add_argument("--int8-logits", action="store_true",
                   help="keep the logits layer int8 (default: int8 weights, int16 logits; for accelerators "
                        "that run int8 ops only)")
    # validated by export_run (one-line error, exit 2), not by argparse choices (a usage block)
    p.add_argument("--int8-input", metavar="{pixels,normalised}", default="pixels",
                   help="what model_int8.tflite takes: uint8 pixels, normalised inside the file (default), or "
                        "the normalised image as int8, normalised and quantised by the caller (tfmot's contract; "
                        "report.json gives mean/std and the input scale/zero point)")
    p.add_argument("--integer-output", action="store_true",
                   help="model_int8.tflite returns its integer logits (int16; int8 with --int8-logits) with their "
                        "scale/zero point instead of float32: no float op in the file (integer-only targets)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    add_verbose_flag(p)
    args = p.parse_args(argv)
    if args.debug:
        import os

        os.environ["ROLEKD_DEBUG"] = "1"
    from rolekd_tf.export.run import export_run, parse_formats
    from rolekd_tf.errors import ExportError

    if args.eval_size < 0 or args.representative_size < 1 or args.threads < 1:
        raise ExportError("--eval-size must be >= 0, --representative-size and --threads >= 1")
    formats = None if args.formats is None else parse_formats(args.formats)
    export_run(args.run_dir, formats, eval_size=args.eval_size,
               representative_size=args.representative_size, num_threads=args.threads,
               int16_logits=not args.int8_logits, int8_input=args.int8_input,
               integer_output=args.integer_output)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
