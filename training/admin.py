from django.contrib import admin, messages

from accounts.roles import Role, user_has_role
from kidneyproject.readonly_admin import ReadOnlyAdmin
from kidneyproject.rounding import RoundedPredictionNumbers
from ml_core.numbers import rounded
from training import services
from training.evaluation import PromotionRefused
from training.models import EvaluationSet, ModelVersion, PromotionLog, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(RoundedPredictionNumbers, ReadOnlyAdmin):
    list_display = [
        "version", "mlflow_version", "status", "input_size", "rounded_threshold", "classes",
        "int8_twin", "created",
    ]  # fmt: skip
    list_filter = ["status", "input_size", "created"]
    search_fields = ["version", "description", "artifact", "mlflow_run_id"]
    actions = ["promote_through_gate"]
    # Shown rounded, as people read them.
    exclude = ["threshold", "study_threshold"]
    readonly_fields = ["rounded_threshold", "rounded_study_threshold"]

    @admin.display(description="int8 twin")
    def int8_twin(self, model_version):
        if not model_version.int8_gate:
            return "none"
        if model_version.int8_twin_passed:
            return "passed: may serve"
        return "failed: never serves" if model_version.int8_artifact else "not built"

    @admin.display(description="study threshold")
    def rounded_study_threshold(self, model_version):
        return rounded(model_version.study_threshold)

    def has_promote_permission(self, request) -> bool:
        return user_has_role(request.user, Role.ML_ENGINEER)

    @admin.action(description="Promote through the gate (one version)", permissions=["promote"])
    def promote_through_gate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version.", messages.ERROR)
            return
        try:
            log = services.model_version_promote(model_version=queryset.get(), actor=request.user)
        except PromotionRefused as refusal:
            self.message_user(request, str(refusal), messages.ERROR)
            return
        serves = log.decision in PromotionLog.SERVING_DECISIONS
        level = messages.SUCCESS if serves else messages.ERROR
        self.message_user(request, f"Gate: {log.decision}. {log.gate_summary()}", level)
        if log.registry_warning:
            self.message_user(request, log.registry_warning, messages.WARNING)


@admin.register(EvaluationSet)
class EvaluationSetAdmin(ReadOnlyAdmin):
    list_display = ["version", "size", "class_counts", "source", "created_by", "created"]
    exclude = ["entries"]


@admin.register(PromotionLog)
class PromotionLogAdmin(ReadOnlyAdmin):
    list_display = [
        "created", "action", "decision", "from_version", "from_status", "to_version",
        "to_status", "actor", "reason",
    ]  # fmt: skip
    list_filter = ["action", "decision"]
    search_fields = ["reason"]


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "trigger", "progress", "epoch", "model_version", "created"]
    list_filter = ["status", "trigger"]
    search_fields = ["data_source", "mlflow_run_id", "manifest_digest"]
