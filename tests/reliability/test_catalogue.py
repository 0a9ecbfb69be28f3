"""Bad-input catalogue: every CLI refuses bad input with ONE line ``error: …`` naming the culprit,
exit code ≠ 0, no traceback, and leaves every pre-existing file untouched (nothing created either).

All cases run as real subprocesses, 4 at a time, in one module fixture; each case is then its own
(parametrised) test that only inspects the recorded result.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability._util import (
    TINY, check_ok, cli_env, error_problems, jpeg_bytes, make_imagefolder, our_schedule, policy,
    run_tool, snapshot, snapshot_diff, tar_with, write_images,
)

WORKERS = 4  # 2 batch runners + 2 own-process cases at a time


@dataclass
class Case:
    id: str
    tool: str
    args: list
    needle: str
    #: files put into the case folder (the cwd) before the run: name → text | bytes | callable(dir)
    files: dict = field(default_factory=dict)


def _unknown_op_doc():
    doc = our_schedule([policy(0)] * 2)
    doc["op_order"] = list(doc["op_order"])
    doc["op_order"][3] = "Blur"
    return json.dumps(doc)


def _wrong_length_doc():
    doc = our_schedule([policy(0)] * 2)
    doc["epochs"][1] = doc["epochs"][1][:59]
    return json.dumps(doc)


def _out_of_range_doc():
    doc = our_schedule([policy(0)] * 2)
    doc["epochs"][0][2] = 11  # TranslateX copy A prob: 0..10
    return json.dumps(doc)


def _good_doc(epochs=2):
    return json.dumps(our_schedule([policy(1)] * epochs))


def _truncated_doc():
    text = _good_doc()
    return text[: len(text) // 2]


def _ray_row(tid, cid, te, ce, v0=0, v1=1):
    return json.dumps([tid, cid, te, ce, {"hp_policy": policy(v0)}, {"hp_policy": policy(v1)}])


# Ray-Tune lineage, 4 search epochs: second row clones at epoch 1 < the first row's 3 → a
# non-positive segment length (broken lineage).
RAY_BROKEN = _ray_row("1", "0", 2, 3) + "\n" + _ray_row("2", "1", 1, 1) + "\n"
RAY_OK = _ray_row("1", "0", 1, 2) + "\n"
PBA_BROKEN = str(["1", "0", 1, 2, policy(0), policy(1)])[:-25] + "\n"  # cut mid-row
PBA_INJECT = "['1', '0', 1, 2, __import__('os').system('touch INJECTED'), [0]*60]\n"
YAML_TAG = "name: !!python/object/apply:os.system ['touch INJECTED']\n"

TINY_YAML = """\
name: tiny
data: {dataset: "embedded:digits", train_size: 256, val_size: 128}
model: {name: resnet8}
train: {epochs: 1, batch_size: 32}
search: {population: 2, ready_interval: 1, epochs: 2}
"""


def _ro(d: Path):
    (d / "ro").mkdir()


def _existing_search(d: Path):
    s = d / "srch"
    s.mkdir()
    (s / "config.yaml").write_text(TINY_YAML.replace("tiny", "other"))  # not the resolved config
    (s / "search.json").write_text('{"role": "teacher", "teacher": null}\n')


def _emptydir(d: Path):
    (d / "notarun").mkdir()
    (d / "notarun" / "config.yaml").write_text("name: x\n")


def _foreign(d: Path):
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("never made by train.py or search.py\n")


def _old_run(d: Path):
    r = d / "r"
    (r / "checkpoints").mkdir(parents=True)
    (r / ".rolekd").write_text('{"kind": "run", "pid": 1, "host": "h", "created": "t"}\n')
    (r / "config.yaml").write_text("name: old\n")
    (r / "run.json").write_text('{"role": "teacher"}\n')
    (r / "model.keras").write_bytes(b"old model")
    (r / "checkpoints" / "state.npz").write_bytes(b"old state")


def _truncated_run(d: Path):
    """A run directory whose model.keras (a zip archive) was cut in half, e.g. by a failed copy."""
    import io
    import zipfile

    t = d / "tt"
    t.mkdir()
    (t / "config.yaml").write_text(TINY_YAML)
    (t / "run.json").write_text('{"role": "teacher"}\n')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", os.urandom(20000))
    data = buf.getvalue()
    (t / "model.keras").write_bytes(data[: len(data) // 2])


def _cases(fx: dict) -> list[Case]:
    T3 = str(fx["teacher3"])
    D = fx["data"]
    tiny = list(TINY)
    return [
        # ------------------------------------------------------------- train.py: config
        Case("train_unknown_key_in_yaml", "train", ["--config", "c.yaml"], "train.epoch",
             {"c.yaml": "train:\n  epoch: 3\n"}),
        Case("train_unknown_section_set", "train", ["--set", "trian.epochs=3"], "trian"),
        Case("train_bad_value_type", "train", ["--set", "train.lr=fast"], "train.lr"),
        Case("train_bits_0", "train", ["--set", "model.w_bits=0"], "w_bits=0"),
        Case("train_bits_33", "train", ["--set", "model.a_bits=33"], "a_bits=33"),
        Case("train_set_without_equals", "train", ["--set", "train.epochs"], "train.epochs"),
        Case("train_missing_config_file", "train", ["--config", "nope.yaml"], "nope.yaml"),
        Case("train_invalid_yaml", "train", ["--config", "c.yaml"], "not valid YAML",
             {"c.yaml": "train: [1, 2\n"}),
        Case("train_yaml_python_tag_rejected", "train", ["--config", "c.yaml"], "python/object",
             {"c.yaml": YAML_TAG}),
        Case("train_unknown_model", "train", [*tiny, "--set", "model.name=resnet7", "--out", "r"], "resnet7"),
        Case("train_unknown_kd_loss", "train", [*tiny, "--kd", "fancy", "--teacher", T3, "--out", "r"], "fancy"),
        Case("train_unknown_dataset", "train", [*tiny, "--set", "data.dataset=embedded:letters", "--out", "r"],
             "letters"),
        Case("train_batch_larger_than_split", "train", [*tiny, "--set", "train.batch_size=512", "--out", "r"],
             "batch_size"),
        Case("train_kd_without_teacher", "train", [*tiny, "--kd", "ii", "--out", "r"], "--teacher"),
        Case("train_teacher_dir_missing", "train", [*tiny, "--kd", "ii", "--teacher", "no_teacher", "--out", "r"],
             "no_teacher"),
        Case("train_init_dir_missing", "train", [*tiny, "--init", "no_init", "--out", "r"], "no_init"),
        Case("train_wrong_teacher_class_count", "train", [*tiny, "--kd", "ii", "--teacher", T3, "--out", "r"],
             "3 classes"),
        Case("train_existing_out_other_config", "train", [*tiny, "--out", T3], "another configuration"),
        Case("train_readonly_out_dir", "train", [*tiny, "--out", "ro/run"], "permission denied", {"": _ro}),
        Case("train_out_below_a_file", "train", [*tiny, "--out", "afile/run"], "afile/run",
             {"afile": "I am a file, not a folder\n"}),
        Case("train_config_not_utf8", "train", ["--config", "c.yaml"], "not UTF-8",
             {"c.yaml": b"name: caf\xe9\ntrain: {epochs: 1}\n"}),
        # ------------------------------------------------------------- train.py: output location
        Case("train_name_dotdot", "train", [*tiny, "--set", "name=.."], "name='..'"),
        Case("train_name_with_separator", "train", [*tiny, "--set", "name=a/b"], "name='a/b'"),
        Case("train_out_is_working_dir", "train", [*tiny, "--out", "."], "working directory"),
        Case("train_overwrite_foreign_folder", "train", [*tiny, "--out", "mine", "--overwrite"],
             "not a run directory", {"": _foreign}),
        Case("train_into_foreign_folder", "train", [*tiny, "--out", "mine"], "not a run directory",
             {"": _foreign}),
        Case("train_overwrite_unknown_model_keeps_run", "train",
             [*tiny, "--set", "model.name=resnet7", "--out", "r", "--overwrite"], "resnet7", {"": _old_run}),
        Case("train_overwrite_batch_too_large_keeps_run", "train",
             [*tiny, "--set", "train.batch_size=512", "--out", "r", "--overwrite"], "batch_size", {"": _old_run}),
        Case("train_overwrite_bad_schedule_keeps_run", "train",
             [*tiny, "--schedule", "s.json", "--out", "r", "--overwrite"], "truncated",
             {"s.json": _truncated_doc(), "": _old_run}),
        Case("train_overwrite_teacher_is_out", "train",
             [*tiny, "--kd", "ii", "--teacher", T3, "--out", T3, "--overwrite"], "teacher run"),
        Case("train_teacher_model_truncated", "train", [*tiny, "--kd", "ii", "--teacher", "tt", "--out", "r"],
             "truncated", {"": _truncated_run}),
        # ------------------------------------------------------------- train.py: schedules
        Case("train_schedule_unknown_op", "train", [*tiny, "--schedule", "s.json", "--out", "r"], "Blur",
             {"s.json": _unknown_op_doc()}),
        Case("train_schedule_json_truncated", "train", [*tiny, "--schedule", "s.json", "--out", "r"], "truncated",
             {"s.json": _truncated_doc()}),
        Case("train_schedule_json_wrong_length", "train", [*tiny, "--schedule", "s.json", "--out", "r"],
             "expected 60", {"s.json": _wrong_length_doc()}),
        Case("train_schedule_json_out_of_range", "train", [*tiny, "--schedule", "s.json", "--out", "r"],
             "out of range", {"s.json": _out_of_range_doc()}),
        Case("train_schedule_pba_literal_broken", "train",
             [*tiny, "--schedule", "s.txt", "--schedule-epochs", "4", "--out", "r"], "s.txt: line 1",
             {"s.txt": PBA_BROKEN}),
        Case("train_schedule_pba_code_not_executed", "train",
             [*tiny, "--schedule", "s.txt", "--schedule-epochs", "4", "--out", "r"], "not a valid log row",
             {"s.txt": PBA_INJECT}),
        Case("train_schedule_raytune_broken_lineage", "train",
             [*tiny, "--schedule", "s.txt", "--schedule-epochs", "4", "--out", "r"], "broken lineage",
             {"s.txt": RAY_BROKEN}),
        # ------------------------------------------------------------- train.py: image folders
        Case("train_imagefolder_truncated_jpeg", "train",
             [*tiny, "--set", f"data.dataset=imagefolder:{D / 'trunc'}", "--out", "r"], "b/001.jpg"),
        Case("train_imagefolder_corrupt_jpeg", "train",
             [*tiny, "--set", f"data.dataset=imagefolder:{D / 'corrupt'}", "--out", "r"], "a/002.jpg"),
        Case("train_imagefolder_empty_class", "train",
             [*tiny, "--set", f"data.dataset=imagefolder:{D / 'emptyclass'}", "--out", "r"], "'train/b'"),
        Case("train_archive_dotdot_path", "train",
             [*tiny, "--set", f"data.dataset=imagefolder:{D / 'dotdot.tar.gz'}", "--out", "r"], "escapes"),
        Case("train_archive_symlink", "train",
             [*tiny, "--set", f"data.dataset=imagefolder:{D / 'symlink.tar.gz'}", "--out", "r"], "symbolic link"),
        Case("train_archive_hardlink", "train",
             [*tiny, "--set", f"data.dataset=imagefolder:{D / 'hardlink.tar.gz'}", "--out", "r"], "hard link"),
        Case("train_archive_not_a_tar", "train",
             [*tiny, "--set", f"data.dataset=imagefolder:{D / 'garbage.tar.gz'}", "--out", "r"], "garbage.tar.gz"),
        # ------------------------------------------------------------- python -m rolekd_tf.augment
        Case("augment_convert_truncated_json_keeps_out", "augment",
             ["convert", "s.json", "--out", "out.json"], "truncated",
             {"s.json": _truncated_doc(), "out.json": _good_doc()}),
        Case("augment_convert_unknown_op", "augment", ["convert", "s.json", "--out", "out.json"], "Blur",
             {"s.json": _unknown_op_doc()}),
        Case("augment_convert_raytune_without_epochs", "augment", ["convert", "s.txt", "--out", "o.json"],
             "--epochs", {"s.txt": RAY_OK}),
        Case("augment_convert_raytune_broken_lineage", "augment",
             ["convert", "s.txt", "--epochs", "4", "--out", "o.json"], "broken lineage", {"s.txt": RAY_BROKEN}),
        Case("augment_plot_pba_broken", "augment", ["plot", "s.txt", "--epochs", "4", "--out", "f.png"],
             "s.txt: line 1", {"s.txt": PBA_BROKEN, "f.png": b"old figure"}),
        Case("augment_plot_pba_code_not_executed", "augment", ["plot", "s.txt", "--epochs", "4", "--out", "f.png"],
             "not a valid log row", {"s.txt": PBA_INJECT}),
        Case("augment_plot_readonly_out", "augment", ["plot", "s.json", "--out", "ro/f.png"], "ro/f.png:",
             {"s.json": _good_doc(), "": _ro}),
        # ------------------------------------------------------------- python -m rolekd_tf.export
        Case("export_missing_run_dir", "export", ["no_run"], "no_run"),
        Case("export_not_a_run_dir", "export", ["notarun"], "notarun", {"": _emptydir}),
        Case("export_unknown_format", "export", [T3, "--formats", "onnx"], "onnx"),
        Case("export_unknown_int8_input", "export", [T3, "--int8-input", "float"], "'float'"),
        Case("export_truncated_model", "export", ["tt"], "truncated", {"": _truncated_run}),
        # ------------------------------------------------------------- search.py
        Case("search_student_without_teacher", "search", ["--role", "student", "--config", "c.yaml"],
             "--teacher", {"c.yaml": TINY_YAML}),
        Case("search_bits_33", "search", ["--role", "teacher", "--config", "c.yaml", "--set", "model.w_bits=33"],
             "w_bits=33", {"c.yaml": TINY_YAML}),
        Case("search_unknown_key", "search", ["--role", "teacher", "--config", "c.yaml", "--set", "search.popsize=3"],
             "search.popsize", {"c.yaml": TINY_YAML}),
        Case("search_wrong_teacher_class_count", "search",
             ["--role", "student", "--config", "c.yaml", "--teacher", T3, "--out", "s"], "3 classes",
             {"c.yaml": TINY_YAML}),
        Case("search_existing_out_other_config", "search",
             ["--role", "teacher", "--config", "c.yaml", "--out", "srch"], "another configuration",
             {"c.yaml": TINY_YAML, "": _existing_search}),
        Case("search_config_not_utf8", "search", ["--role", "teacher", "--config", "c.yaml"], "not UTF-8",
             {"c.yaml": TINY_YAML.encode() + b"# \xff\xfe\n"}),
        Case("search_overwrite_foreign_folder", "search",
             ["--role", "teacher", "--config", "c.yaml", "--out", "mine", "--overwrite"], "not a search directory",
             {"c.yaml": TINY_YAML, "": _foreign}),
        Case("search_out_is_working_dir", "search", ["--role", "teacher", "--config", "c.yaml", "--out", "."],
             "working directory", {"c.yaml": TINY_YAML}),
    ]


# ------------------------------------------------------------------------------ fixtures
def _build_data(d: Path) -> None:
    make_imagefolder(d / "folder3", classes=("a", "b", "c"), n=40)
    for name in ("trunc", "corrupt", "emptyclass"):
        make_imagefolder(d / name, classes=("a", "b"), n=4)
    f = d / "trunc" / "train" / "b" / "001.jpg"
    f.write_bytes(f.read_bytes()[:200])
    (d / "corrupt" / "train" / "a" / "002.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    shutil.rmtree(d / "emptyclass" / "train" / "b")
    (d / "emptyclass" / "train" / "b").mkdir()
    img = jpeg_bytes()
    ok = [("ds/train/a/0.jpg", img, "file"), ("ds/train/b/0.jpg", img, "file")]
    tar_with(d / "dotdot.tar.gz", ok + [("ds/train/../../evil.jpg", img, "file")])
    tar_with(d / "symlink.tar.gz", ok + [("ds/train/a/1.jpg", None, "sym:/etc/passwd")])
    tar_with(d / "hardlink.tar.gz", ok + [("ds/train/a/1.jpg", None, "hard:ds/train/a/0.jpg")])
    (d / "garbage.tar.gz").write_bytes(b"this is not gzip data at all" * 20)


@contextlib.contextmanager
def _immutable(paths):
    """Make folders read-only even for root (chattr +i); undo afterwards. Yields False if impossible."""
    done = []
    try:
        import os

        for p in paths:
            if os.geteuid() != 0:
                p.chmod(0o555)
                done.append(("chmod", p))
                continue
            r = subprocess.run(["chattr", "+i", str(p)], capture_output=True)
            if r.returncode != 0:
                yield False
                return
            done.append(("chattr", p))
        yield True
    finally:
        for how, p in done:
            if how == "chmod":
                p.chmod(0o755)
            else:
                subprocess.run(["chattr", "-i", str(p)], capture_output=True)


#: cases run as their own real process (the remaining ones share TensorFlow in batch runners,
#: see _batch_cli.py — same ``main`` and error wrapper, one import of TensorFlow per runner).
REAL_PROCESS = ("train_readonly_out_dir", "augment_convert_truncated_json_keeps_out",
                "export_missing_run_dir", "search_bits_33")
BATCH = Path(__file__).resolve().parent / "_batch_cli.py"


def _run_batch(jobs, workdir: Path, name: str, env) -> dict:
    jf, rf = workdir / f"{name}-jobs.json", workdir / f"{name}-results.json"
    jf.write_text(json.dumps(jobs))
    p = subprocess.run([sys.executable, str(BATCH), str(jf), str(rf)], env=env, cwd=str(workdir),
                       capture_output=True, text=True, timeout=1200)
    res = json.loads(rf.read_text()) if rf.exists() else {}
    for j in jobs:  # a runner that died: every unfinished job is a failure with its output
        res.setdefault(j["id"], {"rc": -1, "stdout": p.stdout[-2000:], "seconds": 0.0,
                                 "stderr": f"batch runner died rc={p.returncode}: {p.stderr[-2000:]}"})
    return res


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    base = tmp_path_factory.mktemp("catalogue")
    data, cache = base / "data", base / "cache"
    _build_data(data)
    env = cli_env(ROLEKD_CACHE_DIR=cache)
    t0 = time.time()
    teacher3 = base / "teacher3"
    fx = {"teacher3": teacher3, "data": data}
    cases = _cases(fx)
    dirs = {}
    for c in cases:
        d = base / "cases" / c.id
        d.mkdir(parents=True)
        for name, content in c.files.items():
            if callable(content):
                content(d)
            elif isinstance(content, bytes):
                (d / name).write_bytes(content)
            else:
                (d / name).write_text(content)
        dirs[c.id] = d
    setup = {"id": "setup_teacher3", "tool": "train", "cwd": str(base),
             "args": [*TINY, "--set", f"data.dataset=imagefolder:{data / 'folder3'}",
                      "--set", "data.train_size=64", "--set", "data.val_size=32", "--out", str(teacher3)]}
    job = lambda c: {"id": c.id, "tool": c.tool, "args": [str(a) for a in c.args], "cwd": str(dirs[c.id])}  # noqa: E731
    needs_t3 = [c for c in cases if str(teacher3) in map(str, c.args) and c.id not in REAL_PROCESS]
    rest = [c for c in cases if c not in needs_t3 and c.id not in REAL_PROCESS]
    real = [c for c in cases if c.id in REAL_PROCESS]
    ro_dirs = [d / "ro" for d in dirs.values() if (d / "ro").is_dir()]
    before = {c.id: snapshot(dirs[c.id]) for c in cases}
    with _immutable(ro_dirs) as ro_ok:
        def one(c):
            t = time.time()
            try:
                p = run_tool(c.tool, c.args, cwd=dirs[c.id], env=env, timeout=600)
            except subprocess.TimeoutExpired as e:
                p = subprocess.CompletedProcess(e.cmd, -9, "", f"TIMEOUT after {e.timeout}s")
            return {c.id: {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                           "seconds": time.time() - t}}

        go = base / "setup-checked"
        a_jobs = [setup, {"id": "barrier", "wait_for": str(go)}] + [job(c) for c in needs_t3 + rest[1::2]]
        with ThreadPoolExecutor(WORKERS) as pool:
            fa = pool.submit(_run_batch, a_jobs, base, "a", env)
            fb = pool.submit(_run_batch, [job(c) for c in rest[0::2]], base, "b", env)
            fr = [pool.submit(one, c) for c in real]
            # barrier: once the teacher fixture exists, snapshot the shared inputs, then let A go on
            deadline = time.time() + 900
            while time.time() < deadline and not fa.done():
                with contextlib.suppress(OSError, ValueError):
                    if "setup_teacher3" in json.loads((base / "a-results.json").read_text()):
                        break
                time.sleep(0.2)
            shared_before = snapshot(data, teacher3)
            go.touch()
            results = fa.result()
            assert results["setup_teacher3"]["rc"] == 0, f"teacher fixture failed: {results['setup_teacher3']}"
            for f in [fb] + fr:
                results.update(f.result())
    after = {c.id: snapshot(dirs[c.id]) for c in cases}
    shared_after = snapshot(data, teacher3)
    out = {
        "cases": {c.id: c for c in cases},
        "dirs": dirs,
        "results": results,
        "diffs": {cid: snapshot_diff(before[cid], after[cid]) for cid in before},
        "shared_diff": snapshot_diff(shared_before, shared_after),
        "ro_ok": ro_ok,
        "wall": time.time() - t0,
    }
    report = {cid: {"rc": r["rc"], "stderr": r["stderr"].strip()[-400:], "seconds": round(r["seconds"], 1),
                    "process": "own" if cid in REAL_PROCESS else "batch"} for cid, r in results.items()}
    (base / "catalogue-report.json").write_text(json.dumps(report, indent=1))
    if os.environ.get("ROLEKD_RELIABILITY_REPORT"):  # e.g. for RELIABILITY.md
        Path(os.environ["ROLEKD_RELIABILITY_REPORT"]).write_text(json.dumps(report, indent=1))
    return out


# The ids are fixed without building fixtures (parametrisation happens at collection).
CASE_IDS = [c.id for c in _cases({"teacher3": Path("T3"), "data": Path("D")})]


def test_catalogue_has_at_least_25_cases_over_all_clis():
    assert len(CASE_IDS) >= 25
    tools = {c.tool for c in _cases({"teacher3": Path("T3"), "data": Path("D")})}
    assert tools == {"train", "augment", "export", "search"}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_is_one_line_error_and_changes_nothing(catalogue, case_id):
    case = catalogue["cases"][case_id]
    r = catalogue["results"][case_id]
    if "readonly" in case_id and not catalogue["ro_ok"]:
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    p = subprocess.CompletedProcess([], r["rc"], r["stdout"], r["stderr"])
    dt = r["seconds"]
    problems = error_problems(p, case.needle)
    if p.returncode != 2 and not problems:
        problems.append(f"exit code {p.returncode}, the user-error code is 2")
    diff = catalogue["diffs"][case_id]
    assert not problems and not diff, f"{case_id} ({dt:.0f}s): {problems} files: {diff}"


def test_shared_inputs_untouched_by_all_cases(catalogue):
    # the teacher run, image folders and archives that every case reads
    assert catalogue["shared_diff"] == []


def test_code_in_user_files_is_never_executed(catalogue):
    # YAML python tags and PBA literals with __import__: the marker file `INJECTED` is never created
    for cid in ("train_yaml_python_tag_rejected", "train_schedule_pba_code_not_executed",
                "augment_plot_pba_code_not_executed"):
        assert catalogue["results"][cid]["rc"] != 0
        assert not list(catalogue["dirs"][cid].rglob("INJECTED"))
        assert not list(Path.cwd().glob("INJECTED"))
    marker_hits = [d for d in catalogue["diffs"].values() if any("INJECTED" in x for x in d)]
    assert marker_hits == []


def test_debug_shows_the_traceback(tmp_path):
    p = run_tool("train", ["--set", "model.w_bits=0", "--debug"], cwd=tmp_path)
    assert p.returncode != 0 and "Traceback" in p.stderr and "w_bits=0" in p.stderr
