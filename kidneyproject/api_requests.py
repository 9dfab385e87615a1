"""Requests held to what the OpenAPI schema says of them. DRF is lenient: it takes 0 for a
string and "5" for a number in a JSON body, and treats `?since=` as no filter, so a client
built from the schema could send what the schema forbids and never learn it. A form
(multipart or urlencoded) carries only strings, so DRF's own parsing applies there."""

from django.http import QueryDict
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser

# Checked in this order: a ChoiceField is a Field, a BooleanField is not an IntegerField, but
# Python's bool is an int.
JSON_TYPES = (
    (serializers.BooleanField, (bool,), "true or false"),
    (serializers.IntegerField, (int,), "a whole number"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.DecimalField, (int, float), "a number"),
    (serializers.ListField, (list,), "a list"),
    (serializers.DictField, (dict,), "an object"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.UUIDField, (str,), "a string"),
    (serializers.DateField, (str,), "a string"),
    (serializers.DateTimeField, (str,), "a string"),
)


def json_type_error(field: serializers.Field, value) -> str | None:
    """Why the value does not have the field's JSON type or length, or None when it has."""
    if value is None:
        return None if field.allow_null else "This field may not be null."
    for field_class, types, description in JSON_TYPES:
        if isinstance(field, field_class):
            if isinstance(value, bool) and bool not in types:
                return f"Must be {description}."
            if not isinstance(value, types):
                return f"Must be {description}."
            if isinstance(field, serializers.ListField):
                for item in value:
                    if error := json_type_error(field.child, item):
                        return error
            # Counted before DRF trims the whitespace, as the schema's maxLength counts.
            limit = getattr(field, "max_length", None)
            if isinstance(value, str) and limit is not None and len(value) > limit:
                return f"Ensure this field has no more than {limit} characters."
            return None
    return None


class RequestBodySerializer(serializers.Serializer):
    """A request body. From JSON, each field's value must have that field's JSON type."""

    def to_internal_value(self, data):
        if isinstance(data, dict) and not isinstance(data, QueryDict):
            wrong = {
                name: [error]
                for name, field in self.fields.items()
                if name in data and (error := json_type_error(field, data[name]))
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)


class QueryParametersSerializer(serializers.Serializer):
    """A list's filters, from the query string: a parameter given empty is refused, not taken
    for no filter (leave it out for that)."""

    def to_internal_value(self, data):
        blank = {name: ["Leave the parameter out, or give it a value."]
                 for name in self.fields if name in data and data[name] == ""}  # fmt: skip
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)


class ObjectJSONParser(JSONParser):
    """JSON bodies, which must be an object: every operation of the API takes one, and a bare
    `null` or list would otherwise reach the views as no body at all."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if not isinstance(data, dict):
            raise exceptions.ParseError("The body must be a JSON object.")
        return data


class PageNumbers(PageNumberPagination):
    """DRF's page numbers, 50 a page, where a page that is not a whole number from 1 is a bad
    request (400) and only a page past the last is not found (404)."""

    last_page_strings = ()
    invalid_page_message = "No page {page_number}: {message}."

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param, "1")
        number = int(raw) if raw.isascii() and raw.isdigit() else 0
        if number < 1:
            raise exceptions.ValidationError({"page": ["A page is a whole number from 1."]})
        return number

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
