import uuid

from django.conf import settings
from django.db import models

from ml_core.evidence import METHOD as EVIDENCE_METHOD

# Said wherever a prediction is shown or sent: the page, the API, the results in the PACS.
DECISION_SUPPORT_NOTICE = (
    "Decision support only: predictions support a radiologist's reading and never replace it."
)


def scan_upload_path(instance: "Scan", filename: str) -> str:
    """A random name: the uploader's file name never becomes a path."""
    return f"scans/{uuid.uuid4().hex}{filename[filename.rfind('.') :]}"


class Scan(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSING = "processing"
        PREDICTED = "predicted"
        FAILED = "failed"
        # Imported with a confirmed label for training; never sent for inference.
        IMPORTED = "imported"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    file = models.FileField(upload_to=scan_upload_path)
    sha256 = models.CharField(max_length=64, db_index=True)
    content_type = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="scans"
    )
    organisation = models.ForeignKey(
        "accounts.Organisation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="scans",
        help_text="The uploader's organisation; its clinicians see the scan.",
    )
    study_reference = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="Keyed hash of the DICOM study UID: groups slices of one study for training "
        "splits without revealing the study.",
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    error = models.TextField(blank=True)
    claimed_by = models.CharField(
        max_length=64, blank=True, help_text="Celery task id of the batch processing it."
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="How many times a worker has claimed it."
    )
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="Backing off after a failed attempt: not claimed before."
    )
    confirmed_label = models.CharField(max_length=32, blank=True, db_index=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="confirmed_scans",
    )
    confirmed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    review_version = models.PositiveIntegerField(
        default=0, help_text="Increases with every review: a stale write is refused."
    )
    study = models.ForeignKey(
        "scans.Study",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="slices",
        help_text="The study it arrived in over DICOM; classified with it, never alone.",
    )
    series_reference = models.CharField(
        max_length=64, blank=True, help_text="Keyed hash of the DICOM series UID."
    )
    slice_position = models.FloatField(
        null=True,
        blank=True,
        help_text="Where the slice lies along its series' slice normal (mm), else its "
        "instance number: the anatomical order.",
    )

    class Meta:
        ordering = ["-created"]
        constraints = [
            # The same bytes uploaded again by the same user are the same scan.
            models.UniqueConstraint(
                fields=["uploaded_by", "sha256"], name="scan_unique_upload_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"Scan {self.id} ({self.status})"


class Study(models.Model):
    """A CT study received over DICOM: its slices, classified together by one model version,
    and one verdict by the version's study rule. Receiving until no instance of it arrived
    for KIDNEY_DICOM_STUDY_QUIET_SECONDS; an instance arriving after that opens it again."""

    class Status(models.TextChoices):
        RECEIVING = "receiving"
        QUEUED = "queued"
        PROCESSING = "processing"
        TRIAGED = "triaged"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="studies",
        help_text="The sending AE's organisation; its clinicians see the study.",
    )
    study_reference = models.CharField(
        max_length=64, help_text="Keyed hash of the DICOM study UID (never the UID itself)."
    )
    calling_ae_title = models.CharField(max_length=16, help_text="Who sent it.")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.RECEIVING, db_index=True
    )
    last_received = models.DateTimeField(db_index=True)
    error = models.TextField(blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    verdict = models.CharField(max_length=32, blank=True, help_text="A class name.")
    score = models.FloatField(null=True, blank=True, help_text="The study rule's score.")
    threshold = models.FloatField(
        null=True, blank=True, help_text="The model version's study threshold when triaged."
    )
    model_version = models.ForeignKey(
        "training.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="studies",
    )
    key_slices = models.JSONField(
        default=list,
        blank=True,
        help_text="Scan ids of the slices that drove the verdict, most telling first.",
    )
    triaged_at = models.DateTimeField(null=True, blank=True)
    triage_round = models.PositiveIntegerField(
        default=0, help_text="How many times it was triaged (again after new instances)."
    )
    confirmed_verdict = models.CharField(max_length=32, blank=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="confirmed_studies",
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    review_version = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created"]
        verbose_name_plural = "studies"
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "study_reference"], name="study_unique_per_organisation"
            )
        ]

    def __str__(self) -> str:
        return f"Study {self.id} ({self.status})"


class Prediction(models.Model):
    scan = models.OneToOneField(Scan, on_delete=models.CASCADE, related_name="prediction")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="predictions"
    )
    label = models.CharField(max_length=32, db_index=True)
    probabilities = models.JSONField(help_text="Probability per class name.")
    abnormal_score = models.FloatField(
        help_text="P(any class but normal), compared with the threshold.",
        db_index=True,
    )
    threshold = models.FloatField(help_text="The model version's threshold when predicted.")
    inference_ms = models.FloatField(
        help_text="This scan's share of its batch's forward pass, in ms."
    )
    batch_size = models.PositiveSmallIntegerField(
        help_text="How many scans shared the forward pass."
    )
    runtime = models.CharField(
        max_length=32,
        blank=True,
        help_text="What computed it: keras-<precision>, or openvino-int8 (the version's "
        "int8 twin).",
    )
    heatmap = models.FileField(
        upload_to="heatmaps/", blank=True, help_text="Evidence map overlay (RGBA PNG)."
    )
    heatmap_method = models.CharField(
        max_length=32,
        blank=True,
        help_text="The method and its version that made the map (ml_core.evidence.METHOD).",
    )
    heatmap_signal = models.BooleanField(
        null=True,
        blank=True,
        help_text="False when nothing in the slice raised P(abnormal): the overlay is empty.",
    )
    heatmap_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When the heatmap's task was sent (on request)."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.label} by v{self.model_version.version} for {self.scan_id}"

    @property
    def evidence_map_ready(self) -> bool:
        """A map by the current method; one by an earlier method is made again when asked."""
        return bool(self.heatmap) and self.heatmap_method == EVIDENCE_METHOD


class ReviewEvent(models.Model):
    """One confirmation or relabelling, kept forever: who, when, old and new label, note, and
    what the model said at that moment. Every confirmed label has one: its source."""

    class Source(models.TextChoices):
        REVIEW = "review", "reviewed by a radiologist"
        IMPORT = "import", "imported with a dataset (import_dataset)"

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="review_events")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_events"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    old_label = models.CharField(max_length=32, blank=True)
    new_label = models.CharField(max_length=32)
    note = models.TextField(blank=True)
    source = models.CharField(
        max_length=16, choices=Source.choices, default=Source.REVIEW, db_index=True
    )
    model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    model_label = models.CharField(max_length=32, blank=True)
    model_probabilities = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.reviewer} set {self.new_label} on {self.scan_id}"


class ScanAwaitingReview(Scan):
    """The review queue in the admin: predicted, unreviewed scans, most uncertain first."""

    class Meta:
        proxy = True
        verbose_name = "scan awaiting review"
        verbose_name_plural = "review queue"
