"""FIL backend against a real server: XGBoost, LightGBM and scikit-learn forests.

Each model is trained here on a small synthetic data set and saved in the format Triton's
FIL backend reads; results must equal the framework's own predictions. The same server
holds a corrupt model and a TensorRT plan, which must fail to load with clear reasons
while the rest serve.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from tests.e2e.framework_helpers import (
    PROTOCOLS,
    infer,
    infer_concurrently,
    model_config,
    model_metadata,
    model_states,
    write_config,
)
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

FEATURES = 6


def fil_config(
    name: str, model_type: str, output_dims: int, count: int = 1, **parameters: str
) -> str:
    params = "\n".join(
        f'  {{ key: "{key}" value: {{ string_value: "{value}" }} }},'
        for key, value in {"model_type": model_type, **parameters}.items()
    ).rstrip(",")
    return f"""
name: "{name}"
backend: "fil"
max_batch_size: 64
input [ {{ name: "input__0" data_type: TYPE_FP32 dims: [ {FEATURES} ] }} ]
output [ {{ name: "output__0" data_type: TYPE_FP32 dims: [ {output_dims} ] }} ]
instance_group [ {{ kind: KIND_CPU count: {count} }} ]
parameters [
{params}
]
"""


@dataclass
class Forests:
    xgb_binary: Any
    xgb_regression: Any
    lgb_multiclass: Any
    rf: Any


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(400, FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def forests(data: np.ndarray) -> Forests:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.ensemble import RandomForestClassifier

    binary = (data[:, 0] + data[:, 1] > 0).astype(int)
    classes = (data[:, 0] > 0).astype(int) + (data[:, 2] > 0.5).astype(int)
    target = data[:, 0] * 2 - data[:, 3]
    return Forests(
        xgb_binary=xgb.train(
            {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
            xgb.DMatrix(data, label=binary),
            num_boost_round=8,
        ),
        xgb_regression=xgb.train(
            {"objective": "reg:squarederror", "max_depth": 3, "nthread": 1},
            xgb.DMatrix(data, label=target),
            num_boost_round=8,
        ),
        lgb_multiclass=lgb.train(
            {"objective": "multiclass", "num_class": 3, "num_leaves": 7, "verbose": -1},
            lgb.Dataset(data, label=classes),
            num_boost_round=5,
        ),
        rf=RandomForestClassifier(n_estimators=6, max_depth=4, random_state=0).fit(data, binary),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, forests: Forests) -> Iterator[ServerProcess]:
    import treelite.sklearn

    root = tmp_path_factory.mktemp("fil")
    forests.xgb_binary.save_model(
        write_config(
            root, "xgb_json", fil_config("xgb_json", "xgboost_json", 1, predict_proba="true")
        )
        / "xgboost.json"
    )
    forests.xgb_binary.save_model(
        write_config(
            root,
            "xgb_ubj",
            fil_config("xgb_ubj", "xgboost_ubj", 1, output_class="true", threshold="0.3"),
        )
        / "xgboost.ubj"
    )
    # XGBoost 2.1+ writes UBJSON under the legacy name "xgboost.model" (and warns so).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        forests.xgb_regression.save_model(
            str(
                write_config(
                    root, "xgb_regression", fil_config("xgb_regression", "xgboost", 1, count=2)
                )
                / "xgboost.model"
            )
        )
    for name, extra in (("lgb_proba", {"predict_proba": "true"}), ("lgb_class", {})):
        dims = 3 if extra else 1
        config = fil_config(name, "lightgbm", dims, is_classifier="true", **extra)
        forests.lgb_multiclass.save_model(str(write_config(root, name, config) / "model.txt"))
    checkpoint = write_config(
        root,
        "sklearn_rf",
        fil_config(
            "sklearn_rf", "treelite_checkpoint", 2, output_class="true", predict_proba="true"
        ),
    )
    treelite.sklearn.import_model(forests.rf).serialize(str(checkpoint / "checkpoint.tl"))
    corrupt = write_config(root, "xgb_corrupt", fil_config("xgb_corrupt", "xgboost_json", 1))
    (corrupt / "xgboost.json").write_text("{not an xgboost model")
    plan = write_config(
        root,
        "trt_plan",
        'name: "trt_plan"\nplatform: "tensorrt_plan"\nmax_batch_size: 8\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
    )
    (plan / "model.plan").write_bytes(b"not a serialized engine")
    with ServerProcess([root], "--exit-on-error=false") as process:
        yield process


def _xgb_predict(booster: Any, rows: np.ndarray) -> np.ndarray:
    import xgboost as xgb

    return np.asarray(booster.predict(xgb.DMatrix(rows)), dtype=np.float32).reshape(-1, 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("rows", [1, 4])
def test_xgboost_json_probabilities_equal_xgboost(
    server: ServerProcess, forests: Forests, data: np.ndarray, protocol: str, rows: int
) -> None:
    batch = data[:rows]
    result = infer(server, protocol, "xgb_json", {"input__0": batch}, ["output__0"])
    assert result["output__0"].shape == (rows, 1)
    np.testing.assert_allclose(
        result["output__0"], _xgb_predict(forests.xgb_binary, batch), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_xgboost_ubj_classes_use_threshold(
    server: ServerProcess, forests: Forests, data: np.ndarray, protocol: str
) -> None:
    # The rows whose probabilities lie nearest 0.4, so that 0.3 and 0.5 disagree on some.
    nearest = np.argsort(np.abs(_xgb_predict(forests.xgb_binary, data)[:, 0] - 0.4))[:40]
    batch = data[nearest]
    result = infer(server, protocol, "xgb_ubj", {"input__0": batch}, ["output__0"])
    probabilities = _xgb_predict(forests.xgb_binary, batch)
    np.testing.assert_array_equal(result["output__0"], (probabilities > 0.3).astype(np.float32))
    assert not np.array_equal(result["output__0"], (probabilities > 0.5).astype(np.float32))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_xgboost_regressor_on_two_instances(
    server: ServerProcess, forests: Forests, data: np.ndarray, protocol: str
) -> None:
    config = model_config(server, "xgb_regression")
    assert config["instance_group"][0]["count"] == 2  # type: ignore[index]
    batches = [{"input__0": data[i * 4 : i * 4 + 4]} for i in range(8)]
    results = infer_concurrently(server, protocol, "xgb_regression", batches, ["output__0"])
    for batch, result in zip(batches, results, strict=True):
        expected = _xgb_predict(forests.xgb_regression, batch["input__0"])
        np.testing.assert_allclose(result["output__0"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_lightgbm_multiclass(
    server: ServerProcess, forests: Forests, data: np.ndarray, protocol: str
) -> None:
    batch = data[:4]
    expected = np.asarray(forests.lgb_multiclass.predict(batch), dtype=np.float32)
    proba = infer(server, protocol, "lgb_proba", {"input__0": batch}, ["output__0"])
    np.testing.assert_allclose(proba["output__0"], expected, rtol=1e-5, atol=1e-6)
    classes = infer(server, protocol, "lgb_class", {"input__0": batch}, ["output__0"])
    np.testing.assert_array_equal(
        classes["output__0"], expected.argmax(axis=1).astype(np.float32).reshape(-1, 1)
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sklearn_forest_from_treelite_checkpoint(
    server: ServerProcess, forests: Forests, data: np.ndarray, protocol: str
) -> None:
    batch = data[:4]
    result = infer(server, protocol, "sklearn_rf", {"input__0": batch}, ["output__0"])
    expected = forests.rf.predict_proba(batch).astype(np.float32)
    np.testing.assert_allclose(result["output__0"], expected, rtol=1e-5, atol=1e-6)


def test_metadata_and_config(server: ServerProcess) -> None:
    metadata = model_metadata(server, "lgb_proba")
    assert metadata["inputs"] == [{"name": "input__0", "datatype": "FP32", "shape": [-1, FEATURES]}]
    assert metadata["outputs"] == [{"name": "output__0", "datatype": "FP32", "shape": [-1, 3]}]
    config = model_config(server, "lgb_proba")
    assert config["backend"] == "fil"
    assert config["parameters"]["model_type"] == {"string_value": "lightgbm"}  # type: ignore[index]


def test_broken_models_report_reasons_while_others_serve(
    server: ServerProcess, data: np.ndarray
) -> None:
    states = model_states(server)
    assert states["xgb_json"]["state"] == "READY"
    corrupt = states["xgb_corrupt"]
    assert corrupt["state"] == "UNAVAILABLE"
    assert (
        "failed to load model 'xgb_corrupt' as FIL model_type 'xgboost_json'" in corrupt["reason"]
    )
    assert "xgboost.json" in corrupt["reason"]
    plan = states["trt_plan"]
    assert plan["state"] == "UNAVAILABLE"
    assert "backend 'tensorrt' is not available on this build/machine" in plan["reason"]
    assert "TensorRT needs an NVIDIA GPU" in plan["reason"]
    result = infer(server, "http", "xgb_json", {"input__0": data[:1]}, ["output__0"])
    assert result["output__0"].shape == (1, 1)
