from django.contrib import admin

from audit.models import AccessEvent
from kidneyproject.readonly_admin import ReadOnlyAdmin


@admin.register(AccessEvent)
class AccessEventAdmin(ReadOnlyAdmin):
    """Superusers, and staff given "Can view access event" (a privacy officer), read the
    audit; nobody adds, changes or deletes an event here."""

    list_display = ["at", "username", "kind", "scans", "client_address", "path"]
    list_filter = ["kind", "at", "username"]
    search_fields = ["username", "scan_ids", "client_address", "path"]
    date_hierarchy = "at"
    readonly_fields = ["at", "user", "username", "kind", "scan_ids", "path", "client_address"]

    @admin.display(description="scans")
    def scans(self, event) -> str:
        scan_ids = event.scan_ids.split()
        return scan_ids[0] if len(scan_ids) == 1 else f"{len(scan_ids)} scans"
