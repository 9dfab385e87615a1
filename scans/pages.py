"""The review page: Django templates and a little JavaScript over the REST API."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.roles import Role, user_has_role
from audit.models import AccessEvent
from audit.services import access_record
from ml_core.dicom import WINDOW_PRESETS
from scans import selectors, services
from training.selectors import serving_model_version


@login_required
def review_page(request):
    """Clinicians upload and watch; radiologists also work through the review queue."""
    if not user_has_role(request.user, Role.CLINICIAN, Role.RADIOLOGIST):
        if user_has_role(request.user, Role.ML_ENGINEER):
            return redirect("models")  # their landing page, where `/` sends everyone
        raise PermissionDenied("The review page is for clinicians and radiologists.")
    serving = serving_model_version()
    context = {
        "classes": settings.KIDNEY_CLASSES,
        "can_review": user_has_role(request.user, Role.RADIOLOGIST),
        "serving": serving,
        "judged": judged_on(serving),
        # DICOM slices are served through these; the page shows its window and level in HU.
        "ct_windows": {
            name: {"width": window.width, "level": window.level, "name": name.replace("_", " ")}
            for name, window in WINDOW_PRESETS.items()
        },
    }
    return render(request, "scans/review.html", context)


# Where a version's quality was measured, best first: the frozen evaluation set, the held-out
# studies a shipped model was judged on.
JUDGING_SETS = (("evaluation", "the evaluation set"), ("held_out", "held-out later studies"))


def judged_on(serving) -> dict | None:
    for key, name in JUDGING_SETS:
        if serving is not None and serving.metrics.get(key):
            return {"name": name, "report": serving.metrics[key]}
    return None


def _posted_version(request) -> int:
    """The review_version the form was read at; a malformed one reads as stale."""
    try:
        return int(request.POST.get("version", ""))
    except ValueError:
        return -1


def _study_reader(request) -> None:
    if not user_has_role(request.user, Role.CLINICIAN, Role.RADIOLOGIST):
        raise PermissionDenied("Studies are for clinicians and radiologists.")


@login_required
def studies_page(request):
    """The newest studies received over DICOM, with their verdicts."""
    _study_reader(request)
    studies = selectors.studies_visible_to(request.user)[:100]
    return render(request, "scans/studies.html", {"studies": studies})


@login_required
@require_http_methods(["GET", "POST"])
def study_page(request, study_id):
    """One study as a strip of its slices in anatomical order, the key slices marked; a
    radiologist confirms or corrects the verdict, marking the slices that show a stone."""
    _study_reader(request)
    study = selectors.studies_visible_to(request.user).filter(pk=study_id).first()
    if study is None:
        raise Http404("No such study.")
    can_review = user_has_role(request.user, Role.RADIOLOGIST)
    if request.method == "POST":
        if not can_review:
            raise PermissionDenied("Only radiologists review studies.")
        verdict = request.POST.get("verdict", "")
        marked = request.POST.getlist("stone_slices") if verdict != "normal" else []
        try:
            services.study_review(
                study_id=study.pk,
                reviewer=request.user,
                verdict=verdict,
                stone_slices=marked,
                note=request.POST.get("note", ""),
                read_version=_posted_version(request),
            )
            messages.success(request, f"Study confirmed as {verdict}.")
        except (services.StaleReview, services.UnknownLabel, services.StudyNotReviewable) as error:
            messages.error(request, str(error))
        return redirect("study", study_id=study.pk)
    key = {scan_id: rank for rank, scan_id in enumerate(study.key_slices, start=1)}
    slices = [scan for members in selectors.study_series(study) for scan in members]
    for scan in slices:
        scan.key_rank = key.get(str(scan.pk))
    access_record(request, kind=AccessEvent.Kind.RECORD, scan_ids=[scan.pk for scan in slices])
    context = {
        "study": study,
        "slices": slices,
        "classes": settings.KIDNEY_CLASSES,
        "can_review": can_review,
    }
    return render(request, "scans/study.html", context)
