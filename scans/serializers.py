from django.conf import settings
from rest_framework import serializers

from kidneyproject.api_requests import QueryParametersSerializer, RequestBodySerializer
from kidneyproject.rounding import RoundedFloatField, RoundedJSONField
from scans import selectors
from scans.models import DECISION_SUPPORT_NOTICE, Prediction, ReviewEvent, Scan, Study


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
            "runtime",
            "heatmap_signal",
            "heatmap_method",
            "created",
        ]


class SameImageReviewSerializer(serializers.Serializer):
    scan = serializers.UUIDField(source="pk")
    label = serializers.CharField(source="confirmed_label")
    reviewer = serializers.CharField(source="confirmed_by.username", default="")
    confirmed_at = serializers.DateTimeField()


class SameImageReviewsMixin(serializers.Serializer):
    same_image_reviews = serializers.SerializerMethodField(
        help_text="Other scans of the same image (the same bytes) with a confirmed label, "
        "among those the caller sees. Where their labels differ, none of them is trained on."
    )

    def _scan_id(self, instance):
        return instance.pk

    def _scan(self, instance) -> Scan:
        return instance

    def get_same_image_reviews(self, instance) -> SameImageReviewSerializer(many=True):
        """A list view puts every item's in the context at once (same_image, by scan pk)."""
        listed = self.context.get("same_image")
        request = self.context.get("request")
        if listed is not None:
            others = listed[self._scan_id(instance)]
        elif request is not None:
            scan = self._scan(instance)
            visible = selectors.scans_visible_to(request.user)
            others = selectors.same_image_reviews([scan], visible)[scan.pk]
        else:
            others = []
        return SameImageReviewSerializer(others, many=True).data


class ScanSerializer(SameImageReviewsMixin, serializers.ModelSerializer):
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
            "same_image_reviews",
        ]

    def get_prediction(self, scan: Scan) -> PredictionSerializer(allow_null=True):
        prediction = getattr(scan, "prediction", None)
        return PredictionSerializer(prediction).data if prediction else None


class ReviewRequestSerializer(RequestBodySerializer):
    label = serializers.ChoiceField(choices=(), help_text="One of the service's KIDNEY_CLASSES.")
    note = serializers.CharField(required=False, allow_blank=True, default="")
    version = serializers.IntegerField(
        min_value=0, help_text="The scan's review_version you read: a stale write gets 409."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = settings.KIDNEY_CLASSES


class ReviewUndoSerializer(RequestBodySerializer):
    version = serializers.IntegerField(
        min_value=0, help_text="The scan's review_version you read: a stale undo gets 409."
    )


class ReviewEventSerializer(SameImageReviewsMixin, serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username")
    model_version = serializers.IntegerField(source="model_version.version", allow_null=True)

    def _scan_id(self, event):
        return event.scan_id

    def _scan(self, event) -> Scan:
        return event.scan

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
            "same_image_reviews",
        ]


class ReviewQueueItemSerializer(ScanSerializer):
    positive = serializers.SerializerMethodField(help_text="The model called it abnormal.")
    margin = serializers.FloatField(help_text="|P(abnormal) - threshold|: smaller is less sure.")

    class Meta(ScanSerializer.Meta):
        fields = [*ScanSerializer.Meta.fields, "positive", "margin"]

    def get_positive(self, scan: Scan) -> bool:
        return scan.prediction.abnormal_score >= scan.prediction.threshold


class ScanFilterSerializer(QueryParametersSerializer):
    status = serializers.ChoiceField(choices=Scan.Status.choices, required=False)
    label = serializers.CharField(required=False, help_text="Predicted label.")


class ReviewQueueFilterSerializer(QueryParametersSerializer):
    positive = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="true: only scans flagged abnormal"
    )
    model_version = serializers.IntegerField(
        required=False, min_value=1, help_text="Predicted by this version"
    )
    since = serializers.DateField(required=False, help_text="Predicted on or after this date")


class StudySerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="study-detail")
    model_version = serializers.IntegerField(
        source="model_version.version", allow_null=True, read_only=True
    )
    score = RoundedFloatField(read_only=True, allow_null=True)
    threshold = RoundedFloatField(read_only=True, allow_null=True)
    slices = serializers.IntegerField(source="slice_count", read_only=True)
    key_slices = serializers.ListField(
        child=serializers.UUIDField(),
        read_only=True,
        help_text="Scan ids of the slices that drove the verdict, most telling first.",
    )
    decision_support = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "id",
            "url",
            "status",
            "error",
            "verdict",
            "score",
            "threshold",
            "model_version",
            "key_slices",
            "slices",
            "created",
            "triaged_at",
            "confirmed_verdict",
            "confirmed_at",
            "review_version",
            "decision_support",
        ]

    def get_decision_support(self, study: Study) -> str:
        return DECISION_SUPPORT_NOTICE


class StudySliceSerializer(serializers.Serializer):
    scan = serializers.UUIDField(source="pk")
    position = serializers.FloatField(
        source="slice_position", allow_null=True, help_text="Along the slice normal (mm)."
    )
    score = serializers.SerializerMethodField(help_text="P(abnormal) of the slice.")
    label = serializers.SerializerMethodField(help_text="The model's label of the slice.")
    confirmed_label = serializers.CharField()
    key = serializers.BooleanField(help_text="One of the study's key slices.")

    def get_score(self, scan: Scan) -> float | None:
        prediction = getattr(scan, "prediction", None)
        return round(prediction.abnormal_score, 4) if prediction else None

    def get_label(self, scan: Scan) -> str | None:
        prediction = getattr(scan, "prediction", None)
        return prediction.label if prediction else None


class StudyDetailSerializer(StudySerializer):
    slice_list = serializers.SerializerMethodField(
        help_text="The slices, series by series, each in anatomical order."
    )

    class Meta(StudySerializer.Meta):
        fields = [*StudySerializer.Meta.fields, "slice_list"]

    def get_slice_list(self, study: Study) -> StudySliceSerializer(many=True):
        key = set(study.key_slices)
        slices = [scan for members in selectors.study_series(study) for scan in members]
        for scan in slices:
            scan.key = str(scan.pk) in key
        return StudySliceSerializer(slices, many=True).data


class StudyReviewSerializer(RequestBodySerializer):
    verdict = serializers.ChoiceField(choices=(), help_text="One of the service's KIDNEY_CLASSES.")
    stone_slices = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        default=list,
        help_text="For an abnormal verdict: the slices that show it (they alone become labels).",
    )
    note = serializers.CharField(required=False, allow_blank=True, default="")
    version = serializers.IntegerField(
        min_value=0, help_text="The study's review_version you read: a stale write gets 409."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["verdict"].choices = settings.KIDNEY_CLASSES
