"""A triaged study's results as DICOM objects a PACS viewer shows in that study (IHE AI
Results in spirit): a structured report (verdict, score, threshold, model version, the
decision-support notice, the key slices referenced) and a secondary-capture series of the key
slices with the model's evidence overlaid and the notice burned in. Built in memory, from the
de-identified slices and the study's decrypted identity, by the sender only; the same study
and triage always give the same UIDs, so a resend is the same objects again."""

import io

import highdicom as hd
import numpy as np
import pydicom
from django.conf import settings
from PIL import Image, ImageDraw
from pydicom.sr.codedict import codes

from gateway.identity import restored
from ml_core.dicom import SOFT_TISSUE_WINDOW, keyed_uid
from ml_core.images import decode_image
from scans.models import DECISION_SUPPORT_NOTICE, Prediction, Scan, Study

MANUFACTURER = "Kidney CT triage (open source)"
SERIES_NUMBERS = {"report": 9901, "key_images": 9902}
SCHEME = "99KIDNEY"  # a private coding scheme, for what no standard code names


def _concept(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning)


def result_uid(study: Study, kind: str, index: int = 0) -> str:
    key = settings.KIDNEY_STUDY_HASH_KEY.encode()
    return keyed_uid(f"result:{study.pk}:{study.triage_round}:{kind}:{index}", key)


def verdict_text(study: Study) -> str:
    if study.verdict == "normal":
        return "No stone flagged by the model"
    return f"Flagged for review: {study.verdict} suspected by the model"


def result_objects(study: Study, identity: dict) -> list[pydicom.Dataset]:
    """The structured report, then the key images, most telling first."""
    key_slices = _key_slices(study, identity)
    evidence = [dataset for dataset, _ in key_slices]
    report = structured_report(study, evidence)
    images = [
        key_image(study, dataset, scan, index)
        for index, (dataset, scan) in enumerate(key_slices, start=1)
    ]
    return [report, *images]


def _key_slices(study: Study, identity: dict) -> list[tuple[pydicom.Dataset, Scan]]:
    scans = {str(scan.pk): scan for scan in Scan.objects.filter(pk__in=study.key_slices)}
    slices = []
    for scan_id in study.key_slices:
        scan = scans.get(scan_id)
        if scan is None or scan_id not in identity["instances"]:
            continue
        with scan.file.open("rb") as stored:
            dataset = pydicom.dcmread(io.BytesIO(stored.read()))
        slices.append((restored(dataset, identity, scan_id), scan))
    if not slices:
        raise ValueError("The study's key slices are gone; its results cannot be built.")
    return slices


def structured_report(study: Study, evidence: list[pydicom.Dataset]) -> pydicom.Dataset:
    version = study.model_version
    items = [
        hd.sr.TextContentItem(
            name=codes.DCM.Finding,
            value=verdict_text(study),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ),
        hd.sr.NumContentItem(
            name=_concept("study-score", "Study score (model)"),
            value=round(float(study.score), 4),
            unit=hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units"),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ),
        hd.sr.NumContentItem(
            name=_concept("study-threshold", "Study threshold"),
            value=round(float(study.threshold), 4),
            unit=hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units"),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ),
        hd.sr.TextContentItem(
            name=_concept("model-version", "Model version"),
            value=f"v{version.version} (MLflow {version.mlflow_version or '-'})",
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ),
        hd.sr.TextContentItem(
            name=codes.DCM.Comment,
            value=DECISION_SUPPORT_NOTICE,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        ),
    ]
    for dataset in evidence:
        items.append(
            hd.sr.ImageContentItem(
                name=codes.DCM.BestIllustrationOfFinding,
                referenced_sop_class_uid=dataset.SOPClassUID,
                referenced_sop_instance_uid=dataset.SOPInstanceUID,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    root = hd.sr.ContainerContentItem(name=codes.LN.CTAbdomenReport)
    root.ContentSequence = hd.sr.ContentSequence(items)
    report = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_instance_uid=result_uid(study, "report-series"),
        series_number=SERIES_NUMBERS["report"],
        sop_instance_uid=result_uid(study, "report"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
    )
    report.SeriesDescription = "AI triage report (decision support)"
    return report


def key_image(study: Study, dataset: pydicom.Dataset, scan: Scan, index: int):
    """The slice through the soft-tissue window, the evidence map over it, and the notice
    burned in, as an RGB secondary capture in the study."""
    data = io.BytesIO()
    dataset.save_as(data, enforce_file_format=True)
    pixels = decode_image(
        data.getvalue(), max_pixels=settings.KIDNEY_MAX_IMAGE_PIXELS, window=SOFT_TISSUE_WINDOW
    ).pixels
    picture = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).convert("RGBA")
    prediction = Prediction.objects.filter(scan=scan).first()
    if prediction is not None and prediction.evidence_map_ready:
        with prediction.heatmap.open("rb") as stored:
            overlay = Image.open(io.BytesIO(stored.read())).convert("RGBA")
        picture.alpha_composite(overlay.resize(picture.size))
    picture = _with_notice(picture.convert("RGB"), study, prediction)
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=dataset,
        pixel_array=np.asarray(picture),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=result_uid(study, "key-image-series"),
        series_number=SERIES_NUMBERS["key_images"],
        sop_instance_uid=result_uid(study, "key-image", index),
        instance_number=index,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "P"),
    )
    image.SeriesDescription = "AI triage key images (decision support)"
    image.BurnedInAnnotation = "YES"
    return image


def _with_notice(picture: Image.Image, study: Study, prediction) -> Image.Image:
    """A band under the image with the verdict, the slice's score and the notice."""
    width = max(picture.width, 256)
    lines = [
        verdict_text(study),
        f"slice score {prediction.abnormal_score:.3f}" if prediction else "",
        "Decision support only: a radiologist decides.",
    ]
    if prediction is None or not prediction.evidence_map_ready:
        lines.insert(2, "Evidence map: none for this slice")
    elif prediction.heatmap_signal is not True:
        lines.insert(2, f"Evidence map ({prediction.heatmap_method}): no signal on this slice")
    else:
        lines.insert(
            2, f"Evidence map ({prediction.heatmap_method}): where the model's evidence lies"
        )
    band = 14 * len(lines) + 6
    canvas = Image.new("RGB", (width, picture.height + band), "black")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for number, line in enumerate(lines):
        draw.text((4, picture.height + 3 + 14 * number), line, fill=(255, 255, 0))
    return canvas
