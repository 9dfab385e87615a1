from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from accounts.roles import Role, user_has_role
from audit.models import AccessEvent
from audit.services import access_record
from kidneyproject.rounding import RoundedPredictionNumbers
from ml_core.images import intensity_png
from scans import selectors, services
from scans.images import stored_image
from scans.models import Prediction, ReviewEvent, Scan, ScanAwaitingReview, Study

THUMBNAIL_SIDE = 160


class PredictionInline(RoundedPredictionNumbers, admin.StackedInline):
    model = Prediction
    can_delete = False
    extra = 0
    fields = [
        "label",
        "rounded_probabilities",
        "model_version",
        "rounded_threshold",
        "inference_ms",
        "batch_size",
        "runtime",
        "created",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ReviewEventInline(admin.TabularInline):
    model = ReviewEvent
    extra = 0
    can_delete = False
    fields = ["created", "reviewer", "source", "old_label", "new_label", "note", "model_label"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class AuditedReadsAdmin(admin.ModelAdmin):
    """Records in the access audit each scan record shown, in a list or on its own page."""

    def scan_id_of(self, obj):
        return obj.pk

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if response.status_code == 200 and changelist is not None and changelist.result_list:
            scan_ids = [self.scan_id_of(obj) for obj in changelist.result_list]
            access_record(request, kind=AccessEvent.Kind.LIST, scan_ids=scan_ids)
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        shown = getattr(response, "context_data", {}).get("original")
        if response.status_code == 200 and shown is not None:
            access_record(request, kind=AccessEvent.Kind.RECORD, scan_ids=[self.scan_id_of(shown)])
        return response


@admin.register(Scan)
class ScanAdmin(AuditedReadsAdmin):
    list_display = [
        "thumbnail", "id", "status", "predicted_label", "radiologist_label", "uploaded_by",
        "created",
    ]  # fmt: skip
    list_filter = ["status", "prediction__label", "prediction__model_version", "created"]
    search_fields = ["id", "sha256", "uploaded_by__username"]
    list_select_related = ["prediction", "uploaded_by"]
    inlines = [PredictionInline, ReviewEventInline]
    readonly_fields = [
        "image_with_heatmap",
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
        "organisation",
        "confirmed_label",
        "confirmed_by",
        "confirmed_at",
        "review_version",
    ]
    exclude = ["file"]

    def has_add_permission(self, request) -> bool:
        return False  # scans arrive through the API, which validates them

    @admin.display(description="Model's label")
    def predicted_label(self, scan: Scan) -> str:
        prediction = getattr(scan, "prediction", None)
        return prediction.label if prediction else "-"

    @admin.display(description="Radiologist's label", ordering="confirmed_label")
    def radiologist_label(self, scan: Scan) -> str:
        return scan.confirmed_label or "unreviewed"

    @admin.display(description="Image")
    def thumbnail(self, scan: Scan) -> str:
        url = reverse(self._url_name("thumbnail"), args=[scan.pk])
        return format_html('<img src="{}" width="{}" alt="scan">', url, THUMBNAIL_SIDE // 2)

    @admin.display(description="Image and evidence map")
    def image_with_heatmap(self, scan: Scan) -> str:
        image = reverse(self._url_name("thumbnail"), args=[scan.pk])
        prediction = getattr(scan, "prediction", None)
        if prediction is None or not prediction.evidence_map_ready:
            return format_html('<img src="{}" width="{}" alt="scan">', image, THUMBNAIL_SIDE)
        heatmap = reverse(self._url_name("heatmap"), args=[scan.pk])
        note = (
            "no region carries the score: the map is empty"
            if prediction.heatmap_signal is False
            else "where the model's evidence lies, not a segmentation"
        )
        return format_html(
            '<div style="position:relative;width:{0}px">'
            '<img src="{1}" width="{0}" alt="scan" style="display:block">'
            '<img src="{2}" width="{0}" alt="evidence map" '
            'style="position:absolute;top:0;left:0;mix-blend-mode:screen"></div>'
            "<p>Evidence map by {3}: {4}.</p>",
            THUMBNAIL_SIDE,
            image,
            heatmap,
            prediction.heatmap_method,
            note,
        )

    def _url_name(self, view: str, *, namespaced: bool = True) -> str:
        name = f"{self.opts.app_label}_{self.opts.model_name}_{view}"
        return f"admin:{name}" if namespaced else name

    def get_urls(self):
        thumbnail = self.admin_site.admin_view(self.thumbnail_view)
        heatmap = self.admin_site.admin_view(self.heatmap_view)
        return [
            path(
                "<uuid:scan_id>/thumbnail.png",
                thumbnail,
                name=self._url_name("thumbnail", namespaced=False),
            ),
            path(
                "<uuid:scan_id>/heatmap.png",
                heatmap,
                name=self._url_name("heatmap", namespaced=False),
            ),
            *super().get_urls(),
        ]

    def heatmap_view(self, request, scan_id):
        """The prediction's evidence map overlay, for admin users only."""
        prediction = get_object_or_404(Prediction, scan_id=scan_id)
        if (
            not self.has_view_permission(request, prediction.scan)
            or not prediction.evidence_map_ready
        ):
            return HttpResponse(status=404)
        access_record(request, kind=AccessEvent.Kind.HEATMAP, scan_ids=[scan_id])
        return FileResponse(prediction.heatmap.open("rb"), content_type="image/png")

    def thumbnail_view(self, request, scan_id):
        """A small PNG of the scan, served only to admin users (files are never public)."""
        scan = get_object_or_404(Scan, pk=scan_id)
        if not self.has_view_permission(request, scan):
            return HttpResponse(status=403)
        thumbnail = intensity_png(stored_image(scan).pixels, max_side=THUMBNAIL_SIDE)
        access_record(request, kind=AccessEvent.Kind.IMAGE, scan_ids=[scan_id])
        return HttpResponse(thumbnail, content_type="image/png")


@admin.register(Prediction)
class PredictionAdmin(RoundedPredictionNumbers, AuditedReadsAdmin):
    list_display = [
        "scan",
        "label",
        "model_version",
        "rounded_threshold",
        "inference_ms",
        "batch_size",
        "runtime",
        "created",
    ]
    list_filter = ["label", "model_version", "runtime", "created"]
    search_fields = ["scan__id", "label"]
    readonly_fields = [
        "scan",
        "model_version",
        "label",
        "rounded_probabilities",
        "rounded_threshold",
        "inference_ms",
        "batch_size",
        "runtime",
        "created",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def scan_id_of(self, prediction):
        return prediction.scan_id


def _review_all(modeladmin, request, queryset, label_of) -> None:
    reviewed = 0
    for scan in queryset.select_related("prediction"):
        try:
            services.scan_review(
                scan_id=scan.pk,
                reviewer=request.user,
                label=label_of(scan),
                note="admin bulk action",
                read_version=scan.review_version,
            )
            reviewed += 1
        except (services.StaleReview, services.UnknownLabel) as error:
            modeladmin.message_user(request, f"{scan.pk}: {error}", messages.WARNING)
    scans = "scan" if reviewed == 1 else "scans"
    modeladmin.message_user(request, f"Reviewed {reviewed} {scans}.", messages.SUCCESS)


@admin.register(ScanAwaitingReview)
class ReviewQueueAdmin(ScanAdmin):
    """Same order as GET /api/review-queue/; bulk actions write the same review events."""

    list_display = [
        "thumbnail", "id", "predicted_label", "abnormal_score", "threshold", "created",
    ]  # fmt: skip
    list_filter = ["prediction__label", "prediction__model_version"]
    inlines = []

    def get_queryset(self, request):
        return selectors.review_queue()

    def get_ordering(self, request):
        return ["margin", "created"]

    @admin.display(description="P(abnormal)")
    def abnormal_score(self, scan) -> str:
        return f"{scan.prediction.abnormal_score:.3f}"

    @admin.display(description="Threshold")
    def threshold(self, scan) -> str:
        return f"{scan.prediction.threshold:.3f}"

    def has_review_permission(self, request) -> bool:
        return user_has_role(request.user, Role.RADIOLOGIST)

    def get_actions(self, request):
        if not self.has_review_permission(request):
            return {}
        actions = {
            "confirm_prediction": (
                lambda admin_, request_, queryset: _review_all(
                    admin_, request_, queryset, lambda scan: scan.prediction.label
                ),
                "confirm_prediction",
                "Confirm the prediction",
            )
        }
        for label in settings.KIDNEY_CLASSES:
            actions[f"relabel_as_{label}"] = (
                lambda admin_, request_, queryset, label=label: _review_all(
                    admin_, request_, queryset, lambda scan: label
                ),
                f"relabel_as_{label}",
                f"Relabel as {label}",
            )
        return actions


@admin.register(Study)
class StudyAdmin(AuditedReadsAdmin):
    """Studies received over DICOM: the strip of slices with the key ones marked. Radiologists
    confirm normal studies in bulk here; marking stone slices is on the study page."""

    list_display = [
        "id", "status", "verdict", "rounded_score", "model_version", "slice_count",
        "confirmed_verdict", "created",
    ]  # fmt: skip
    list_filter = ["status", "verdict", "confirmed_verdict", "model_version", "created"]
    search_fields = ["id"]
    readonly_fields = [
        "strip", "id", "status", "error", "organisation", "calling_ae_title", "verdict",
        "rounded_score", "model_version", "created", "last_received", "triaged_at",
        "triage_round", "attempts", "confirmed_verdict", "confirmed_by", "confirmed_at",
        "review_version",
    ]  # fmt: skip
    exclude = ["study_reference", "key_slices", "score", "threshold", "claimed_by", "claimed_at"]
    actions = ["confirm_normal"]

    def get_queryset(self, request):
        return (
            super().get_queryset(request).annotate(slice_count=Count("slices")).order_by("-created")
        )

    def scan_id_of(self, study):
        return study.key_slices[0] if study.key_slices else study.pk

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Slices", ordering="slice_count")
    def slice_count(self, study) -> int:
        return study.slice_count

    @admin.display(description="Score / threshold")
    def rounded_score(self, study) -> str:
        if study.score is None:
            return "-"
        return f"{study.score:.3f} / {study.threshold:.3f}"

    @admin.display(description="Slices in anatomical order (key slices outlined, most telling #1)")
    def strip(self, study) -> str:
        key = {scan_id: rank for rank, scan_id in enumerate(study.key_slices, start=1)}
        cells = [
            format_html(
                '<figure style="display:inline-block;margin:2px;border:2px solid {}">'
                '<img src="{}" width="64" loading="lazy" alt="slice"><figcaption>{}{}</figcaption>'
                "</figure>",
                "#d33" if str(scan.pk) in key else "transparent",
                reverse("admin:scans_scan_thumbnail", args=[scan.pk]),
                f"#{key[str(scan.pk)]} " if str(scan.pk) in key else "",
                f"{scan.prediction.abnormal_score:.2f}" if hasattr(scan, "prediction") else "",
            )
            for members in selectors.study_series(study)
            for scan in members
        ]
        page = reverse("study", args=[study.pk])
        return format_html(
            '<div>{}</div><p><a href="{}">Review on the study page</a></p>',
            format_html_join("", "{}", ((cell,) for cell in cells)),
            page,
        )

    def get_actions(self, request):
        return super().get_actions(request) if user_has_role(request.user, Role.RADIOLOGIST) else {}

    @admin.action(description="Confirm as normal (labels every slice normal)")
    def confirm_normal(self, request, queryset):
        confirmed = 0
        for study in queryset:
            try:
                services.study_review(
                    study_id=study.pk,
                    reviewer=request.user,
                    verdict="normal",
                    stone_slices=[],
                    note="admin bulk action",
                    read_version=study.review_version,
                )
                confirmed += 1
            except (services.StaleReview, services.StudyNotReviewable) as error:
                self.message_user(request, f"{study.pk}: {error}", messages.WARNING)
        self.message_user(request, f"Confirmed {confirmed} studies as normal.", messages.SUCCESS)
