"""Subprocess entry for the kill -9 test: a PBT search over FakeTask.

    python -m tests.search._fake_search OUT_DIR CALLS_LOG [fit_sleep]
"""
import sys

from rolekd_tf.search.oracle import PBTOracle
from rolekd_tf.search.tuner import PBTTuner
from tests.search.fake_task import FakeTask


def main(out, calls, sleep=0.0):
    oracle = PBTOracle(population=4, ready_interval=3, epochs=12, seed=11)
    tuner = PBTTuner(oracle, task_factory=lambda: FakeTask(12, fit_sleep=sleep, calls_log=calls),
                     directory=out, project_name="pbt", overwrite=False, log=True)
    tuner.search(verbose=0)
    print("FINISHED", oracle.finished, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
