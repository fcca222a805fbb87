"""The chart README lists every value with its current default; values and schema agree."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.chart import values_doc
from tests.support.chart import CHART

VALUES_YAML = (CHART / "values.yaml").read_text()


def test_every_value_has_a_description_comment() -> None:
    documented = {v.path for v in values_doc.documented_values(VALUES_YAML)}
    assert "config.port" in documented
    assert "mysql.auth.existingSecret" in documented


def test_readme_values_table_is_complete_and_current() -> None:
    readme = (CHART / "README.md").read_text()
    assert readme == values_doc.render_readme(readme, VALUES_YAML), (
        "helm/orders/README.md is stale: run `make chart-docs`"
    )


def test_a_value_without_a_comment_is_caught() -> None:
    with pytest.raises(values_doc.UndocumentedValueError, match=r"image\.newKey"):
        values_doc.documented_values(VALUES_YAML.replace("image:\n", "image:\n  newKey: 1\n", 1))


def test_schema_describes_exactly_the_top_level_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load(VALUES_YAML)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(values)
