from django.contrib import admin

from training.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "status", "input_size", "threshold", "classes", "created"]
    list_filter = ["status", "input_size", "created"]
    search_fields = ["version", "description", "artifact"]
    readonly_fields = [
        "version",
        "classes",
        "input_size",
        "preprocessing",
        "threshold",
        "metrics",
        "artifact",
        "created",
    ]
