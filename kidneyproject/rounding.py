"""Numbers as people read them: the API and the admin show four decimals, never
0.25795626640319824 or 2.177e-36 (the database keeps full precision)."""

from django.contrib import admin
from rest_framework import serializers

DIGITS = 4


def rounded(value, digits: int = DIGITS):
    """Floats rounded, inside dicts and lists too; everything else as it is."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item, digits) for item in value]
    return value


class RoundedFloatField(serializers.FloatField):
    def to_representation(self, value):
        return rounded(super().to_representation(value))


class RoundedJSONField(serializers.JSONField):
    def to_representation(self, value):
        return rounded(super().to_representation(value))


class RoundedPredictionNumbers:
    """Admin columns for a prediction's (or version's) numbers, rounded for reading."""

    @admin.display(description="probabilities")
    def rounded_probabilities(self, obj):
        return rounded(obj.probabilities)

    @admin.display(description="threshold")
    def rounded_threshold(self, obj):
        return rounded(obj.threshold)
