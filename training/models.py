import json

from django.conf import settings
from django.db import models
from django.db.models import Q

from ml_core.preprocessing import PreprocessingConfig
from ml_core.study import StudyRule

# bootstrap_model's description of its phantom-trained version: what marks it as a
# placeholder wherever it serves.
PLACEHOLDER_NOTE = (
    "Placeholder trained on synthetic phantoms, not on patient images. It is not a medical "
    "model: train on real, confirmed CT labels before anyone relies on it."
)
SHIPPED_NOTE = (
    "Shipped with the code: VGG16 trained on one hospital's public kidney CT slices (CT KIDNEY "
    "dataset, Islam et al. 2022, CC BY 4.0). Decision support for radiologists, never a "
    "diagnosis on its own; another hospital's images need the feedback loop before its "
    "numbers can be trusted there. See its model card."
)
SHIPPED_MODEL_CARD = "/model-card/"


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        SERVING = "serving"
        CANDIDATE = "candidate"
        RETIRED = "retired"

    version = models.PositiveIntegerField(unique=True)
    classes = models.JSONField(help_text="Class names in the order of the model's outputs.")
    input_size = models.PositiveIntegerField(help_text="Square input side in pixels.")
    preprocessing = models.JSONField(
        default=dict, help_text="Preprocessing parameters besides the input size."
    )
    threshold = models.FloatField(
        help_text="Decision threshold on P(abnormal), chosen for the target sensitivity."
    )
    study_rule = models.JSONField(
        default=dict, blank=True, help_text="The study rule's parameters (ml_core.study)."
    )
    study_threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="Threshold on the study rule's score, chosen for a target sensitivity in "
        "studies; empty: the slice threshold.",
    )
    metrics = models.JSONField(default=dict, blank=True)
    artifact = models.CharField(
        max_length=500, help_text="Name of the saved model in storage (training.files)."
    )
    description = models.TextField(blank=True)
    model_card = models.CharField(
        max_length=200, blank=True, help_text="Where its model card is, for a shipped model."
    )
    mlflow_run_id = models.CharField(max_length=64, blank=True)
    mlflow_version = models.CharField(
        max_length=32, blank=True, help_text="Version in the MLflow registry."
    )
    int8_artifact = models.CharField(
        max_length=500,
        blank=True,
        help_text="Name in storage of its int8 twin's OpenVINO .xml (the .bin beside it).",
    )
    int8_gate = models.JSONField(
        default=dict,
        blank=True,
        help_text="The int8 twin against this model, by block (training.twins); it serves "
        "only where `passed` is true.",
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.CANDIDATE, db_index=True
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="serving"),
                name="one_serving_model_version",
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.status})"

    @property
    def is_placeholder(self) -> bool:
        return self.description == PLACEHOLDER_NOTE

    @property
    def label(self) -> str:
        """The service's version with the MLflow registry's beside it (they differ)."""
        return f"v{self.version} (MLflow {self.mlflow_version or '-'})"

    @property
    def int8_twin_passed(self) -> bool:
        """An int8 twin exists and passed its gate: it may serve in this model's place."""
        return bool(self.int8_artifact) and self.int8_gate.get("passed") is True

    @property
    def study_decision(self) -> tuple[StudyRule, float]:
        """The study rule and the threshold its score is compared with."""
        threshold = self.threshold if self.study_threshold is None else self.study_threshold
        return StudyRule.from_dict(self.study_rule), threshold

    @property
    def preprocessing_config(self) -> PreprocessingConfig:
        return PreprocessingConfig(input_size=self.input_size, **self.preprocessing)


class EvaluationSet(models.Model):
    """Labelled images that judge model versions, frozen.

    `original`: the set every candidate and the serving version are compared on, frozen when
    first needed from the first data trained on; extending it is an explicit action that makes
    a new version. `recent`: the newest block of confirmed labels (acquisition order, after a
    gap), held out of the training run it was made for and judging that run's candidate
    against the serving version, so a model adapted to a hospital's newer studies is judged
    on them too."""

    class Kind(models.TextChoices):
        ORIGINAL = "original"
        RECENT = "recent"

    kind = models.CharField(
        max_length=16, choices=Kind.choices, default=Kind.ORIGINAL, db_index=True
    )
    version = models.PositiveIntegerField()
    entries = models.JSONField(help_text="Manifest: path, label, order, group, sha256.")
    digest = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    class_counts = models.JSONField(default=dict)
    source = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="evaluation_set_version")
        ]

    def __str__(self) -> str:
        return f"{self.kind} evaluation set v{self.version} ({self.size} images)"


class ModelEvaluation(models.Model):
    """A model version's report on an evaluation set, computed once."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="evaluations"
    )
    evaluation_set = models.ForeignKey(
        EvaluationSet, on_delete=models.CASCADE, related_name="evaluations"
    )
    report = models.JSONField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "evaluation_set"], name="one_evaluation_per_set"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_version.label} on {self.evaluation_set}"


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        API = "api"
        ADMIN = "admin"
        SCHEDULE = "schedule"
        COMMAND = "command"

    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    # True while queued or running, else NULL: the unique index allows one active run.
    active = models.BooleanField(null=True, unique=True, default=True, editable=False)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    parameters = models.JSONField(default=dict)
    data_source = models.CharField(max_length=300)
    manifest_digest = models.CharField(max_length=64)
    manifest_size = models.PositiveIntegerField()
    class_counts = models.JSONField(default=dict)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    epoch = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    history = models.JSONField(default=list, blank=True)
    mlflow_run_id = models.CharField(max_length=64, blank=True)
    model_version = models.OneToOneField(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_run",
    )
    error = models.TextField(blank=True)
    recent_evaluation_set = models.ForeignKey(
        EvaluationSet,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The newest confirmed labels, held out of this run, that judge its candidate.",
    )
    evaluation_manifest_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="The block planned as the evaluation set (none was frozen when the run was "
        "requested); frozen once the run has a candidate to judge.",
    )
    retry_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retries",
        help_text="The failed run this one repeats, on the same manifest and parameters.",
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"training run {self.pk} ({self.status})"


class PromotionLog(models.Model):
    class Action(models.TextChoices):
        PROMOTE = "promote"
        ROLLBACK = "rollback"
        # bootstrap_model serving its placeholder: no gate applies.
        BOOTSTRAP = "bootstrap"

    class Decision(models.TextChoices):
        PROMOTED = "promoted"
        REJECTED = "rejected"
        OVERRIDDEN = "overridden"
        # The gate could not judge (its evaluation set too small); nothing changed.
        NOT_JUDGED = "not_judged"

    # The decisions that put their target version into service.
    SERVING_DECISIONS = (Decision.PROMOTED, Decision.OVERRIDDEN)

    action = models.CharField(max_length=16, choices=Action.choices)
    decision = models.CharField(max_length=16, choices=Decision.choices)
    from_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    # Each version's status when the decision was taken (they change later).
    from_status = models.CharField(max_length=16, blank=True, choices=ModelVersion.Status.choices)
    to_status = models.CharField(max_length=16, blank=True, choices=ModelVersion.Status.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Empty when the system decided (after a scheduled training run).",
    )
    reason = models.TextField(blank=True)
    gate = models.JSONField(help_text="Both versions' metrics and the gate's checks.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.action} to {self.to_version.label}: {self.decision}"

    def gate_summary(self) -> str:
        """The gate's checks, or why there were none (not judged, not gated)."""
        return self.gate.get("detail") or json.dumps(self.gate.get("checks", {}))
