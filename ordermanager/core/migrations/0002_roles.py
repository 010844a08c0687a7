"""The "Risk staff" and "Viewer" groups with exactly their permissions (ordermanager/core/roles.py)."""

from django.db import migrations


def forwards(apps, schema_editor):
    from ordermanager.core.roles import roles_sync

    roles_sync(apps=apps)


def backwards(apps, schema_editor):
    from ordermanager.core.roles import RISK_STAFF, VIEWER

    apps.get_model("auth", "Group").objects.filter(name__in=[RISK_STAFF, VIEWER]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_api_keys_audit_heartbeat"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0001_initial"),
        ("positions", "0001_initial"),
        ("signals_app", "0001_initial"),
        ("exchange", "0001_initial"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
