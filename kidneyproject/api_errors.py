"""One error shape for every answer under /api/: {"detail": "a sentence for people"}, plus
"fields" {"name": ["message", ...]} when particular fields were refused. Clients generated
from the OpenAPI schema read errors one way, whatever refused the request: a serializer, a
parser, the router (an unknown path or id), pagination or a view."""

from django.http import JsonResponse
from django.views import defaults

API_PREFIX = "/api/"
# DRF's keys for messages that belong to no one field; they go into detail.
NON_FIELD_KEYS = ("detail", "non_field_errors")


def flattened_messages(errors, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested field errors ({"stone_slices": {0: ["..."]}}) -> {"stone_slices.0": [...]}."""
    if isinstance(errors, list) and any(isinstance(item, dict | list) for item in errors):
        errors = {index: value for index, value in enumerate(errors) if value}
    if isinstance(errors, dict):
        flat = {}
        for key, value in errors.items():
            flat.update(flattened_messages(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    messages = errors if isinstance(errors, list) else [errors]
    return {prefix: [str(message) for message in messages]}


def error_body(data) -> dict:
    """DRF's error data, whatever its shape -> {"detail": ..., "fields"?: ...}. Other keys a
    view added beside detail (the active run, the review version) are kept."""
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        return data
    if not isinstance(data, dict):
        return {"detail": " ".join(flattened_messages(data).get("", [])) or "Invalid input."}
    general = [str(m) for key in NON_FIELD_KEYS for m in flattened_messages(data.get(key, []))[""]]
    fields = flattened_messages({k: v for k, v in data.items() if k not in NON_FIELD_KEYS})
    described = [f"{name}: {' '.join(messages)}" for name, messages in fields.items()]
    body = {"detail": " ".join(general + described) or "Invalid input."}
    if fields:
        body["fields"] = fields
    return body


def api_exception_handler(exc, context):
    # Imported here: DRF's views read the settings, which name this module.
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is not None:
        response.data = error_body(response.data)
    return response


def bad_request(request, exception):
    """Django's 400 page (a request it cannot even parse: too many query parameters), but
    JSON under /api/."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "The request could not be read."}, status=400)
    return defaults.bad_request(request, exception)


def not_found(request, exception):
    """Django's 404 page, but JSON in the API's error shape under /api/ (an unknown path, or
    an id the route does not accept)."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"detail": "A server error occurred."}, status=500)
    return defaults.server_error(request)
