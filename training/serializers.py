from rest_framework import serializers

from training.models import ModelVersion


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "version",
            "status",
            "classes",
            "input_size",
            "preprocessing",
            "threshold",
            "metrics",
            "description",
            "created",
        ]
