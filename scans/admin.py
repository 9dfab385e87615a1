import io

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from PIL import Image

from ml_core.images import decode_image
from scans.models import Prediction, Scan
from scans.training_data import training_run_request
from training.admin import TrainingRunAdmin
from training.models import TrainingRun

THUMBNAIL_SIDE = 160


class PredictionInline(admin.StackedInline):
    model = Prediction
    can_delete = False
    extra = 0
    fields = [
        "label",
        "probabilities",
        "model_version",
        "threshold",
        "inference_ms",
        "batch_size",
        "created",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Scan)
class ScanAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "id", "status", "predicted_label", "uploaded_by", "created"]
    list_filter = ["status", "prediction__label", "prediction__model_version", "created"]
    search_fields = ["id", "sha256", "uploaded_by__username"]
    list_select_related = ["prediction", "uploaded_by"]
    inlines = [PredictionInline]
    readonly_fields = [
        "thumbnail",
        "id",
        "status",
        "error",
        "sha256",
        "content_type",
        "width",
        "height",
        "uploaded_by",
        "created",
        "attempts",
        "claimed_by",
        "claimed_at",
    ]
    exclude = ["file"]

    def has_add_permission(self, request) -> bool:
        return False  # scans arrive through the API, which validates them

    @admin.display(description="Label")
    def predicted_label(self, scan: Scan) -> str:
        prediction = getattr(scan, "prediction", None)
        return prediction.label if prediction else "-"

    @admin.display(description="Image")
    def thumbnail(self, scan: Scan) -> str:
        url = reverse("admin:scans_scan_thumbnail", args=[scan.pk])
        return format_html('<img src="{}" width="{}" alt="scan">', url, THUMBNAIL_SIDE // 2)

    def get_urls(self):
        thumbnail = self.admin_site.admin_view(self.thumbnail_view)
        return [
            path("<uuid:scan_id>/thumbnail.png", thumbnail, name="scans_scan_thumbnail"),
            *super().get_urls(),
        ]

    def thumbnail_view(self, request, scan_id):
        """A small PNG of the scan, served only to admin users (files are never public)."""
        scan = get_object_or_404(Scan, pk=scan_id)
        if not self.has_view_permission(request, scan):
            return HttpResponse(status=403)
        with scan.file.open("rb") as stored:
            image = decode_image(stored.read(), max_pixels=settings.KIDNEY_MAX_IMAGE_PIXELS)
        picture = Image.fromarray((image.pixels * 255).astype("uint8"), mode="L")
        picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        output = io.BytesIO()
        picture.save(output, format="PNG")
        return HttpResponse(output.getvalue(), content_type="image/png")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = [
        "scan",
        "label",
        "model_version",
        "threshold",
        "inference_ms",
        "batch_size",
        "created",
    ]
    list_filter = ["label", "model_version", "created"]
    search_fields = ["scan__id", "label"]
    readonly_fields = [
        "scan",
        "model_version",
        "label",
        "probabilities",
        "threshold",
        "inference_ms",
        "batch_size",
        "created",
    ]

    def has_add_permission(self, request) -> bool:
        return False


@admin.action(description="Start a new training run on the confirmed labels, same parameters")
def start_training_run(modeladmin, request, queryset):
    """Admin twin of POST /api/training-runs/: repeats the selected run's parameters."""
    from training.services import TrainingRunActive

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
