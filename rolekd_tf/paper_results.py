"""The paper's published accuracies, for the pipeline's report to print beside ours.

Only numbers written in the method reference are here (top-1 test accuracy, %): docs/METHOD.md §5
(Table 2, ResNet-18; Table 3, CIFAR-100 4-bit ResNet-18) and docs/KD.md §9 (Table 1, CIFAR-100
ResNet-18, 4/4 and 2/2 bit), which docs/METHOD.md §6 includes by reference. Everything else — AlexNet,
Table 4, CIFAR-10 Tables 1/3, the Stage α low-bit rows — is absent and shows as "–".

Key: ``(table, dataset, model, row, bits)`` with ``row`` a :data:`rolekd_tf.rows.ROW_NAMES` name and
``bits`` the student's w = a bit width (32 for full precision).
"""
from __future__ import annotations

from rolekd_tf.rows import ROW_TABLE, canonical


def _table() -> dict[tuple, float]:
    t: dict[tuple, float] = {}
    r18 = "resnet18"
    # docs/METHOD.md §5 (Table 2): (CIFAR-10, CIFAR-100)
    for row, bits, c10, c100 in (
        ("vanilla_fp", 32, 93.57, 74.85),
        ("stage_alpha", 32, 94.49, 75.19),
        ("vanilla_lowbit", 4, 90.97, 69.81),
        ("vanilla_lowbit", 2, 90.00, 67.06),
        ("only_iikd", 4, 91.42, 73.85),
        ("only_iikd", 2, 90.60, 72.44),
        ("stage_beta", 4, 94.44, 74.21),
        ("stage_beta", 2, 93.20, 73.35),
    ):
        t[("2", "cifar10", r18, row, bits)] = c10
        t[("2", "cifar100", r18, row, bits)] = c100
    # docs/KD.md §9 (Table 1, CIFAR-100, ResNet-18): (4/4-bit, 2/2-bit), each KD loss with A_S
    for row, w4, w2 in (
        ("t1_soft", 70.48, 70.09),
        ("t1_dml", 72.47, 69.72),
        ("t1_rkd", 71.84, 70.71),
        ("t1_mhgd", 73.52, 71.80),
        ("t1_svd", 73.92, 72.97),
        ("t1_ii", 74.21, 73.35),
    ):
        t[("1", "cifar100", r18, row, 4)] = w4
        t[("1", "cifar100", r18, row, 2)] = w2
    # docs/METHOD.md §5 (Table 3, CIFAR-100, ResNet-18 4-bit): A_T vs A_S
    for row, acc in (("t3_mhgd_at", 69.76), ("t3_mhgd_as", 73.52), ("t3_ii_at", 73.46),
                     ("t3_ii_as", 74.21)):
        t[("3", "cifar100", r18, row, 4)] = acc
    return t


PAPER_RESULTS: dict[tuple, float] = _table()


def dataset_key(dataset: str) -> str:
    """``cifar10`` for ``cifar10`` / ``tfds:cifar10`` / ``cifar10:3.0.2``; other names unchanged."""
    name = dataset.strip().lower()
    if name.startswith("tfds:"):
        name = name[5:]
    return name.split(":")[0].split("/")[0]


def paper_number(row: str, dataset: str, model: str, bits: int) -> float | None:
    """The paper's accuracy (%) for ``row`` of its own table, or None when docs/METHOD.md has none.

    A row whose runs are another row's (an alias, or the row an alias points at) finds the number
    filed under any of those names in the same table, e.g. ``student_at`` → Table 3's ``t3_ii_at``.
    """
    table = ROW_TABLE[row].table
    target = canonical(row).name
    names = [row, target] + [n for n, r in ROW_TABLE.items() if r.same_as == target]
    ds = dataset_key(dataset)
    for n in names:
        v = PAPER_RESULTS.get((table, ds, model, n, int(bits)))
        if v is not None:
            return v
    return None
