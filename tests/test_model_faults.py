"""Fault injection: every way a model folder can be broken or tampered with is refused at load, with a reason.

Each case copies a small real model (the `quick_model` fixture), breaks one thing and loads it. Cases marked
"rehashed" also recompute the content hash, as a buggy training run would have written it: those must be caught
by the structural checks or the known record, not by the hash. tests/api/test_faults.py shows some of them
stopping a real uvicorn with one line and exit status 3.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from census_income.predict import ModelFilesError, Predictor, content_hash


def rehash(d: Path) -> None:
    "Recompute the manifest's version from the files, as a training run that wrote them would have."
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["version"] = content_hash((d / "weights.safetensors").read_bytes(), (d / "encoder.json").read_bytes(),
                                       manifest["threshold"], manifest.get("baseline"))
    (d / "manifest.json").write_text(json.dumps(manifest))


def edit_json(d: Path, name: str, change) -> None:
    data = json.loads((d / name).read_text())
    change(data)
    (d / name).write_text(json.dumps(data, indent=1))


def edit_weights(d: Path, change) -> None:
    tensors = load_file(str(d / "weights.safetensors"))
    change(tensors)
    save_file(tensors, str(d / "weights.safetensors"))


def last(tensors: dict) -> int:
    "Index of the last Linear layer in each member's `net`."
    return max(int(k.split(".")[3]) for k in tensors if k.startswith("members.0.net."))


def members(tensors: dict) -> range:
    return range(1 + max(int(k.split(".")[1]) for k in tensors if k.startswith("members.")))


def flip_bytes(d):
    data = bytearray((d / "weights.safetensors").read_bytes())
    for i in range(len(data) - 400, len(data) - 300):
        data[i] ^= 0xFF
    (d / "weights.safetensors").write_bytes(bytes(data))


def swap_sex(state):
    state["categorical"]["sex"] = state["categorical"]["sex"][::-1]


def set_last_width(width: int):
    def change(t):
        k = last(t)
        for m in members(t):
            t[f"members.{m}.net.{k}.weight"] = np.zeros((width, t[f"members.{m}.net.{k}.weight"].shape[1]), np.float32)
            t[f"members.{m}.net.{k}.bias"] = np.zeros(width, np.float32)
    return change


def nan_weight(t):
    t["members.0.net.0.weight"][0, 0] = np.nan


def nan_frequency(t):
    t["members.1.embed.frequencies"][2, 0] = np.nan


def bias_nudge(t):
    t["members.0.net.0.bias"][0] += 0.5


def inner_mismatch(t):
    for m in members(t):
        t[f"members.{m}.net.0.weight"] = t[f"members.{m}.net.0.weight"][:-1]
        t[f"members.{m}.net.0.bias"] = t[f"members.{m}.net.0.bias"][:-1]


def drop_last_member(t):
    gone = max(members(t))
    for k in [k for k in t if k.startswith(f"members.{gone}.")]:
        del t[k]


def set_temperature(value: float):
    def change(t):
        t["temperature"] = np.array(value, np.float32)
    return change


CASES = {  # name: (how to break a copy, rehash?, what the refusal says)
    "flipped bytes in the weights": (flip_bytes, False, "the files hash to"),
    "a bias changed": (lambda d: edit_weights(d, bias_nudge), False, "the files hash to"),
    "sex categories swapped in encoder.json": (lambda d: edit_json(d, "encoder.json", swap_sex), False, "the files hash to"),
    "version edited in manifest.json": (lambda d: edit_json(d, "manifest.json", lambda m: m.update(version="0" * 12)),
                                        False, "but manifest.json says version '000000000000'"),
    "a numeric version": (lambda d: edit_json(d, "manifest.json", lambda m: m.update(version=123)), False, "says version 123"),
    "a last layer two wide": (lambda d: edit_weights(d, set_last_width(2)), True, "the last layer gives 2 outputs"),
    "a last layer of width 0": (lambda d: edit_weights(d, set_last_width(0)), True, "the last layer gives 0 outputs"),
    "a NaN weight": (lambda d: edit_weights(d, nan_weight), True, "layer 1 holds a non-finite weight or bias"),
    "an inner layer that does not chain": (lambda d: edit_weights(d, inner_mismatch), True, "layer 2 has weights"),
    "a NaN frequency in one member's embeddings": (lambda d: edit_weights(d, nan_frequency), True,
                                                  "the embeddings hold a non-finite number"),
    "a member missing": (lambda d: edit_weights(d, drop_last_member), True, "the known record scores"),
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
        False, "the known record scores"),
    "no known record": (lambda d: edit_json(d, "manifest.json", lambda m: m.pop("check")), False, "no known record"),
    "a baseline record edited": (lambda d: edit_json(d, "manifest.json", lambda m: m["baseline"].update(age=90)), False,
                                 "the files hash to"),
    "a baseline with an unknown category, rehashed": (
        lambda d: edit_json(d, "manifest.json", lambda m: m["baseline"].update(race="Martian")), True,
        "the baseline record in manifest.json is not a census record: record 0: race: 'Martian' is not an allowed value"),
    "weights that are not safetensors": (lambda d: (d / "weights.safetensors").write_bytes(b"\x00garbage" * 10), True,
                                         "unusable: SafetensorError"),
    "a truncated manifest": (lambda d: (d / "manifest.json").write_text('{"version": '), False, "JSONDecodeError"),
    "no encoder file": (lambda d: (d / "encoder.json").unlink(), False, "model file missing in"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_model_folder_is_refused_with_its_reason(quick_model, tmp_path, case):
    breaks, rehashed, reason = CASES[case]
    d = Path(shutil.copytree(quick_model, tmp_path / "model"))
    breaks(d)
    if rehashed:
        rehash(d)
    with pytest.raises(ModelFilesError) as err:
        Predictor.load(d)
    message = str(err.value)
    assert reason in message, message
    assert str(d) in message and "\n" not in message


def test_the_untouched_model_loads_and_proves_itself(quick_model):
    predictor = Predictor.load(quick_model)
    check = predictor.manifest["check"]
    assert predictor.predict_records([check["record"]])[0]["probability"] == pytest.approx(check["probability"], abs=1e-6)
