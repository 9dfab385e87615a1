from django.conf import settings
from django.db import models


class Organisation(models.Model):
    """A hospital or clinic: clinicians see the scans of their own organisation."""

    name = models.CharField(max_length=200, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="memberships"
    )

    def __str__(self) -> str:
        return f"{self.user} at {self.organisation}"
