"""``python -m rolekd_tf.augment`` — schedule tools.

  convert FILE --epochs N [--train-epochs M] --out schedule.json
      any supported schedule (our JSON, PBA published text, Ray-Tune pbt_policy log) -> our JSON
  plot SCHEDULE [--epochs N] [--train-epochs M] --out fig.png [--title T]
      two-panel probability / magnitude figure (paper Fig. 3/4)
  compare SEARCH_DIR_T SEARCH_DIR_S --out fig.png [--title T]
      A_T and A_S side by side (paper Fig. 3 vs Fig. 4), shared scales and colours
  show SCHEDULE [--epochs N] [--train-epochs M]
      print the schedule's segments
  preview [--data SPEC] [--n K] --out grid.png
      a grid of real images under the augmentation ops (rolekd_tf.augment.preview)

User errors print ``error: <message>`` on stderr and exit with status 2 (``--debug`` re-raises).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from rolekd_tf.errors import ConfigError, DataError, RolekdError


def _load(args):
    from rolekd_tf.augment.policy import load_schedule

    return load_schedule(args.schedule, args.epochs, train_epochs=args.train_epochs,
                         allow_uneven=getattr(args, "allow_uneven", False))


def _origin(sched) -> str:
    src = sched.source
    bits = []
    if src.get("flavour"):
        bits.append({"pba": "PBA text", "ray-tune": "Ray-Tune log"}.get(src["flavour"], src["flavour"]))
    if src.get("search_epochs") and src["search_epochs"] != sched.epochs:
        bits.append(f"stretched from {src['search_epochs']} search epochs")
    elif src.get("stretched"):
        bits.append(f"stretched from {src['stretched'].get('from_epochs')} epochs")
    if src.get("rows_dropped"):
        bits.append(f"{src['rows_dropped']} inherited log rows dropped")
    return ", ".join(bits)


def _cmd_convert(args) -> int:
    sched = _load(args)
    sched.save(args.out)
    extra = _origin(sched)
    print(f"wrote {args.out}: {sched.epochs} epochs, {len(sched.segments)} segments "
          f"{sched.segment_lengths}" + (f" ({extra})" if extra else ""))
    return 0


def _cmd_plot(args) -> int:
    from rolekd_tf.augment.plot import plot_schedule

    sched = _load(args)
    plot_schedule(sched, args.out, title=args.title)
    print(f"wrote {args.out}: {sched.epochs} epochs, {len(sched.segments)} segments")
    return 0


_ROLE_LABEL = {"teacher": "A_T (teacher search)", "student": "A_S (student search)"}


def _search_schedule(path: str, what: str):
    """(schedule, label) of a finished search directory; the label names its role and folder."""
    import json
    from pathlib import Path

    from rolekd_tf.augment.policy import load_schedule

    d = Path(path)
    if not (d / "schedule.json").is_file():
        raise ConfigError(f"{what} {path!r} is not a finished search directory (no schedule.json); "
                          "give the --out folder of a search.py run")
    role = None
    try:
        role = json.loads((d / "search.json").read_text(encoding="utf-8")).get("role")
    except (OSError, ValueError, AttributeError):
        pass
    sched = load_schedule(d / "schedule.json")
    label = _ROLE_LABEL.get(role, f"{role or 'unknown role'} search")
    return sched, f"{label}, {d.resolve().name}"


def _cmd_compare(args) -> int:
    from rolekd_tf.augment.plot import plot_compare

    st, lt = _search_schedule(args.search_t, "SEARCH_DIR_T")
    ss, ls = _search_schedule(args.search_s, "SEARCH_DIR_S")
    plot_compare([st, ss], [lt, ls], args.out, title=args.title)
    print(f"wrote {args.out}: {lt} ({st.epochs} epochs, {len(st.segments)} segments) | "
          f"{ls} ({ss.epochs} epochs, {len(ss.segments)} segments)")
    return 0


def _cmd_show(args) -> int:
    sched = _load(args)
    extra = _origin(sched)
    print(f"{args.schedule}: {sched.epochs} epochs, {len(sched.segments)} segments"
          + (f" ({extra})" if extra else ""))
    start = 0
    for i, (pol, n) in enumerate(sched.segments):
        end = start + n - 1
        print(f"  [{i:2d}] epochs {start:4d}-{end:<4d} ({n:3d}): {pol.describe()}")
        if args.ints:
            print(f"       {pol.as_list()}")
        start += n
    return 0


def _images_from(obj):
    """Pull a uint8 NHWC image array (and optional DatasetInfo) out of rolekd_tf.data's result."""
    import numpy as np

    info = getattr(obj, "info", None)
    for attr in ("x", "x_train", "images"):
        if hasattr(obj, attr):
            return np.asarray(getattr(obj, attr)), info
    if isinstance(obj, (tuple, list)) and obj:
        rest = [o for o in obj[1:] if hasattr(o, "mean") and hasattr(o, "image_shape")]
        return np.asarray(obj[0]), (rest[0] if rest else info)
    return np.asarray(obj), info


def _cmd_preview(args) -> int:
    import numpy as np

    if args.n < 1:
        raise ConfigError(f"--n = {args.n} must be at least 1")
    try:
        from rolekd_tf.data import load_full
    except ImportError as e:
        raise DataError(f"cannot load --data {args.data!r}: rolekd_tf.data.load_full is not "
                        f"available ({e})") from None
    try:
        from rolekd_tf.augment.preview import write_preview
    except ImportError as e:
        raise ConfigError(f"preview is not available: rolekd_tf.augment.preview.write_preview "
                          f"cannot be imported ({e})") from None

    x, info = _images_from(load_full(args.data))
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
        raise DataError(f"--data {args.data!r} gave images of shape {tuple(x.shape)}, "
                        f"expected a non-empty [N, H, W, 3] array")
    idx = np.linspace(0, x.shape[0] - 1, num=min(args.n, x.shape[0])).round().astype(int)
    images = np.ascontiguousarray(x[idx]).astype(np.uint8)
    if info is not None and getattr(info, "mean", None) is not None:
        fill = tuple(int(round(255 * float(m))) for m in info.mean)
    else:
        fill = tuple(int(round(float(v))) for v in x.reshape(-1, 3).mean(axis=0))
    write_preview(images, args.out, fill=fill)
    print(f"wrote {args.out}: {len(images)} images from {args.data} (fill {fill})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="re-raise errors with a traceback")

    p = argparse.ArgumentParser(prog="python -m rolekd_tf.augment",
                                description="Augmentation schedule tools (convert, plot, compare, show, preview).")
    p.add_argument("--debug", action="store_true", default=False,
                   help="re-raise errors with a traceback")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def sched_args(sp, needs_out: bool):
        sp.add_argument("schedule", metavar="SCHEDULE",
                        help="our JSON, a PBA schedule (.txt) or a Ray-Tune pbt_policy_<id>.txt")
        sp.add_argument("--epochs", type=int, default=None,
                        help="for PBA/Ray-Tune logs: the search's epoch count (required); for our "
                             "JSON: the wanted length (integer multiples stretch)")
        sp.add_argument("--train-epochs", type=int, default=None,
                        help="stretch the result to this many epochs (an integer multiple)")
        sp.add_argument("--allow-uneven", action="store_true",
                        help="allow a non-integer stretch (epoch e -> policy floor(e*len/epochs))")
        if needs_out:
            sp.add_argument("--out", required=True, help="output file")

    c = sub.add_parser("convert", parents=[common], help="any supported schedule -> our JSON")
    sched_args(c, True)
    c.set_defaults(func=_cmd_convert)

    pl = sub.add_parser("plot", parents=[common], help="plot a schedule (PNG)")
    sched_args(pl, True)
    pl.add_argument("--title", default=None)
    pl.set_defaults(func=_cmd_plot)

    cp = sub.add_parser("compare", parents=[common],
                        help="A_T and A_S side by side from two search directories (paper Fig. 3 vs 4)")
    cp.add_argument("search_t", metavar="SEARCH_DIR_T", help="the teacher (stage α) search directory")
    cp.add_argument("search_s", metavar="SEARCH_DIR_S", help="the student (stage β) search directory")
    cp.add_argument("--out", required=True, help="output PNG")
    cp.add_argument("--title", default=None)
    cp.set_defaults(func=_cmd_compare)

    s = sub.add_parser("show", parents=[common], help="print a schedule's segments")
    sched_args(s, False)
    s.add_argument("--ints", action="store_true", help="also print each segment's 60 integers")
    s.set_defaults(func=_cmd_show)

    pv = sub.add_parser("preview", parents=[common], help="grid of real images under each op")
    pv.add_argument("--data", default="embedded:digits",
                    help="dataset spec: embedded:digits (default) or imagefolder:PATH")
    pv.add_argument("--n", type=int, default=8, help="number of images (default 8)")
    pv.add_argument("--out", required=True, help="output PNG")
    pv.set_defaults(func=_cmd_preview)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RolekdError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. --out in an unwritable folder
        if args.debug:
            raise
        fn = getattr(e, "filename", None)
        if fn and os.path.basename(str(fn)).startswith(".tmp-") and getattr(args, "out", None):
            fn = args.out  # an atomic write failed: name the file the user asked for, not our temp name
        where = f" {fn}" if fn else ""
        print(f"error: cannot write or read{where}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
