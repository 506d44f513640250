"""Fault injection: every way a model folder can be broken or tampered with is refused at load, with a reason.

Each case copies a small real model (the `quick_model_dir` fixture), breaks one thing and loads it. Cases marked
"rehashed" also recompute every file digest and the version, as a buggy training run (or whoever can write the
folder) would have written them: those must be caught by the structural checks or the known record, not by the
hash, and, when they are deliberate edits that leave a sound model, only by the version pinned from outside the
folder. tests/api/test_faults.py shows some of them stopping a real uvicorn with one line and exit status 3.
"""

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from census_income.features import Encoder
from census_income.network import MANIFEST, WEIGHTS, ModelFilesError, Network, layer_name
from census_income.predict import JSON_LIMIT, WEIGHTS_LIMIT, Predictor, file_digest, model_version
from census_income.validation import EXAMPLE
from testkit import ROOT, tool_env


def rehash(d: Path) -> None:
    "Recompute every file's digest and the version from the folder, as whoever can write it can."
    manifest = json.loads((d / MANIFEST).read_text())
    manifest["sha256"] = {name: file_digest((d / name).read_bytes()) for name in manifest["sha256"]}
    manifest["version"] = model_version(manifest)
    (d / MANIFEST).write_text(json.dumps(manifest))


def edit_json(d: Path, name: str, change) -> None:
    data = json.loads((d / name).read_text())
    change(data)
    (d / name).write_text(json.dumps(data, indent=1))


def edit_weights(d: Path, change) -> None:
    "Change the tensors of weights.safetensors; `change` gets them and the manifest's architecture (members, depth)."
    tensors = load_file(str(d / WEIGHTS))
    change(tensors, json.loads((d / MANIFEST).read_text())["architecture"])
    save_file(tensors, str(d / WEIGHTS))


def flip_bytes(d):
    data = bytearray((d / "weights.safetensors").read_bytes())
    for i in range(len(data) - 400, len(data) - 300):
        data[i] ^= 0xFF
    (d / "weights.safetensors").write_bytes(bytes(data))


def swap_sex(state):
    state["categorical"]["sex"] = state["categorical"]["sex"][::-1]


def set_last_width(width: int):
    def change(t, arch):
        last = layer_name(arch["depth"])
        for m in range(arch["members"]):
            t[f"members.{m}.{last}.weight"] = np.zeros((width, t[f"members.{m}.{last}.weight"].shape[1]), np.float32)
            t[f"members.{m}.{last}.bias"] = np.zeros(width, np.float32)
    return change


def nan_weight(t, arch):
    t[f"members.0.{layer_name(0)}.weight"][0, 0] = np.nan


def nan_frequency(t, arch):
    t[f"members.{arch['members'] - 1}.embed.frequencies"][2, 0] = np.nan  # the last member (the only one of a student)


def bias_nudge(t, arch):
    t[f"members.0.{layer_name(0)}.bias"][0] += 0.5


def inner_mismatch(t, arch):
    for m in range(arch["members"]):
        t[f"members.{m}.{layer_name(0)}.weight"] = t[f"members.{m}.{layer_name(0)}.weight"][:-1]
        t[f"members.{m}.{layer_name(0)}.bias"] = t[f"members.{m}.{layer_name(0)}.bias"][:-1]


def drop_last_member(t, arch):
    gone = arch["members"] - 1
    for k in [k for k in t if k.startswith(f"members.{gone}.")]:
        del t[k]


def extra_layer(t, arch):
    t[f"members.0.{layer_name(arch['depth'] + 1)}.weight"] = np.zeros((1, 1), np.float32)


def set_temperature(value: float):
    def change(t, arch):
        t["temperature"] = np.array(value, np.float32)
    return change


CASES = {  # name: (how to break a copy, rehash?, what the refusal says)
    "flipped bytes in the weights": (flip_bytes, False, f"{WEIGHTS} hashes to"),
    "a bias changed": (lambda d: edit_weights(d, bias_nudge), False, f"{WEIGHTS} hashes to"),
    "sex categories swapped in encoder.json": (lambda d: edit_json(d, "encoder.json", swap_sex), False, "encoder.json hashes to"),
    "version edited in manifest.json": (lambda d: edit_json(d, "manifest.json", lambda m: m.update(version="0" * 12)),
                                        False, "but says version '000000000000'"),
    "a numeric version": (lambda d: edit_json(d, "manifest.json", lambda m: m.update(version=123)), False, "says version 123"),
    "a last layer two wide": (lambda d: edit_weights(d, set_last_width(2)), True, "the last layer gives 2 outputs"),
    "a last layer of width 0": (lambda d: edit_weights(d, set_last_width(0)), True, "the last layer gives 0 outputs"),
    "a NaN weight": (lambda d: edit_weights(d, nan_weight), True, "layer 1 holds a non-finite weight or bias"),
    "an inner layer that does not chain": (lambda d: edit_weights(d, inner_mismatch), True, "layer 2 has weights"),
    "a NaN frequency in one member's embeddings": (lambda d: edit_weights(d, nan_frequency), True,
                                                  "the embeddings hold a non-finite number"),
    "a member missing": (lambda d: edit_weights(d, drop_last_member), True,
                         f"{WEIGHTS} does not hold the "),  # the n-member ensemble (or one-network student) it describes
    "a tensor the architecture does not have": (lambda d: edit_weights(d, extra_layer), True,
                                                "unexpected ['members.0.net."),
    "an architecture with a wrong count of numbers": (
        lambda d: edit_json(d, MANIFEST, lambda m: m["architecture"].update(n_numeric=5)), True,
        "the architecture says 5 numbers per row; the schema has 6"),
    "an architecture of a billion members": (  # listing their tensor names alone took minutes and gigabytes
        lambda d: edit_json(d, MANIFEST, lambda m: m["architecture"].update(members=10**9)), True,
        f"{MANIFEST}'s architecture says members = 1000000000; a model has 1..64"),
    "an architecture of 10**12 layers": (
        lambda d: edit_json(d, MANIFEST, lambda m: m["architecture"].update(depth=10**12)), True,
        f"{MANIFEST}'s architecture says depth = 1000000000000; a model has 0..64"),
    "an architecture whose depth is text": (
        lambda d: edit_json(d, MANIFEST, lambda m: m["architecture"].update(depth="2")), True,
        f"{MANIFEST}'s architecture says depth = '2'; a model has"),
    "an architecture that is a list": (lambda d: edit_json(d, MANIFEST, lambda m: m.update(architecture=[1, 2])), True,
                                       f"{MANIFEST}'s architecture is not a JSON object"),
    "the weights file a folder": (lambda d: ((d / WEIGHTS).unlink(), (d / WEIGHTS).mkdir()), False,
                                  f"{WEIGHTS} is not a regular file (a FIFO, a device or a folder)"),
    "a manifest without its architecture": (lambda d: edit_json(d, MANIFEST, lambda m: m.pop("architecture")), False,
                                            f"{MANIFEST} lacks architecture"),
    "a temperature of 0": (lambda d: edit_weights(d, set_temperature(0.0)), True, "the temperature 0.0 is not a positive number"),
    "a NaN temperature": (lambda d: edit_weights(d, set_temperature(float("nan"))), True,
                          "the temperature nan is not a positive number"),
    "an encoder scale of 0": (lambda d: edit_json(d, "encoder.json", lambda s: s["continuous"]["age"].update(scale=0.0)),
                              True, "a scale that is not a positive number"),
    "a threshold of 2.0": (lambda d: edit_json(d, "manifest.json", lambda m: m.update(threshold=2.0)), True,
                           "the threshold 2.0 is not strictly between 0 and 1"),
    "a NaN threshold": (lambda d: edit_json(d, "manifest.json", lambda m: m.update(threshold=float("nan"))), True,
                        "the threshold nan is not strictly between 0 and 1"),
    "the known record's probability changed": (
        lambda d: edit_json(d, "manifest.json", lambda m: m["check"].update(probability=m["check"]["probability"] / 2)),
        True, "the known record scores"),
    "no known record": (lambda d: edit_json(d, "manifest.json", lambda m: m.pop("check")), True, "no known record"),
    "a baseline record edited": (lambda d: edit_json(d, "manifest.json", lambda m: m["baseline"].update(age=90)), False,
                                 f"{MANIFEST} hashes to"),
    "a baseline with an unknown category, rehashed": (
        lambda d: edit_json(d, "manifest.json", lambda m: m["baseline"].update(race="Martian")), True,
        "the baseline record in manifest.json is not a census record: record 0: race: 'Martian' is not an allowed value"),
    "weights that are not safetensors": (lambda d: (d / "weights.safetensors").write_bytes(b"\x00garbage" * 10), True,
                                         "unusable: SafetensorError"),
    "a truncated manifest": (lambda d: (d / "manifest.json").write_text('{"version": '), False, "JSONDecodeError"),
    "no encoder file": (lambda d: (d / "encoder.json").unlink(), False, "model file missing in"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_model_folder_is_refused_with_its_reason(quick_model_dir, tmp_path, case):
    breaks, rehashed, reason = CASES[case]
    d = Path(shutil.copytree(quick_model_dir, tmp_path / "model"))
    breaks(d)
    if rehashed:
        rehash(d)
    with pytest.raises(ModelFilesError) as err:
        Predictor.load(d)
    message = str(err.value)
    assert reason in message, message
    assert str(d) in message and "\n" not in message


def test_the_untouched_model_loads_and_proves_itself(quick_model_dir):
    predictor = Predictor.load(quick_model_dir)
    check = predictor.manifest["check"]
    assert predictor.predict_records([check["record"]])[0]["probability"] == pytest.approx(check["probability"], abs=1e-6)


# A model that can be swapped (issue 22): deliberate edits that leave a sound model, every digest and the version
# recomputed, as whoever can write the folder can. Only the version pinned from outside the folder tells them apart.

def swap_countries(state):
    countries = state["categorical"]["native-country"]
    i, j = countries.index("Canada"), countries.index("Mexico")  # neither is the known record's: only the pin sees it
    countries[i], countries[j] = countries[j], countries[i]


def shift_age(state):
    state["continuous"]["age"].update(mean=state["continuous"]["age"]["mean"] + 5, scale=state["continuous"]["age"]["scale"] * 2)


def first_weight_plus_5(t, arch):
    t[f"members.0.{layer_name(0)}.weight"][0, 0] += 5


def last_biases_plus_3(t, arch):
    for m in range(arch["members"]):
        t[f"members.{m}.{layer_name(arch['depth'])}.bias"] += 3


def rescore_known_record(d: Path) -> None:
    "Store the known record's probability as the edited files now give it, as a careful tamperer would."
    manifest = json.loads((d / MANIFEST).read_text())
    edited = Predictor(Encoder(json.loads((d / manifest["encoder"]).read_text())),
                       Network.load((d / WEIGHTS).read_bytes(), manifest["architecture"]), manifest)
    manifest["check"]["probability"] = edited.predict_records([manifest["check"]["record"]])[0]["probability"]
    (d / MANIFEST).write_text(json.dumps(manifest))


SWAPS = {  # the six edits that were served under a new version: each is refused by the pin
    "threshold 0.05": lambda d: edit_json(d, MANIFEST, lambda m: m.update(threshold=0.05)),
    "another baseline record": lambda d: edit_json(d, MANIFEST, lambda m: m["baseline"].update(age=77, sex="Female")),
    "two countries swapped in encoder.json": lambda d: edit_json(d, "encoder.json", swap_countries),
    "a changed mean and scale, the known record rescored": lambda d: (edit_json(d, "encoder.json", shift_age),
                                                                     rescore_known_record(d)),
    "one first-layer weight +5": lambda d: edit_weights(d, first_weight_plus_5),
    "every last-layer bias +3, the known record rescored": lambda d: (edit_weights(d, last_biases_plus_3),
                                                                     rescore_known_record(d)),
}


@pytest.mark.parametrize("case", list(SWAPS))
def test_a_swapped_model_is_refused_by_the_pinned_version(quick_model_dir, quick_predictor, tmp_path, case):
    pinned = quick_predictor.version
    d = Path(shutil.copytree(quick_model_dir, tmp_path / "model"))
    SWAPS[case](d)
    rehash(d)
    found = Predictor.load(d).version  # the folder alone cannot tell: it proves itself under its new version
    assert found != pinned
    with pytest.raises(ModelFilesError) as err:
        Predictor.load(d, pinned)
    assert f"expected model version {pinned} but the files are version {found}" in str(err.value), err.value
    assert "\n" not in str(err.value)


def test_every_manifest_field_is_inside_the_version(quick_model_dir, tmp_path):
    fields = [k for k in json.loads((quick_model_dir / MANIFEST).read_text()) if k != "version"]
    assert {"architecture", "metrics", "threshold", "baseline", "check", "weights", "encoder", "reference",
            "sha256"} <= set(fields)
    for field in fields:
        d = Path(shutil.copytree(quick_model_dir, tmp_path / field))
        edit_json(d, MANIFEST, lambda m, f=field: m.update({f: {"changed": m[f]}}))
        with pytest.raises(ModelFilesError, match=f"{MANIFEST} hashes to [0-9a-f]{{32}} but says version"):
            Predictor.load(d)


def test_the_training_profile_is_inside_the_version(quick_model_dir, quick_predictor, tmp_path):
    d = Path(shutil.copytree(quick_model_dir, tmp_path / "model"))
    name = json.loads((d / MANIFEST).read_text())["reference"]
    edit_json(d, name, lambda r: r.update(rows=r["rows"] * 2))  # recomputed counts: false drift flags once served
    with pytest.raises(ModelFilesError, match=f"{name} hashes to"):
        Predictor.load(d)
    rehash(d)
    with pytest.raises(ModelFilesError, match="expected model version"):
        Predictor.load(d, quick_predictor.version)


def load_within(d: Path, seconds: float = 20) -> str:
    "Predictor.load(d) in a thread: its refusal, or a failure if it is still reading after `seconds`."
    outcome = []

    def load():
        try:
            Predictor.load(d)
            outcome.append("loaded")
        except ModelFilesError as err:
            outcome.append(str(err))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for fifo in (p for p in d.iterdir() if p.is_fifo()):  # let the stuck thread go before failing
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"loading {d} still hangs after {seconds} s")
    return outcome[0]


@pytest.mark.parametrize("name", [MANIFEST, WEIGHTS, "encoder.json"])
def test_a_fifo_in_the_model_folder_is_refused_at_once(quick_model_dir, tmp_path, name):
    d = Path(shutil.copytree(quick_model_dir, tmp_path / "model"))
    (d / name).unlink()
    os.mkfifo(d / name)
    message = load_within(d)
    assert f"{name} is not a regular file (a FIFO, a device or a folder)" in message and str(d) in message, message


@pytest.mark.parametrize("name", ["/dev/zero", "../weights.safetensors", "sub/weights.safetensors", "..", "", 5])
def test_the_manifest_names_files_not_paths(quick_model_dir, tmp_path, name):
    d = Path(shutil.copytree(quick_model_dir, tmp_path / "model"))
    manifest = json.loads((d / MANIFEST).read_text())
    digests = {k: v for k, v in manifest["sha256"].items() if k != manifest["weights"]} | {str(name): "0" * 64}
    manifest |= {"weights": name, "sha256": digests}
    (d / MANIFEST).write_text(json.dumps(manifest | {"version": model_version(manifest)}))
    message = load_within(d)
    assert f"{MANIFEST} names the file {name!r}: a model file is a plain name in the model folder, not a path" in message


@pytest.mark.parametrize("target", ["outside", "/dev/zero"])
def test_a_link_out_of_the_folder_is_refused(quick_model_dir, tmp_path, target):
    d = Path(shutil.copytree(quick_model_dir, tmp_path / "model"))
    outside = shutil.copy(d / WEIGHTS, tmp_path / "outside")  # the very bytes, so only the link itself is wrong
    (d / WEIGHTS).unlink()
    (d / WEIGHTS).symlink_to(outside if target == "outside" else target)
    message = load_within(d)
    assert f"{WEIGHTS} is a link to " in message and "outside the model folder" in message, message


def test_a_link_within_the_folder_loads(quick_model_dir, quick_predictor, tmp_path):
    d = Path(shutil.copytree(quick_model_dir, tmp_path / "model"))
    (d / WEIGHTS).rename(d / "weights.v1")
    (d / WEIGHTS).symlink_to("weights.v1")
    assert Predictor.load(d).version == quick_predictor.version


@pytest.mark.parametrize(("name", "limit"), [(MANIFEST, JSON_LIMIT), (WEIGHTS, WEIGHTS_LIMIT), ("encoder.json", JSON_LIMIT)])
def test_a_model_file_over_its_size_limit_is_refused_unread(quick_model_dir, tmp_path, name, limit):
    d = Path(shutil.copytree(quick_model_dir, tmp_path / "model"))
    with open(d / name, "r+b") as f:
        f.truncate(limit + 1)  # sparse: no disk used, and nothing should read it
    message = load_within(d, 10)
    assert f"{name} holds more than {limit:,} bytes" in message, message


def test_the_batch_job_refuses_a_fifo_before_any_work(quick_model_dir, tmp_path):
    d = Path(shutil.copytree(quick_model_dir, tmp_path / "model"))
    (d / WEIGHTS).unlink()
    os.mkfifo(d / WEIGHTS)
    source, out = tmp_path / "in.csv", tmp_path / "out" / "scored.csv"
    source.write_text(",".join(EXAMPLE) + "\n" + ",".join(str(v) for v in EXAMPLE.values()) + "\n")
    proc = subprocess.run(["census-batch", str(source), "--output", str(out),
                           "--model-dir", str(d), "--params", str(ROOT / "params.yaml")],
                          capture_output=True, text=True, timeout=60, env=tool_env())
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{WEIGHTS} is not a regular file" in proc.stderr and not out.parent.exists(), proc.stderr
