"""One home for the results files' replaceable sections (no TensorFlow import: the tfmot scripts
run under ``TF_USE_LEGACY_KERAS=1``)."""
from __future__ import annotations

import os
import re
from pathlib import Path


#: tag → the opening text of a results file that does not exist yet
HEADERS = {
    "tfmot-run": (
        "# tfmot baseline: 8-bit QAT (tensorflow-model-optimization) → int8 TFLite\n\n"
        "`benchmarks/tfmot_baseline.py`: the same CIFAR ResNet-20 built in tf_keras (tfmot 0.8 rejects "
        "Keras 3 models), trained with the config's recipe on the same splits, then tfmot's default "
        "8-bit QAT and full-integer conversion. One section per config/budget; re-running replaces it.\n"),
    "tfmot-vs-ours": (
        "# Our int8 TFLite vs tfmot's int8 TFLite (same ResNet-20, one process)\n\n"
        "`benchmarks/tfmot_vs_ours.py`: issue 21 target \"our int8 file ≤ 1.0× the latency and ≤ 1.0× "
        "the bytes of tfmot's int8 TFLite of the same architecture, on the same machine in one run\". "
        "The tfmot file comes from `benchmarks/tfmot_baseline.py` (its own section file: "
        "`tfmot_baseline.md`) on the same data. One section per data setting; re-running replaces it.\n"),
}


def replace_section(path: Path, tag: str, key: str, section: str) -> None:
    """Replace (or append) the section ``<!-- tag: key -->…<!-- /tag: key -->`` of the Markdown file
    ``path`` by ``section``; a missing file starts with ``HEADERS[tag]``. Written atomically."""
    begin, end = f"<!-- {tag}: {key} -->", f"<!-- /{tag}: {key} -->"
    text = path.read_text() if path.exists() else HEADERS[tag]
    block = f"{begin}\n{section.rstrip()}\n{end}"
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(path.suffix + f".tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
