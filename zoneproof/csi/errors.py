"""ECS errors as gRPC status codes the CSI sidecars act on."""

from __future__ import annotations

from typing import NoReturn

import grpc

from zoneproof.ecsapi import CloudError

_BY_PREFIX = (
    (("InvalidDiskId.NotFound", "InvalidInstanceId.NotFound"), grpc.StatusCode.NOT_FOUND),
    (("OperationDenied.NoStock", "InstanceDiskLimitExceeded", "InvalidOperation.MultiAttachLimitExceeded"),
     grpc.StatusCode.RESOURCE_EXHAUSTED),
    (("IncorrectDiskStatus", "IncorrectInstanceStatus", "OperationDenied"), grpc.StatusCode.FAILED_PRECONDITION),
    (("Invalid", "MissingParameter", "IdempotentParameterMismatch"), grpc.StatusCode.INVALID_ARGUMENT),
    (("Throttling", "ServiceUnavailable", "InternalError", "ConnectionFailure"), grpc.StatusCode.UNAVAILABLE),
)


def grpc_code(err: CloudError) -> grpc.StatusCode:
    for prefixes, code in _BY_PREFIX:
        if err.code.startswith(prefixes):
            return code
    return grpc.StatusCode.INTERNAL


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


def abort_cloud(context: grpc.ServicerContext, err: CloudError, doing: str) -> NoReturn:
    abort(context, grpc_code(err), f"{doing}: ECS {err.code}: {err.message}")
