"""Open Inference Protocol v2 (KServe / Triton) REST inference: request parsing and response encoding.

Tensors come as JSON (``data``: a flat row-major list, or nested lists; strings for BYTES) or, with
the binary tensor data extension, as raw little-endian bytes after the JSON header (a BYTES element:
a 4-byte little-endian length, then its bytes): the ``Inference-Header-Content-
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
#: OIP datatype -> numpy dtype (little-endian) of the numeric tensors distil accepts and returns.
NUMERIC = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8")}
#: What each input datatype distil serves holds, for messages.
MEANING = {"FP32": "a float32 tensor", "BYTES": "raw UTF-8 strings"}
#: The bytes of the length prefix of each element of a binary BYTES tensor (little-endian uint32).
BYTES_PREFIX = 4


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
    """A validated request: the input's values and shape, and which outputs to send, each as binary or JSON.

    ``values``: float32, flat, for FP32; one ``bytes`` per element for BYTES.
    """

    values: np.ndarray | list[bytes]
    shape: tuple[int, ...]
    id: str | None
    outputs: list[tuple[str, bool]]


def parse_infer(body: bytes, header_length: str | None, input_name: str, datatype: str, output_names: tuple[str, ...]) -> ParsedInfer:
    """Check and decode an infer request for a model with one input ``input_name`` of ``datatype`` (FP32 or BYTES).

    The shape is checked against the data here only; whether it suits the model is the model input's
    business (:meth:`distil.serve.inputs.TensorInput.from_oip`).
    """
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
    if tensor.datatype != datatype:
        raise InferError(
            f"input {tensor.name!r} has datatype {tensor.datatype!r}; the model takes {datatype} ({MEANING.get(datatype, datatype)}) as input {input_name!r}"
        )
    if tensor.name != input_name:
        raise InferError(f"unknown input {tensor.name!r}; the model's input is {input_name!r}")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise InferError(f"input {tensor.name!r} has shape {list(shape)}; every dimension must be 0 or more")
    count = int(np.prod(shape))
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        if tensor.data is not None:
            raise InferError(f"input {tensor.name!r} has both data and binary_data_size; give one")
        values = _binary_bytes(tensor, size, binary, count) if datatype == "BYTES" else _binary_tensor(tensor, size, binary, count, NUMERIC[datatype])
    else:
        if binary:
            raise InferError(f"the body has {len(binary)} bytes after the JSON header, but no input declares binary_data_size")
        values = _json_bytes(tensor, count) if datatype == "BYTES" else _json_tensor(tensor, count)
    default_binary = bool(request.parameters.get("binary_data_output", False))
    if request.outputs is None:
        outputs = [(name, default_binary) for name in output_names]
    else:
        outputs = []
        for out in request.outputs:
            if out.name not in output_names:
                raise InferError(f"unknown output {out.name!r}; the model's outputs are {', '.join(output_names)}")
            outputs.append((out.name, bool(out.parameters.get("binary_data", default_binary))))
    return ParsedInfer(values, shape, request.id, outputs)


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


def _binary_bytes(tensor: RequestInput, size: Any, binary: bytes, count: int) -> list[bytes]:
    """A binary BYTES tensor: ``count`` elements, each a 4-byte little-endian length and that many bytes."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InferError(f"input {tensor.name!r}: binary_data_size must be a non-negative integer, got {size!r}")
    if len(binary) < size:
        raise InferError(f"input {tensor.name!r}: binary payload is {len(binary)} bytes, shorter than the declared {size}")
    if len(binary) > size:
        raise InferError(f"the body has {len(binary) - size} bytes after the declared binary data")
    elements, at = [], 0
    for i in range(count):
        if at + BYTES_PREFIX > size:
            raise InferError(
                f"input {tensor.name!r}: the binary data ends before element {i} of {count}; "
                f"each BYTES element is a {BYTES_PREFIX}-byte little-endian length followed by that many bytes"
            )
        length = int.from_bytes(binary[at : at + BYTES_PREFIX], "little")
        at += BYTES_PREFIX
        if at + length > size:
            raise InferError(f"input {tensor.name!r}: element {i} declares {length} bytes, but only {size - at} remain in binary_data_size")
        elements.append(binary[at : at + length])
        at += length
    if at != size:
        raise InferError(f"input {tensor.name!r}: shape {tensor.shape} holds {count} elements in {at} bytes, but binary_data_size is {size}")
    return elements


def _json_bytes(tensor: RequestInput, count: int) -> list[bytes]:
    """A JSON BYTES tensor: ``data`` a flat (or nested) list of ``count`` strings, encoded as UTF-8."""
    if tensor.data is None:
        raise InferError(f"input {tensor.name!r} has neither data nor parameters.binary_data_size")
    flat: list[Any] = []
    stack = [tensor.data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    bad = next((v for v in flat if not isinstance(v, str)), None)
    if bad is not None:
        raise InferError(f"input {tensor.name!r}: data must be strings (BYTES), got {type(bad).__name__} {bad!r}")
    if len(flat) != count:
        raise InferError(f"input {tensor.name!r}: data has {len(flat)} strings, shape {tensor.shape} needs {count}")
    # surrogatepass: a lone surrogate ("\ud800" in JSON) becomes bytes that are not UTF-8, refused by the model's input
    return [v.encode("utf-8", "surrogatepass") for v in flat]


def encode_response(
    model_name: str,
    request_id: str | None,
    outputs: list[tuple[str, bool]],
    tensors: dict[str, np.ndarray],
    model_version: str = "1",
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON only, or JSON header + binary tensors.

    ``tensors``: float arrays are sent as FP32, integer arrays as INT64, arrays of ``str`` (dtype
    object) as BYTES (UTF-8; binary: each element length-prefixed).
    """
    entries, blobs = [], []
    for name, binary in outputs:
        datatype, payload = _output(tensors[name], binary)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(np.shape(tensors[name]))}
        if isinstance(payload, bytes):
            entry["parameters"] = {"binary_data_size": len(payload)}
            blobs.append(payload)
        else:
            entry["data"] = payload
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request_id is not None:
        response["id"] = request_id
    if parameters:
        response["parameters"] = parameters
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream", HEADER_LENGTH.lower(): str(len(header))}


def _output(tensor: np.ndarray, binary: bool) -> tuple[str, list[Any] | bytes]:
    """An output's OIP datatype and its values: the binary encoding, or a flat JSON list."""
    array = np.asarray(tensor)
    if array.dtype == object:
        texts = [str(v) for v in array.ravel()]
        if not binary:
            return "BYTES", texts
        encoded = [t.encode("utf-8") for t in texts]
        return "BYTES", b"".join(len(e).to_bytes(BYTES_PREFIX, "little") + e for e in encoded)
    datatype = "INT64" if array.dtype.kind in "iu" else "FP32"
    array = np.ascontiguousarray(array, dtype=NUMERIC[datatype])
    return datatype, array.tobytes() if binary else array.ravel().tolist()
