"""Deployment runtime: the I/O contract (:mod:`io_spec`), ONNX export, and (later) inference backends.

Every backend binds tensors by the names in :class:`lbi_ros.runtime.io_spec.IOSpec`, never by position.
onnx, onnxruntime and TensorRT are imported inside the functions that use them.
"""
