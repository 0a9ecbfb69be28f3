"""The paper's numbers beside each row: exactly docs/METHOD.md §5 / docs/KD.md §9, nothing invented."""
from __future__ import annotations

import pytest

from rolekd_tf.paper_results import PAPER_RESULTS, dataset_key, paper_number


@pytest.mark.parametrize("row,dataset,bits,expected", [
    ("vanilla_fp", "cifar10", 32, 93.57), ("vanilla_fp", "cifar100", 32, 74.85),
    ("vanilla_lowbit", "cifar10", 2, 90.00), ("vanilla_lowbit", "cifar100", 4, 69.81),
    ("stage_alpha", "cifar100", 32, 75.19), ("only_iikd", "cifar10", 4, 91.42),
    ("stage_beta", "cifar10", 2, 93.20), ("stage_beta", "cifar100", 4, 74.21),
    ("t1_soft", "cifar100", 4, 70.48), ("t1_dml", "cifar100", 2, 69.72), ("t1_svd", "cifar100", 2, 72.97),
    ("t1_ii", "cifar100", 2, 73.35), ("t3_mhgd_at", "cifar100", 4, 69.76), ("t3_mhgd_as", "cifar100", 4, 73.52),
    # aliases and their targets find the number filed under any of their names, in their own table
    ("student_at", "cifar100", 4, 73.46), ("t3_ii_at", "tfds:cifar100", 4, 73.46),
    ("t3_ii_as", "cifar100", 4, 74.21),
])
def test_published_numbers(row, dataset, bits, expected):
    assert paper_number(row, dataset, "resnet18", bits) == expected


@pytest.mark.parametrize("row,dataset,model,bits", [
    ("alpha_lowbit", "cifar10", "resnet18", 2),  # not in docs/METHOD.md
    ("stage_beta", "cifar10", "alexnet", 2),
    ("t3_mhgd_at", "cifar100", "resnet18", 2),  # Table 3 is 4-bit only
    ("t1_soft", "cifar10", "resnet18", 4),
    ("t4_wrn-16-2", "cifar100", "wrn-16-2", 32),
    ("vanilla_fp", "embedded:digits", "resnet18", 32),
])
def test_absent_numbers_are_none(row, dataset, model, bits):
    assert paper_number(row, dataset, model, bits) is None


def test_the_table_holds_only_reference_numbers():
    # 16 Table 2 entries (8 rows × 2 datasets), 12 Table 1, 4 Table 3
    assert len(PAPER_RESULTS) == 32
    assert {k[0] for k in PAPER_RESULTS} == {"1", "2", "3"}


def test_dataset_key():
    assert dataset_key("cifar10") == dataset_key("tfds:cifar10") == dataset_key("cifar10:3.0.2") == "cifar10"
    assert dataset_key("imagefolder:/x/y.tar.gz") == "imagefolder"
