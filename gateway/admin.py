from django.contrib import admin

from gateway.models import ResultDelivery
from kidneyproject.readonly_admin import ReadOnlyAdmin


@admin.register(ResultDelivery)
class ResultDeliveryAdmin(ReadOnlyAdmin):
    """The outbox: each triaged study's results and where they stand. Identities are never
    shown anywhere."""

    list_display = [
        "study", "destination", "triage_round", "status", "attempts", "next_attempt",
        "delivered",
    ]  # fmt: skip
    list_filter = ["status", "destination"]
    readonly_fields = [
        "study", "triage_round", "destination", "status", "attempts", "next_attempt",
        "last_error", "objects_sent", "created", "delivered",
    ]  # fmt: skip
