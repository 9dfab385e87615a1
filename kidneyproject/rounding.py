"""Numbers as people read them: the API and the admin show four decimals, never
0.25795626640319824 or 2.177e-36 (the database keeps full precision)."""

from django.contrib import admin
from rest_framework import serializers

from ml_core.numbers import rounded


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
