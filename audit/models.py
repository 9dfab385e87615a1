from django.conf import settings
from django.db import models
from django.utils import timezone


class AccessEvent(models.Model):
    """Who read which scan's record, image, heatmap or review trail, when, and from where.
    Append-only: rows are never changed, and removed only when older than
    KIDNEY_AUDIT_RETENTION_DAYS."""

    class Kind(models.TextChoices):
        RECORD = "record", "scan record"
        LIST = "list", "list of scan records"
        IMAGE = "image", "image"
        HEATMAP = "heatmap", "heatmap"
        REVIEW_TRAIL = "review_trail", "review trail"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    # Kept by name as well: the trail outlives a deleted account.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    scan_ids = models.TextField(help_text="The scans read, one ID per line.")
    path = models.CharField(max_length=500)
    client_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.username} read {self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("The access audit is append-only: an event is never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("The access audit is append-only: events expire, never get deleted.")
