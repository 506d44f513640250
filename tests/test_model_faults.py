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

from census_income.predict import MANIFEST, WEIGHTS, ModelFilesError, Predictor, content_hash, layer_name


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
    t["members.1.embed.frequencies"][2, 0] = np.nan


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
    "a member missing": (lambda d: edit_weights(d, drop_last_member), True,
                         f"{WEIGHTS} does not hold the 3-member ensemble"),
    "a tensor the architecture does not have": (lambda d: edit_weights(d, extra_layer), True,
                                                "unexpected ['members.0.net."),
    "an architecture with a wrong count of numbers": (
        lambda d: edit_json(d, MANIFEST, lambda m: m["architecture"].update(n_numeric=5)), False,
        "the architecture says 5 numbers per row; the schema has 6"),
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
