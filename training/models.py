from django.db import models
from django.db.models import Q

from ml_core.preprocessing import PreprocessingConfig


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
    metrics = models.JSONField(default=dict, blank=True)
    artifact = models.CharField(max_length=500, help_text="Location of the saved model.")
    description = models.TextField(blank=True)
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
        return f"v{self.version} ({self.status})"

    @property
    def preprocessing_config(self) -> PreprocessingConfig:
        return PreprocessingConfig(input_size=self.input_size, **self.preprocessing)
