from rest_framework import serializers

from scans.models import Prediction, Scan


class ScanUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A CT slice: PNG or JPEG.")


class ScanAcceptedSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="scan-detail")

    class Meta:
        model = Scan
        fields = ["id", "status", "url"]


class PredictionSerializer(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version.version")

    class Meta:
        model = Prediction
        fields = [
            "label",
            "probabilities",
            "model_version",
            "threshold",
            "inference_ms",
            "batch_size",
            "created",
        ]


class ScanSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="scan-detail")
    prediction = serializers.SerializerMethodField()

    class Meta:
        model = Scan
        fields = [
            "id",
            "url",
            "status",
            "error",
            "prediction",
            "content_type",
            "width",
            "height",
            "sha256",
            "created",
        ]

    def get_prediction(self, scan: Scan) -> PredictionSerializer(allow_null=True):
        prediction = getattr(scan, "prediction", None)
        return PredictionSerializer(prediction).data if prediction else None
