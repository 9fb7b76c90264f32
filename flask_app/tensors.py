"""Open Inference Protocol (V2) tensors <-> the rows the validator takes. No Flask imports.

An infer request carries a batch in one of two ways:

- one tensor of shape ``[n, n_features]`` (FP64, FP32 or an integer type)
  whose columns are the model's features in order;
- one tensor per feature, named after it, of shape ``[n]`` (or ``[n, 1]``).

Tensor data is row-major, flat or nested. ``to_instances`` turns either form
into the ``{"instances": [...]}`` payload of ``POST /predict``, so both
protocols go through the same ``Validator`` and the same predict path; the
result also translates the validator's error locations back into the
tensors' terms (``inputs/input-0/3/CRIM``, ``inputs/CRIM/3``).

The log keeps request bodies as they were sent. Whatever reads logged bodies
back (the drift window, the dry-run replay) passes them through
``as_instances`` and ``logged_predictions``, so V2 requests count there like
``/predict`` requests.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidInput, ServiceError

FLOAT_TYPES = ("FP64", "FP32")
INT_RANGES = {
    "INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1), "UINT64": (0, 2**64 - 1),
}
DATATYPES = (*FLOAT_TYPES, *INT_RANGES)
MATRIX_INPUT = "input-0"
REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
TENSOR_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
MAX_REPORTED_ERRORS = 100
# Names shown in error locations are cut to this length.
MAX_NAME = 100


def output_names(task: str) -> list[str]:
    """The output tensors a model of this task answers with, in answer order."""
    names = ["predict", "predict_proba"] if task == "classification" else ["predict"]
    return [*names, "ood_score", "ood_flagged"]


def feature_datatype(feature: dict[str, Any]) -> str:
    return "INT64" if feature.get("dtype") == "int" else "FP64"


@dataclass
class TensorRequest:
    """An infer request translated into rows, with the way back for error locations."""

    payload: dict[str, Any]
    matrix_name: str | None
    feature_names: list[str]
    outputs: list[str] | None

    def locate(self, location: str) -> str:
        """A validator location (``instances/3/5``) in the request's own terms."""
        match = re.fullmatch(r"instances(?:/(\d+|\*)(?:/(.+))?)?", location)
        if not match:
            return location
        row, column = match.groups()
        feature = column
        if column is not None and column.isdigit() and int(column) < len(self.feature_names):
            feature = self.feature_names[int(column)]
        if self.matrix_name is not None:
            parts = [self.matrix_name, row, feature]
        else:
            parts = [feature, row] if feature is not None else [row]
        return "/".join(["inputs", *(str(part) for part in parts if part is not None)])

    def relocated(self, error: ServiceError) -> ServiceError:
        """The same error, its locations (and the words 'instances') in the tensors' terms."""
        for item in error.errors:
            location = item.get("location", "")
            new = self.locate(location)
            if new == location:
                continue
            item["location"] = new
            # The validator names the feature of an array cell in its message; the location names it now.
            label = re.search(r" \(([^()]+)\)$", item.get("message", ""))
            if label and label.group(1) in self.feature_names and label.group(1) in new.split("/"):
                item["message"] = item["message"][: label.start()]
        error.detail = error.detail.replace("'instances'", "the input tensors")
        return error


def to_instances(body: Any, features: list[str]) -> TensorRequest:
    """Translate an infer request into the rows of ``POST /predict``; InvalidInput lists every problem."""
    errors: list[dict[str, str]] = []
    if not isinstance(body, dict):
        raise InvalidInput("An infer request is a JSON object with 'inputs'.",
                           [{"location": "", "message": f"expected an object, got {_type_name(body)}"}])
    errors += [{"location": str(key)[:MAX_NAME], "message": "unknown key; an infer request takes "
                "'id', 'parameters', 'inputs' and 'outputs'"} for key in body if key not in REQUEST_KEYS]
    if "id" in body and not isinstance(body["id"], str):
        errors.append({"location": "id", "message": f"must be a string, got {_type_name(body['id'])}"})
    if "parameters" in body and not isinstance(body["parameters"], dict):
        errors.append({"location": "parameters", "message": "must be an object"})
    outputs = _requested_outputs(body.get("outputs"), errors)
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        message = "required" if tensors is None else (
            "must hold at least one tensor" if isinstance(tensors, list) else
            f"must be an array of tensors, got {_type_name(tensors)}")
        errors.insert(0, {"location": "inputs", "message": message})
        raise InvalidInput("The infer request cannot be used as it is.", errors)
    checked = [_check_tensor(index, tensor, features, errors) for index, tensor in enumerate(tensors)]
    if errors:
        raise InvalidInput("The infer request cannot be used as it is.", errors[:MAX_REPORTED_ERRORS])
    if len(checked) == 1 and len(checked[0].shape) == 2 and not (
            len(features) == 1 and checked[0].name == features[0] and checked[0].shape[1] == 1):
        rows = _matrix_rows(checked[0], len(features), features, errors)
        matrix_name = checked[0].label
    else:
        rows = _feature_rows(checked, features, errors)
        matrix_name = None
    if errors:
        raise InvalidInput("The infer request cannot be used as it is.", errors[:MAX_REPORTED_ERRORS])
    return TensorRequest({"instances": rows}, matrix_name, features, outputs)


def as_instances(body: Any, features: list[str]) -> Any:
    """A logged request body as the validator takes it: V2 bodies translated, others as they are.

    A V2 body that does not translate comes back as None, which no validator accepts.
    """
    if isinstance(body, dict) and "inputs" in body and "instances" not in body:
        try:
            return to_instances(body, features).payload
        except InvalidInput:
            return None
    return body


def logged_predictions(response_body: Any) -> list[Any] | None:
    """The predictions of a logged answer, from either protocol; None when it holds none."""
    if not isinstance(response_body, dict):
        return None
    if "predictions" in response_body:
        return response_body["predictions"]
    for output in response_body.get("outputs") or []:
        if isinstance(output, dict) and output.get("name") == "predict":
            return output.get("data")
    return None


def response_outputs(values: list[Any], probabilities: list[dict[str, float]] | None,
                     ood: list[dict[str, Any]], task: str, classes: list[int],
                     wanted: list[str] | None) -> list[dict[str, Any]]:
    """The output tensors of an answer, in the order ``output_names`` gives, or only those asked for."""
    n = len(values)
    tensors = {"predict": {"name": "predict", "datatype": "INT64" if task == "classification" else "FP64",
                           "shape": [n], "data": values}}
    if probabilities is not None:
        labels = [str(label) for label in classes]
        tensors["predict_proba"] = {
            "name": "predict_proba", "datatype": "FP64", "shape": [n, len(labels)],
            "data": [row[label] for row in probabilities for label in labels],
        }
    if ood:
        tensors["ood_score"] = {"name": "ood_score", "datatype": "FP64", "shape": [n],
                                "data": [item["score"] for item in ood]}
        tensors["ood_flagged"] = {"name": "ood_flagged", "datatype": "BOOL", "shape": [n],
                                  "data": [item["flagged"] for item in ood]}
    names = wanted if wanted is not None else output_names(task)
    return [tensors[name] for name in names if name in tensors]


# --- checking one tensor ----------------------------------------------------------


@dataclass
class _Tensor:
    name: str | None
    label: str
    datatype: str
    shape: list[int]
    values: list[float]


def _check_tensor(index: int, tensor: Any, features: list[str], errors: list[dict[str, str]]) -> _Tensor:
    if not isinstance(tensor, dict):
        errors.append({"location": f"inputs/{index}", "message": f"a tensor is an object, got {_type_name(tensor)}"})
        return _Tensor(None, str(index), "", [], [])
    name = tensor.get("name")
    label = name[:MAX_NAME] if isinstance(name, str) and name and "/" not in name else str(index)
    where = f"inputs/{label}"
    for key in tensor:
        if key not in TENSOR_KEYS:
            errors.append({"location": f"{where}/{str(key)[:MAX_NAME]}",
                           "message": "unknown key; a tensor takes 'name', 'shape', 'datatype', 'parameters', 'data'"})
    if not isinstance(name, str) or not name:
        errors.append({"location": f"{where}/name", "message": "required: a non-empty string"})
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        shown = f"{str(datatype)[:40]!r}" if datatype is not None else "missing"
        errors.append({"location": f"{where}/datatype",
                       "message": f"must be one of {', '.join(DATATYPES)}; got {shown}"})
        datatype = ""
    parameters = tensor.get("parameters", {})
    if not isinstance(parameters, dict):
        errors.append({"location": f"{where}/parameters", "message": "must be an object"})
    elif "binary_data_size" in parameters:
        errors.append({"location": f"{where}/parameters/binary_data_size",
                       "message": "binary tensor data is not supported; send the data as JSON "
                                  "(tritonclient: set_data_from_numpy(..., binary_data=False))"})
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and shape and all(type(d) is int and d >= 0 for d in shape)):
        errors.append({"location": f"{where}/shape", "message": "required: a list of non-negative integers"})
        shape = []
    if "data" not in tensor:
        errors.append({"location": f"{where}/data", "message": "required"})
        return _Tensor(name, label, datatype, shape, [])
    values = _flatten(tensor["data"])
    if values is None:
        errors.append({"location": f"{where}/data", "message": "must be an array (flat or nested) of numbers"})
        return _Tensor(name, label, datatype, shape, [])
    if shape and math.prod(shape) != len(values):
        errors.append({"location": f"{where}/data",
                       "message": f"holds {len(values)} values; shape {shape} takes {math.prod(shape)}"})
    elif datatype:
        values = _typed(values, datatype, where, shape, features, errors)
    return _Tensor(name, label, datatype, shape, values)


def _flatten(data: Any) -> list[Any] | None:
    if not isinstance(data, list):
        return None
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _typed(values: list[Any], datatype: str, where: str, shape: list[int], features: list[str],
           errors: list[dict[str, str]]) -> list[Any]:
    """The values as the datatype says (FP32 rounded to float32); problems located by row (and feature)."""
    width = shape[1] if len(shape) == 2 else 1
    columns = features if width == len(features) else [str(column) for column in range(width)]

    def position(flat: int) -> str:
        return f"{where}/{flat // width}/{columns[flat % width]}" if len(shape) == 2 else f"{where}/{flat}"

    if datatype in FLOAT_TYPES and set(map(type, values)) <= {int, float}:
        pass  # the common case, checked without a loop in Python
    else:
        _check_values(values, datatype, position, errors)
    if datatype == "FP32" and not errors:
        with np.errstate(over="ignore"):
            rounded = np.asarray(values, dtype=np.float32)
        if np.isfinite(rounded).all():
            return rounded.astype(float).tolist()
        errors.append({"location": f"{where}/data", "message": "a value overflows FP32"})
    return values


def _check_values(values: list[Any], datatype: str, position, errors: list[dict[str, str]]) -> None:
    for flat, value in enumerate(values):
        if type(value) not in (int, float):
            errors.append({"location": position(flat),
                           "message": f"{datatype} tensors hold numbers, got {_type_name(value)}"})
        elif datatype in INT_RANGES:
            low, high = INT_RANGES[datatype]
            if isinstance(value, float) and not value.is_integer():
                errors.append({"location": position(flat), "message": f"{datatype} tensors hold integers, got {value}"})
            elif not low <= value <= high:
                errors.append({"location": position(flat), "message": f"outside the {datatype} range {low}..{high}"})
        if len(errors) >= MAX_REPORTED_ERRORS:
            return


def _matrix_rows(tensor: _Tensor, n_features: int, features: list[str],
                 errors: list[dict[str, str]]) -> list[list[Any]]:
    n_rows, width = tensor.shape
    if width != n_features:
        errors.append({"location": f"inputs/{tensor.label}/shape",
                       "message": f"[{n_rows}, {width}]: the model takes {n_features} features per row "
                                  f"({', '.join(features)}), so the shape must be [n, {n_features}]"})
        return []
    values = tensor.values
    return [values[start:start + width] for start in range(0, len(values), width)]


def _feature_rows(tensors: list[_Tensor], features: list[str], errors: list[dict[str, str]]) -> list[list[Any]]:
    by_name: dict[str, _Tensor] = {}
    for tensor in tensors:
        if tensor.name not in features:
            hint = (f"one tensor of shape [n, {len(features)}]" if len(tensor.shape) == 2 else
                    f"tensors named after the features ({', '.join(features)})")
            errors.append({"location": f"inputs/{tensor.label}",
                           "message": f"not a feature of the model; send {hint}"})
        elif tensor.name in by_name:
            errors.append({"location": f"inputs/{tensor.label}", "message": "a second tensor for this feature"})
        else:
            by_name[tensor.name] = tensor
    for name in features:
        if name not in by_name:
            errors.append({"location": f"inputs/{name}", "message": "required: a tensor for every feature"})
    lengths = set()
    for tensor in by_name.values():
        if len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1):
            lengths.add(tensor.shape[0])
        else:
            errors.append({"location": f"inputs/{tensor.label}/shape",
                           "message": f"{tensor.shape}: a feature tensor has shape [n] or [n, 1]"})
    if len(lengths) > 1:
        errors.append({"location": "inputs", "message": f"the feature tensors differ in length: {sorted(lengths)}"})
    if errors:
        return []
    return [list(row) for row in zip(*(by_name[name].values for name in features), strict=True)]


def _requested_outputs(outputs: Any, errors: list[dict[str, str]]) -> list[str] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        errors.append({"location": "outputs", "message": f"must be an array, got {_type_name(outputs)}"})
        return None
    names = []
    for index, output in enumerate(outputs):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            errors.append({"location": f"outputs/{index}", "message": "an output is an object with a 'name'"})
            continue
        unknown = sorted(set(output) - {"name", "parameters"})
        if unknown:
            errors.append({"location": f"outputs/{index}/{unknown[0][:MAX_NAME]}",
                           "message": "unknown key; an output takes 'name' and 'parameters'"})
        if "parameters" in output and not isinstance(output["parameters"], dict):
            errors.append({"location": f"outputs/{index}/parameters", "message": "must be an object"})
        names.append(output["name"])
    return names


def check_outputs(request: TensorRequest, task: str) -> None:
    """Refuse output names the model does not have (400, naming them)."""
    if request.outputs is None:
        return
    known = output_names(task)
    errors = [{"location": f"outputs/{index}/name",
               "message": f"no output {name[:MAX_NAME]!r}; the model has {', '.join(known)}"}
              for index, name in enumerate(request.outputs) if name not in known]
    if errors:
        raise InvalidInput("The infer request asks for outputs the model does not have.", errors)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)
