"""The OpenAPI schema's view of errors: every operation lists the error responses it can give,
each with the body kidneyproject.api_errors gives them, and says in its own words what it
does."""

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny

# DRF refuses a NUL character in any text field (PostgreSQL cannot store one); the schema says
# so, or a client generated from it would send strings the API refuses.
NO_NUL_CHARACTER = "^[^\\u0000]*$"

# What a generic action does, where its method has no docstring of its own.
ACTION_DESCRIPTIONS = {
    "list": "Lists them, 50 a page (`page` for the next).",
    "retrieve": "One of them, by id.",
    "create": "Creates one.",
    "destroy": "Deletes one.",
}


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in a sentence for people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="The fields refused, each with its messages (nested ones as `name.0`).",
    )


class DocumentedErrorsSchema(AutoSchema):
    """AutoSchema plus the error responses each operation can give (those declared with
    extend_schema win): 409s named by the view's `conflicts` {action: why}, 413 and 415 for
    its `upload_actions` (415 for any other write: JSON bodies only)."""

    def get_description(self) -> str:
        own = super().get_description()
        action = getattr(self.view, "action", None)
        method = getattr(self.view, action, None) if action else None
        if action in ACTION_DESCRIPTIONS and not (method and method.__doc__):
            return f"{own}\n\n{ACTION_DESCRIPTIONS[action]}".strip()
        return own

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        error = {"application/json": {"schema": self._error_reference()}}
        for code, why in self._errors(path, method, operation):
            operation["responses"].setdefault(str(code), {"content": error, "description": why})
        return operation

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        refuses_nul = any(isinstance(v, ProhibitNullCharactersValidator) for v in field.validators)
        if direction == "request" and refuses_nul and schema.get("type") == "string":
            schema.setdefault("pattern", NO_NUL_CHARACTER)
        return schema

    def _insert_field_validators(self, field, schema):
        # drf-spectacular offers a blank text field with a pattern "" as a second branch of a
        # oneOf; this pattern matches "" itself, and "" would then match both branches.
        ours = schema.get("pattern") == NO_NUL_CHARACTER and schema.pop("pattern")
        super()._insert_field_validators(field, schema)
        if ours:
            constrained = schema["oneOf"][0] if "oneOf" in schema else schema
            constrained.setdefault("pattern", ours)

    def _error_reference(self) -> dict:
        return self.resolve_serializer(ErrorSerializer, "response").ref

    def _errors(self, path: str, method: str, operation: dict) -> list[tuple[int, str]]:
        errors = []
        writes = method.upper() in ("POST", "PUT", "PATCH")
        queried = any(p["in"] == "query" for p in operation.get("parameters", []))
        if writes or queried:
            errors.append((400, "The request is malformed or a field or parameter is invalid."))
        action = getattr(self.view, "action", None)
        upload = action in getattr(self.view, "upload_actions", ())
        if upload:
            errors.append((413, "The file is larger than the service accepts."))
            errors.append((415, "The file is not a PNG, JPEG or DICOM image it can read."))
        elif writes:
            errors.append((415, "The body is not JSON (an upload alone is multipart)."))
        if not any(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            errors.append((401, "No valid credentials: a missing, expired or revoked token."))
            errors.append((403, "The user's role does not allow this."))
        if "{" in path:
            errors.append((404, "No such object, or not one this user may see."))
        elif self._is_list_view() and self.view.pagination_class:
            errors.append((404, "No such page: `page` is past the last."))
        conflict = getattr(self.view, "conflicts", {}).get(action)
        if conflict:
            errors.append((409, conflict))
        if self.view.get_throttles():
            errors.append((429, "Too many requests; try again after Retry-After seconds."))
        errors.append((503, "A backing service (the database) is unavailable; try again."))
        return errors
