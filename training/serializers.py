from rest_framework import serializers

from kidneyproject.api_requests import RequestBodySerializer
from kidneyproject.rounding import RoundedFloatField, RoundedJSONField
from ml_core.training import MODES
from training.models import ModelEvaluation, ModelVersion, PromotionLog, TrainingRun


class ModelEvaluationSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(source="evaluation_set.kind")
    evaluation_set = serializers.IntegerField(source="evaluation_set.version")
    size = serializers.IntegerField(source="evaluation_set.size")
    report = RoundedJSONField(read_only=True)

    class Meta:
        model = ModelEvaluation
        fields = ["kind", "evaluation_set", "size", "report", "created"]


class ModelVersionSerializer(serializers.ModelSerializer):
    evaluations = ModelEvaluationSerializer(
        many=True,
        read_only=True,
        help_text="Its report on each evaluation set it was judged on: the original set and "
        "the recent blocks of confirmed labels.",
    )
    threshold = RoundedFloatField(read_only=True)
    metrics = RoundedJSONField(read_only=True)
    model_card = serializers.SerializerMethodField(
        help_text="The model card's address, for the model shipped with the code; else empty."
    )
    int8_twin_passed = serializers.BooleanField(
        read_only=True,
        help_text="Its int8 twin (OpenVINO) passed its gate against this model, so it may "
        "serve in its place on CPUs (KIDNEY_INFERENCE_RUNTIME).",
    )
    int8_gate = RoundedJSONField(
        read_only=True,
        help_text="The int8 twin against this model, by block: ROC AUC and sensitivity at the "
        "threshold within 0.002, at most 0.5% of decisions changed. Empty: no twin built.",
    )

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
            "model_card",
            "mlflow_run_id",
            "mlflow_version",
            "int8_twin_passed",
            "int8_gate",
            "evaluations",
            "created",
        ]

    def get_model_card(self, version: ModelVersion) -> str:
        request = self.context.get("request")
        if not version.model_card or request is None:
            return version.model_card
        return request.build_absolute_uri(version.model_card)


class PromotionRequestSerializer(RequestBodySerializer):
    override_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Serve it even if the gate refuses; the reason is logged.",
    )


class PromotionLogSerializer(serializers.ModelSerializer):
    from_version = serializers.IntegerField(source="from_version.version", allow_null=True)
    from_mlflow_version = serializers.CharField(
        source="from_version.mlflow_version", allow_null=True
    )
    to_version = serializers.IntegerField(source="to_version.version")
    to_mlflow_version = serializers.CharField(source="to_version.mlflow_version")
    actor = serializers.CharField(source="actor.username", allow_null=True)
    warning = serializers.SerializerMethodField(
        help_text="Set when serving changed but MLflow's registry did not answer: its "
        "`champion` alias follows once it does."
    )

    class Meta:
        model = PromotionLog
        fields = [
            "id",
            "action",
            "decision",
            "from_version",
            "from_mlflow_version",
            "from_status",
            "to_version",
            "to_mlflow_version",
            "to_status",
            "actor",
            "reason",
            "gate",
            "warning",
            "created",
        ]

    gate = RoundedJSONField(read_only=True)

    def get_warning(self, log: PromotionLog) -> str:
        return getattr(log, "registry_warning", "")


class TrainingRunSerializer(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version.version", allow_null=True)
    mlflow_version = serializers.CharField(source="model_version.mlflow_version", allow_null=True)
    recent_evaluation_set = serializers.IntegerField(
        source="recent_evaluation_set.version",
        allow_null=True,
        help_text="The recent evaluation set held out of this run to judge its candidate.",
    )
    url = serializers.HyperlinkedIdentityField(view_name="trainingrun-detail")
    progress = RoundedFloatField(read_only=True)
    metrics = RoundedJSONField(read_only=True)
    history = RoundedJSONField(read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "url",
            "status",
            "trigger",
            "progress",
            "epoch",
            "parameters",
            "data_source",
            "manifest_digest",
            "manifest_size",
            "class_counts",
            "metrics",
            "history",
            "mlflow_run_id",
            "model_version",
            "mlflow_version",
            "error",
            "recent_evaluation_set",
            "retry_of",
            "created",
            "started",
            "finished",
        ]


class TrainingRunRequestSerializer(RequestBodySerializer):
    """Optional overrides of the default retraining parameters."""

    mode = serializers.ChoiceField(choices=MODES, required=False)
    epochs = serializers.IntegerField(min_value=1, max_value=500, required=False)
    learning_rate = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    max_minutes = serializers.FloatField(min_value=0.0, required=False)
