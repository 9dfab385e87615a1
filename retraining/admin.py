"""Admin pieces that need both sides of the loop: starting a training run on the confirmed
labels, and a model version's agreement with them. They extend training's admin classes."""

from django.contrib import admin, messages

from accounts.roles import Role, user_has_role
from retraining.selectors import model_version_agreement, model_version_recent_agreement
from retraining.services import training_run_request, trigger_status
from training.admin import ModelVersionAdmin, TrainingRunAdmin
from training.models import ModelVersion, TrainingRun
from training.runs import TrainingRunActive


@admin.action(
    description="Start a new training run on the confirmed labels, same parameters",
    permissions=["start_training"],
)
def start_training_run(modeladmin, request, queryset):
    """Admin twin of POST /api/training-runs/: repeats the selected run's parameters."""
    run = queryset.first()
    try:
        started = training_run_request(
            parameters=run.parameters if run else None,
            trigger=TrainingRun.Trigger.ADMIN,
            requested_by=request.user,
        )
    except (TrainingRunActive, ValueError) as error:
        modeladmin.message_user(request, str(error), messages.ERROR)
        return
    modeladmin.message_user(request, f"Training run {started.pk} queued.", messages.SUCCESS)


admin.site.unregister(TrainingRun)


@admin.register(TrainingRun)
class TrainingRunWithStartAdmin(TrainingRunAdmin):
    actions = [start_training_run]

    def has_start_training_permission(self, request) -> bool:
        return user_has_role(request.user, Role.ML_ENGINEER)

    def changelist_view(self, request, extra_context=None):
        """Says what the next scheduled run waits for, and why candidates keep being refused."""
        if request.method == "GET":
            status = trigger_status()
            if status["waiting_for"]:
                waiting = "; ".join(status["waiting_for"])
                self.message_user(request, f"The next run waits for {waiting}.", messages.INFO)
            if status["refusal_alert"]:
                self.message_user(request, status["refusal_alert"], messages.WARNING)
        return super().changelist_view(request, extra_context)


admin.site.unregister(ModelVersion)


@admin.register(ModelVersion)
class ModelVersionWithAgreementAdmin(ModelVersionAdmin):
    """Adds how the version's predictions agree with the labels radiologists confirmed."""

    readonly_fields = [
        *ModelVersionAdmin.readonly_fields, "agreement", "recent_agreement", "evaluations",
    ]  # fmt: skip

    @admin.display(description="Agreement with confirmed labels")
    def agreement(self, model_version) -> str:
        return _describe(model_version_agreement(model_version))

    @admin.display(description="On the newest confirmed scans it predicted (drift)")
    def recent_agreement(self, model_version) -> str:
        figures = model_version_recent_agreement(model_version)
        return f"ROC AUC {_figure(figures['auc'])}; " + _describe(figures)

    @admin.display(description="Evaluation sets")
    def evaluations(self, model_version) -> str:
        lines = []
        for evaluation in model_version.evaluations.select_related("evaluation_set"):
            report = evaluation.report
            lines.append(
                f"{evaluation.evaluation_set}: sensitivity {_figure(report['sensitivity'])}, "
                f"specificity {_figure(report['specificity'])}, ROC AUC {_figure(report['auc'])}"
            )
        return "; ".join(lines) or "-"


def _figure(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _describe(figures: dict) -> str:
    rows = figures["confusion_matrix"]["rows"]
    classes = figures["confusion_matrix"]["classes"]
    matrix = "; ".join(
        f"true {name}: " + ", ".join(f"{col} {n}" for col, n in zip(classes, row, strict=True))
        for name, row in zip(classes, rows, strict=True)
    )
    return (
        f"{figures['n']} confirmed; sensitivity {_figure(figures['sensitivity'])}, "
        f"specificity {_figure(figures['specificity'])}; decided as: {matrix}"
    )
