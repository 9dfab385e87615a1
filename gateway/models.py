from django.db import models

from scans.models import Study


class StudyIdentity(models.Model):
    """What the PACS needs to file a study's results with it (patient and study identifiers,
    the original instance UIDs), kept apart from the de-identified slices, encrypted with the
    deployment's key (gateway.identity) and read only by the sender. Erased once the results
    are delivered and KIDNEY_DICOM_IDENTITY_RETENTION_HOURS have passed."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="identity")
    ciphertext = models.TextField(help_text="Encrypted; never shown.")
    updated = models.DateTimeField(auto_now=True)
    erase_after = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Set once the results are delivered."
    )

    class Meta:
        verbose_name_plural = "study identities"

    def __str__(self) -> str:
        return f"Identity of {self.study_id}"


class ResultDelivery(models.Model):
    """The outbox: a triaged study's results to send to a destination, once. A send that
    fails is tried again later, with a doubling wait; the row survives restarts."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="deliveries")
    triage_round = models.PositiveIntegerField(help_text="The study's triage these results are of.")
    destination = models.CharField(max_length=200, help_text="AE@host:port")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt = models.DateTimeField(db_index=True)
    last_error = models.TextField(blank=True)
    objects_sent = models.JSONField(
        default=list, blank=True, help_text="The result objects' kinds and SOP classes."
    )
    created = models.DateTimeField(auto_now_add=True)
    delivered = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name_plural = "result deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["study", "triage_round", "destination"], name="one_delivery_per_triage"
            )
        ]

    def __str__(self) -> str:
        return f"Results of {self.study_id} to {self.destination} ({self.status})"
