from django.db import migrations


def imported_label_events(apps, schema_editor):
    """Labels confirmed before imports wrote review events get one, marked as imported."""
    scan_model = apps.get_model("scans", "Scan")
    review_event = apps.get_model("scans", "ReviewEvent")
    unsourced = scan_model.objects.exclude(confirmed_label="").filter(review_events=None)
    for scan in unsourced.iterator():
        review_event.objects.create(
            scan=scan,
            reviewer_id=scan.confirmed_by_id or scan.uploaded_by_id,
            new_label=scan.confirmed_label,
            note="Imported (recorded by a later migration)",
            source="import",
        )


class Migration(migrations.Migration):
    dependencies = [("scans", "0010_prediction_heatmap_requested_at_reviewevent_source")]
    operations = [migrations.RunPython(imported_label_events, migrations.RunPython.noop)]
