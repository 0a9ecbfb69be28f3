"""PBA's augmentation search space and its explore step (docs/METHOD.md §1-2).

A policy is 60 integers in the format of :mod:`rolekd_tf.augment.policy` (its one definition):
for each of the 15 ops and each of two copies A/B, a probability value ``0..10`` (even index)
followed by a magnitude level ``0..9`` (odd index).

Explore (PBA ``explore``) treats **each of the 60 integers independently**: with probability
``resample_p`` (0.2) it is redrawn uniformly from its full range; otherwise an amount drawn
uniformly from ``{0, 1, …, perturb_max}`` (3) is added or subtracted (fair sign) and the result
clipped to the range. Pure NumPy; every draw comes from the ``numpy.random.Generator`` passed in,
so a seeded search makes the same decisions every time.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from rolekd_tf.augment.policy import POLICY_LEN, UPPER, check_policy
from rolekd_tf.errors import ConfigError


#: ``search.init`` choices: how the members' start policies are drawn.
INIT_CHOICES = ("zeros", "random")


def initial_policy() -> list[int]:
    """PBA starts every member from the all-zeros policy (no policy augmentation)."""
    return [0] * POLICY_LEN


def random_initial_policy(rng: np.random.Generator) -> list[int]:
    """A start policy for ``search.init=random``: one PBA explore step from the all-zero policy.

    That is exactly the distribution of the policies PBA's own members hold after their first
    exploit, so it stays inside what PBA itself trains with: ~48 % of the 30 probability slots
    non-zero, mean probability 0.16, mostly low levels (mean 1.5 of 9). A uniform draw over the
    full ranges (mean probability 0.5, mean level 4.5 in every slot) would start every member at
    the cap of two ops per image at random magnitudes — much stronger than the schedules PBA
    learns (``benchmarks/results/search_lineage.md`` compares the two).
    """
    return explore(initial_policy(), rng)


def initial_policies(init: str, population: int, seed: int) -> list[list[int]]:
    """``population`` start policies for ``search.init`` (``zeros`` | ``random``).

    ``random`` draws from its own generator seeded by ``seed`` (not the PBT decision stream), so
    the same seed gives the same start policies and switching ``init`` leaves the exploit/explore
    random stream where it was.
    """
    if init == "zeros":
        return [initial_policy() for _ in range(population)]
    if init == "random":
        rng = np.random.default_rng([int(seed), 0x1A17])  # 0x1A17: a fixed stream tag ("init")
        return [random_initial_policy(rng) for _ in range(population)]
    raise ConfigError(f"search.init={init!r} is not a start-policy rule; allowed: {', '.join(INIT_CHOICES)}")


def explore(
    policy: Sequence[int],
    rng: np.random.Generator,
    *,
    resample_p: float = 0.2,
    perturb_max: int = 3,
    return_details: bool = False,
):
    """PBA's explore: a new 60-int policy derived from ``policy``.

    Draw order (fixed, so results are reproducible for a given generator state): one uniform
    per integer for the resample decision, one resample value per integer, one perturbation
    amount per integer, one sign per integer — all 60 at once, whether used or not.

    With ``return_details=True`` also returns ``(resampled_mask bool[60], delta int[60])``
    where ``delta`` is the signed perturbation drawn (before clipping; 0 where resampled).
    """
    old = np.asarray(check_policy(policy), dtype=np.int64)
    if not 0.0 <= resample_p <= 1.0:
        raise ValueError(f"resample_p={resample_p} must be in [0, 1]")
    if perturb_max < 0:
        raise ValueError(f"perturb_max={perturb_max} must be >= 0")
    resample = rng.random(POLICY_LEN) < resample_p
    fresh = rng.integers(0, UPPER + 1)  # per-element inclusive upper bounds
    amount = rng.integers(0, perturb_max + 1, size=POLICY_LEN)
    sign = np.where(rng.random(POLICY_LEN) < 0.5, -1, 1)
    delta = np.where(resample, 0, sign * amount)
    new = np.where(resample, fresh, np.clip(old + delta, 0, UPPER))
    out = [int(v) for v in new]
    if return_details:
        return out, resample, delta
    return out
