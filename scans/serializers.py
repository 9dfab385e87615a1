from rest_framework import serializers

from kidneyproject.rounding import RoundedFloatField, RoundedJSONField
from scans.models import Prediction, ReviewEvent, Scan


class ScanUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="A CT slice: PNG, JPEG or DICOM (stored de-identified).", allow_empty_file=True
    )
    frame = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="For a multi-frame DICOM file: the frame to classify (0-based).",
    )


class ScanAcceptedSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="scan-detail")

    class Meta:
        model = Scan
        fields = ["id", "status", "url"]


class PredictionSerializer(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version.version")
    probabilities = RoundedJSONField(read_only=True)
    abnormal_score = RoundedFloatField(read_only=True)
    threshold = RoundedFloatField(read_only=True)
    inference_ms = RoundedFloatField(read_only=True)

    class Meta:
        model = Prediction
        fields = [
            "label",
            "probabilities",
            "abnormal_score",
            "model_version",
            "threshold",
            "inference_ms",
            "batch_size",
            "heatmap_signal",
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
            "confirmed_label",
            "confirmed_at",
            "review_version",
            "content_type",
            "width",
            "height",
            "study_reference",
            "sha256",
            "created",
        ]

    def get_prediction(self, scan: Scan) -> PredictionSerializer(allow_null=True):
        prediction = getattr(scan, "prediction", None)
        return PredictionSerializer(prediction).data if prediction else None


class ReviewRequestSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=32)
    note = serializers.CharField(required=False, allow_blank=True, default="")
    version = serializers.IntegerField(
        min_value=0, help_text="The scan's review_version you read: a stale write gets 409."
    )


class ReviewUndoSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        min_value=0, help_text="The scan's review_version you read: a stale undo gets 409."
    )


class ReviewEventSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username")
    model_version = serializers.IntegerField(source="model_version.version", allow_null=True)

    class Meta:
        model = ReviewEvent
        fields = [
            "id",
            "reviewer",
            "created",
            "old_label",
            "new_label",
            "note",
            "source",
            "model_version",
            "model_label",
            "model_probabilities",
        ]


class ReviewQueueItemSerializer(ScanSerializer):
    positive = serializers.SerializerMethodField(help_text="The model called it abnormal.")
    margin = serializers.FloatField(help_text="|P(abnormal) - threshold|: smaller is less sure.")

    class Meta(ScanSerializer.Meta):
        fields = [*ScanSerializer.Meta.fields, "positive", "margin"]

    def get_positive(self, scan: Scan) -> bool:
        return scan.prediction.abnormal_score >= scan.prediction.threshold


class ReviewQueueFilterSerializer(serializers.Serializer):
    positive = serializers.BooleanField(required=False, allow_null=True, default=None)
    model_version = serializers.IntegerField(required=False, min_value=1)
    since = serializers.DateField(required=False)
