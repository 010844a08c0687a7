"""Static files before collectstatic: plain names instead of a 500 on every page (static_storage.py)."""

import json

from ordermanager.core.static_storage import StaticFilesStorage


def test_without_a_manifest_a_static_name_is_served_under_its_plain_name(tmp_path):
    storage = StaticFilesStorage(location=tmp_path, base_url="/static/")

    assert storage.url("admin/css/base.css") == "/static/admin/css/base.css"


def test_with_a_manifest_the_hashed_name_is_used(tmp_path):
    (tmp_path / "staticfiles.json").write_text(
        json.dumps({"version": "1.1", "paths": {"admin/css/base.css": "admin/css/base.0123abcd.css"}})
    )
    storage = StaticFilesStorage(location=tmp_path, base_url="/static/")

    assert storage.url("admin/css/base.css") == "/static/admin/css/base.0123abcd.css"
