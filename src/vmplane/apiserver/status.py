"""Errors at the HTTP edge: every failure becomes a Kubernetes ``Status`` object.

Handlers raise :class:`ApiError` (built by the constructors below, whose messages are Kubernetes'
own) or let Store and admission errors through; :func:`from_exception` maps those in one place.
"""

from __future__ import annotations

from typing import Any

from vmplane.api import errors as api_errors
from vmplane.apiserver.registry import ResourceType
from vmplane.store import base as store_errors
from vmplane.store.base import JsonObject

__all__ = [
    "ApiError",
    "already_exists",
    "bad_request",
    "conflict",
    "expired",
    "forbidden",
    "from_exception",
    "invalid",
    "method_not_allowed",
    "namespace_terminating",
    "not_acceptable",
    "not_found",
    "path_not_found",
    "status_object",
    "too_large",
    "unauthorized",
    "unsupported_media_type",
]


def status_object(
    *, code: int, reason: str, message: str, details: JsonObject | None = None, success: bool = False
) -> JsonObject:
    """A ``v1 Status`` body."""
    body: JsonObject = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if success else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    if success:
        del body["message"], body["reason"]
    return body


class ApiError(Exception):
    """A request that fails with a ``Status``; ``status`` is the body, ``code`` the HTTP status."""

    def __init__(self, *, code: int, reason: str, message: str, details: JsonObject | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status_object(code=code, reason=reason, message=message, details=details)


def _details(resource_type: ResourceType, name: str, **extra: Any) -> JsonObject:
    details: JsonObject = {"name": name, "kind": resource_type.plural}
    if resource_type.group:
        details["group"] = resource_type.group
    details.update(extra)
    return details


def not_found(resource_type: ResourceType, name: str) -> ApiError:
    return ApiError(
        code=404,
        reason="NotFound",
        message=f'{resource_type.store_resource} "{name}" not found',
        details=_details(resource_type, name),
    )


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(
        code=404,
        reason="NotFound",
        message=f'namespaces "{namespace}" not found',
        details={"name": namespace, "kind": "namespaces"},
    )


def path_not_found() -> ApiError:
    return ApiError(
        code=404, reason="NotFound", message="the server could not find the requested resource", details={}
    )


def already_exists(resource_type: ResourceType, name: str) -> ApiError:
    return ApiError(
        code=409,
        reason="AlreadyExists",
        message=f'{resource_type.store_resource} "{name}" already exists',
        details=_details(resource_type, name),
    )


def conflict(resource_type: ResourceType, name: str) -> ApiError:
    return ApiError(
        code=409,
        reason="Conflict",
        message=(
            f'Operation cannot be fulfilled on {resource_type.store_resource} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again"
        ),
        details=_details(resource_type, name),
    )


def invalid(resource_type: ResourceType, name: str, causes: list[api_errors.FieldCause]) -> ApiError:
    parts = [f"{c.field}: {c.message}" for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(
        resource_type,
        name,
        causes=[{"reason": c.reason.value, "message": c.message, "field": c.field} for c in causes],
    )
    details["kind"] = resource_type.kind
    return ApiError(
        code=422,
        reason="Invalid",
        message=f'{resource_type.qualified_kind} "{name}" is invalid: {summary}',
        details=details,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(code=400, reason="BadRequest", message=message)


def unauthorized() -> ApiError:
    return ApiError(code=401, reason="Unauthorized", message="Unauthorized")


def forbidden(message: str) -> ApiError:
    return ApiError(code=403, reason="Forbidden", message=message)


def namespace_terminating(resource_type: ResourceType, name: str, namespace: str) -> ApiError:
    """A create in a namespace being deleted, as the ``NamespaceLifecycle`` admission plugin refuses it."""
    cause = {
        "reason": "NamespaceTerminating",
        "message": f"namespace {namespace} is being terminated",
        "field": "metadata.namespace",
    }
    return ApiError(
        code=403,
        reason="Forbidden",
        message=f'{resource_type.store_resource} "{name}" is forbidden: unable to create new content in '
        f"namespace {namespace} because it is being terminated",
        details=_details(resource_type, name, causes=[cause]),
    )


def method_not_allowed() -> ApiError:
    return ApiError(
        code=405,
        reason="MethodNotAllowed",
        message="the server does not allow this method on the requested resource",
    )


def expired(message: str) -> ApiError:
    return ApiError(code=410, reason="Expired", message=message)


def too_large(limit: int) -> ApiError:
    return ApiError(
        code=413, reason="RequestEntityTooLarge", message=f"Request entity too large: limit is {limit}"
    )


def unsupported_media_type(accepted: list[str]) -> ApiError:
    return ApiError(
        code=415,
        reason="UnsupportedMediaType",
        message="the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def not_acceptable(accepted: list[str]) -> ApiError:
    return ApiError(
        code=406,
        reason="NotAcceptable",
        message="only the following media types are accepted: " + ", ".join(accepted),
    )


def from_exception(err: Exception, resource_type: ResourceType, name: str) -> ApiError:
    """Map a Store or admission error to its ``Status``; anything else becomes 500."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, store_errors.NotFoundError):
        return not_found(resource_type, name)
    if isinstance(err, store_errors.AlreadyExistsError):
        return already_exists(resource_type, name)
    if isinstance(err, store_errors.ConflictError):
        return conflict(resource_type, name)
    if isinstance(err, store_errors.ExpiredError):
        return expired(str(err) or "too old resource version")
    if isinstance(err, api_errors.InvalidObjectError):
        return invalid(resource_type, name, err.causes)
    if isinstance(err, store_errors.InvalidObjectError):
        return bad_request(str(err))
    return ApiError(code=500, reason="InternalError", message=f"Internal error occurred: {err}")
