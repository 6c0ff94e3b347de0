"""Open Inference Protocol v2 (KServe / Triton) REST inference: request parsing and response encoding.

Tensors come as JSON (``data``: a flat row-major list, or nested lists) or, with the binary tensor
data extension, as raw little-endian bytes after the JSON header: the ``Inference-Header-Content-
Length`` header says where the JSON ends, and each binary input declares ``parameters.binary_data_size``.
Outputs are returned as JSON, or as binary when the request says ``parameters.binary_data_output``
(all outputs) or an output's ``parameters.binary_data``.

Everything a client can get wrong raises :class:`InferError` with a 4xx status and a message that
says what was expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

HEADER_LENGTH = "Inference-Header-Content-Length"
#: OIP datatype -> numpy dtype (little-endian) of the tensors distil accepts and returns.
DATATYPES = {"FP32": np.dtype("<f4")}
OUTPUTS = ("logits", "probabilities")


class InferError(Exception):
    """A bad inference request: ``status`` (4xx) and a message for the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


@dataclass
class ParsedInfer:
    """A validated request: the input batch and which outputs to send, each as binary or JSON."""

    x: np.ndarray
    id: str | None
    outputs: list[tuple[str, bool]]


def parse_infer(body: bytes, header_length: str | None, input_name: str, input_shape: tuple[int, ...], max_batch: int) -> ParsedInfer:
    """Check and decode an infer request for a model with one FP32 input ``input_name`` of ``input_shape``."""
    header, binary = _split_body(body, header_length)
    try:
        request = InferRequest.model_validate_json(header)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InferError(f"invalid inference request: {where}: {first['msg']}") from None
    if len(request.inputs) != 1:
        raise InferError(f"the model has one input, {input_name!r}; the request has {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.name != input_name:
        raise InferError(f"unknown input {tensor.name!r}; the model's input is {input_name!r}")
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise InferError(f"input {tensor.name!r} has datatype {tensor.datatype!r}; the model takes {', '.join(DATATYPES)}")
    shape = tuple(tensor.shape)
    if len(shape) != len(input_shape) + 1 or shape[1:] != input_shape or not 1 <= shape[0] <= max_batch:
        raise InferError(
            f"input {tensor.name!r} has shape {list(shape)}; expected [N, {', '.join(map(str, input_shape))}] with 1 <= N <= {max_batch}"
        )
    count = int(np.prod(shape))
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        x = _binary_tensor(tensor, size, binary, count, dtype)
    else:
        if binary:
            raise InferError(f"the body has {len(binary)} bytes after the JSON header, but no input declares binary_data_size")
        x = _json_tensor(tensor, count)
    default_binary = bool(request.parameters.get("binary_data_output", False))
    if request.outputs is None:
        outputs = [(name, default_binary) for name in OUTPUTS]
    else:
        outputs = []
        for out in request.outputs:
            if out.name not in OUTPUTS:
                raise InferError(f"unknown output {out.name!r}; the model's outputs are {', '.join(OUTPUTS)}")
            outputs.append((out.name, bool(out.parameters.get("binary_data", default_binary))))
    return ParsedInfer(x.reshape(shape), request.id, outputs)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise InferError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise InferError(f"{HEADER_LENGTH} is {length} but the body has {len(body)} bytes")
    return body[:length], body[length:]


def _binary_tensor(tensor: RequestInput, size: Any, binary: bytes, count: int, dtype: np.dtype) -> np.ndarray:
    if tensor.data is not None:
        raise InferError(f"input {tensor.name!r} has both data and binary_data_size; give one")
    expected = count * dtype.itemsize
    if isinstance(size, bool) or not isinstance(size, int) or size != expected:
        raise InferError(
            f"input {tensor.name!r}: binary_data_size is {size!r}, but shape {tensor.shape} of {tensor.datatype} needs {expected} bytes"
        )
    if len(binary) < size:
        raise InferError(f"input {tensor.name!r}: binary payload is {len(binary)} bytes, shorter than the declared {size}")
    if len(binary) > size:
        raise InferError(f"the body has {len(binary) - size} bytes after the declared binary data")
    return np.frombuffer(binary, dtype=dtype).astype(np.float32)


def _json_tensor(tensor: RequestInput, count: int) -> np.ndarray:
    if tensor.data is None:
        raise InferError(f"input {tensor.name!r} has neither data nor parameters.binary_data_size")
    try:
        values = np.asarray(tensor.data)
    except ValueError:
        raise InferError(f"input {tensor.name!r}: data is a ragged nested list") from None
    if values.dtype.kind not in "iuf":
        raise InferError(f"input {tensor.name!r}: data must be numbers (FP32), got {values.dtype.kind!r} values")
    if values.size != count:
        raise InferError(f"input {tensor.name!r}: data has {values.size} values, shape {tensor.shape} needs {count}")
    return values.astype(np.float32).ravel()


def encode_response(
    model_name: str, request_id: str | None, outputs: list[tuple[str, bool]], tensors: dict[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON only, or JSON header + binary tensors."""
    entries, blobs = [], []
    for name, binary in outputs:
        array = np.ascontiguousarray(tensors[name], dtype="<f4")
        entry: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
        if binary:
            blob = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": "1", "outputs": entries}
    if request_id is not None:
        response["id"] = request_id
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream", HEADER_LENGTH.lower(): str(len(header))}
