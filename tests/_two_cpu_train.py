"""Test-only launcher: configure two logical CPU devices, then run ``train.py`` jobs in-process.

Usage: ``python tests/_two_cpu_train.py [--crash-after-epoch N] TRAIN_ARGS [--next [--crash…] TRAIN_ARGS …]``.
Logical devices must be configured before TensorFlow initialises its devices, hence a process of
its own. ``--crash-after-epoch N`` makes that job's process exit (status 3) right after the
checkpoint of epoch ``N`` is on disk, as a crash would: re-running the job must resume from it.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _jobs(argv):
    jobs, cur = [], []
    for a in argv:
        if a == "--next":
            jobs.append(cur)
            cur = []
        else:
            cur.append(a)
    jobs.append(cur)
    return jobs


def main(argv):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import train
    from rolekd_tf.cli import run_cli
    from rolekd_tf.training import Task

    save_state = Task.save_state
    for job in _jobs(argv):
        crash = None
        if job[:1] == ["--crash-after-epoch"]:
            crash, job = int(job[1]), job[2:]

        def patched(self, model, path, *, epoch, extra=None, _crash=crash):
            save_state(self, model, path, epoch=epoch, extra=extra)
            if _crash is not None and epoch >= _crash:
                sys.stdout.flush()
                os._exit(3)

        Task.save_state = patched
        rc = run_cli(train.main, ["--quiet", *job])
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
